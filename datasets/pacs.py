"""PACS (Li et al., ICCV 2017) in Dassl's layout: 4 domains x 7 classes.

::

    pacs/
        images/<domain>/<class>/<file>          domain in art_painting, cartoon, photo, sketch
        splits/<domain>_{train,crossval,test}_kfold.txt   "<domain>/<class>/<file> <label>"

Labels in the split files are 1-based (Dassl subtracts 1). As in Dassl, source domains use
``train`` (train_x) and ``crossval`` (val); target domains use all of their images (``train`` +
``crossval``, Dassl's "all"), and one known-corrupt sketch image is skipped.
"""

from __future__ import annotations

import os

from dassl.data.datasets import DATASET_REGISTRY

from .domain_base import DomainDataset, read_list_file

__all__ = ["PACS"]


@DATASET_REGISTRY.register(builtin=True)
class PACS(DomainDataset):
    """PACS: art_painting, cartoon, photo, sketch; dog ... person (7 classes)."""

    dataset_dir = "pacs"
    domains = ["art_painting", "cartoon", "photo", "sketch"]
    # the following image is unreadable in the public archive (Dassl skips it too)
    _error_paths = ("sketch/dog/n02103406_4068-1.png",)
    _files = {"train": ("train",), "val": ("crossval",), "test": ("train", "crossval")}

    def read_domain(self, domain: str, split: str) -> list[tuple[str, int, str]]:
        image_dir = os.path.join(self.dataset_dir, "images")
        items = []
        for part in self._files[split]:
            path = os.path.join(self.dataset_dir, "splits", f"{domain}_{part}_kfold.txt")
            for rel, label in read_list_file(path, label_offset=-1):
                if rel in self._error_paths:
                    continue
                items.append((os.path.join(image_dir, rel), label, rel.split("/")[-2]))
        return items
