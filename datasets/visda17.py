"""VisDA-2017 classification (Peng et al., 2017) in Dassl's layout: synthetic -> real, 12 classes.

::

    visda17/
        train/image_list.txt          "<class>/<file> <label>"   (synthetic renderings)
        train/<class>/<file>
        validation/image_list.txt     (real photos, the usual target)
        validation/<class>/<file>

Labels are 0-based and the class name is the first path component (Dassl's rule). Domain
``synthetic`` reads ``train/``, ``real`` reads ``validation/`` (``test/`` has no labels and is not
read). As in Dassl's VisDA17 there is no ``val`` split, and the target images are also given
unlabelled as ``train_u``; with Dassl's only protocol (synthetic -> real) the splits are Dassl's:
``train_x`` = synthetic, ``train_u`` = ``test`` = real, every Datum's domain 0. Unlike Dassl,
which ignores the configured domains, other choices (e.g. real -> synthetic) are honoured.
"""

from __future__ import annotations

import os

from dassl.data.datasets import DATASET_REGISTRY

from .domain_base import DomainDataset, read_list_file

__all__ = ["VisDA17"]


@DATASET_REGISTRY.register(builtin=True)
class VisDA17(DomainDataset):
    """VisDA-2017: synthetic (train/) and real (validation/)."""

    dataset_dir = "visda17"
    domains = ["synthetic", "real"]
    _folders = {"synthetic": "train", "real": "validation"}
    has_val = False
    target_as_train_u = True

    def read_domain(self, domain: str, split: str) -> list[tuple[str, int, str]]:
        folder = os.path.join(self.dataset_dir, self._folders[domain])
        items = []
        for rel, label in read_list_file(os.path.join(folder, "image_list.txt")):
            items.append((os.path.join(folder, rel), label, rel.split("/")[0]))
        return items
