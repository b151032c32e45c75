"""VLCS (Torralba and Efros, CVPR 2011) in Dassl's layout: 4 domains x 5 classes.

::

    VLCS/<DOMAIN>/{train,crossval,test}/<class folder>/<file>.jpg    DOMAIN in CALTECH, LABELME,
                                                                     PASCAL, SUN

Domains are named in lower case in the config (``caltech`` ...), upper case on disk. Labels are
the sorted class folders' positions (Dassl's rule). The public archive names the folders
``0``..``4``; numeric folders are given the VLCS class names (bird, car, chair, dog, person),
other folder names are used as class names. Source domains: ``train`` and ``crossval``; target
domains: ``test``.
"""

from __future__ import annotations

import glob
import os

from dassl.data.datasets import DATASET_REGISTRY
from dassl.utils import listdir_nohidden

from .coop_base import DatasetLayoutError, docs_ref
from .domain_base import DomainDataset

__all__ = ["VLCS", "VLCS_CLASSNAMES"]

VLCS_CLASSNAMES = ["bird", "car", "chair", "dog", "person"]


@DATASET_REGISTRY.register(builtin=True)
class VLCS(DomainDataset):
    """VLCS: caltech, labelme, pascal, sun; bird, car, chair, dog, person."""

    dataset_dir = "VLCS"
    domains = ["caltech", "labelme", "pascal", "sun"]
    _folders = {"train": "train", "val": "crossval", "test": "test"}

    def read_domain(self, domain: str, split: str) -> list[tuple[str, int, str]]:
        path = os.path.join(self.dataset_dir, domain.upper(), self._folders[split])
        if not os.path.isdir(path):
            raise DatasetLayoutError(
                f"VLCS: folder {path} does not exist; see {docs_ref(self._anchor)}"
            )
        folders = sorted(listdir_nohidden(path))
        numeric = all(f.isdigit() for f in folders)
        if numeric and [int(f) for f in folders] != list(range(len(VLCS_CLASSNAMES))):
            raise DatasetLayoutError(
                f"VLCS: {path} has class folders {folders}; expected 0..4 "
                f"({', '.join(VLCS_CLASSNAMES)}) or class-name folders"
            )
        items = []
        for label, folder in enumerate(folders):
            name = VLCS_CLASSNAMES[label] if numeric else folder
            for impath in sorted(glob.glob(os.path.join(path, folder, "*.jpg"))):
                items.append((impath, label, name))
        return items
