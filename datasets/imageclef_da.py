"""ImageCLEF-DA (ImageCLEF 2014 domain adaptation challenge) in its official release layout.

::

    image_CLEF/
        list/{b,c,i,p}List.txt     "<path> <label>", path relative to image_CLEF/, labels 0..11
        b/ c/ i/ p/                the images (Bing, Caltech-256, ImageNet, Pascal VOC 2012)

12 classes shared by the four domains, labels in this order: aeroplane, bike, bird, boat,
bottle, bus, car, dog, horse, monitor, motorbike, people (the list files carry labels only).
Some copies of ``cList.txt`` hold one extra folder level that is not on disk; when a listed path
is missing, the path without its second component is used if that file exists. A domain has no
split of its own: its images serve as train, val and test.
"""

from __future__ import annotations

import os

from dassl.data.datasets import DATASET_REGISTRY

from .coop_base import DatasetLayoutError, docs_ref
from .domain_base import DomainDataset, read_list_file

__all__ = ["ImageCLEFDA", "IMAGECLEF_CLASSNAMES"]

IMAGECLEF_CLASSNAMES = [
    "aeroplane", "bike", "bird", "boat", "bottle", "bus",
    "car", "dog", "horse", "monitor", "motorbike", "people",
]  # fmt: skip


@DATASET_REGISTRY.register(builtin=True)
class ImageCLEFDA(DomainDataset):
    """ImageCLEF-DA: b (Bing), c (Caltech), i (ImageNet), p (Pascal); 12 classes."""

    dataset_dir = "image_CLEF"
    domains = ["b", "c", "i", "p"]

    def read_domain(self, domain: str, split: str) -> list[tuple[str, int, str]]:
        list_file = os.path.join(self.dataset_dir, "list", f"{domain}List.txt")
        items = []
        for rel, label in read_list_file(list_file):
            if label >= len(IMAGECLEF_CLASSNAMES):
                raise DatasetLayoutError(
                    f"{list_file}: label {label} of {rel} is out of range 0..11; see "
                    f"{docs_ref(self._anchor)}"
                )
            items.append((self._resolve(rel), label, IMAGECLEF_CLASSNAMES[label]))
        return items

    def _resolve(self, rel: str) -> str:
        path = os.path.join(self.dataset_dir, rel)
        parts = rel.strip("/").split("/")
        if not os.path.isfile(path) and len(parts) > 2:
            alt = os.path.join(self.dataset_dir, parts[0], *parts[2:])
            if os.path.isfile(alt):
                return alt
        return path
