"""Image folders a student distils on instead of its dataset's train split (``TRAIN_SOURCE``).

A synthesized data-free set (``tools/synthesize.py``) is a CoOp-style folder::

    <dir>/images/<class>/<id>.png
    <dir>/split_*.json            {"train": [[relpath, label, classname], ...], ...}  (optional)

With a split json, its ``train`` items are used in their order (paths relative to ``images/``
or to ``<dir>``); otherwise every image under ``images/`` (or ``<dir>``) in sorted path order.
The labels are carried in the Datums as in any dataset, but distilling students never read them.
"""

from __future__ import annotations

import glob
import os

from dassl.data.datasets import Datum
from dassl.utils import read_json

__all__ = ["read_image_folder", "IMAGE_EXTENSIONS"]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp")


def _split_items(directory: str, split_file: str) -> list[Datum]:
    data = read_json(split_file)
    if not isinstance(data, dict) or not isinstance(data.get("train"), list):
        raise ValueError(f"{split_file}: expected a split json with a 'train' list (CoOp layout)")
    items = []
    for entry in data["train"]:
        rel, label, classname = entry
        path = os.path.join(directory, "images", rel)
        if not os.path.isfile(path):
            path = os.path.join(directory, rel)
        items.append(Datum(impath=path, label=int(label), classname=str(classname)))
    return items


def read_image_folder(directory: str) -> list[Datum]:
    """The images of ``directory`` (see the module docstring); an empty folder is an error."""
    if not os.path.isdir(directory):
        raise FileNotFoundError(
            f"TRAINER.PROMPTKD.TRAIN_SOURCE {directory} is not a folder (expected a synthesized "
            "set: <dir>/images/<class>/<id>.png, e.g. from tools/synthesize.py)"
        )
    splits = sorted(glob.glob(os.path.join(directory, "split_*.json")))
    if len(splits) > 1:
        raise ValueError(f"TRAIN_SOURCE {directory} holds several split files {splits}; keep one")
    if splits:
        items = _split_items(directory, splits[0])
    else:
        base = os.path.join(directory, "images")
        base = base if os.path.isdir(base) else directory
        paths = sorted(
            p
            for p in glob.glob(os.path.join(base, "**", "*"), recursive=True)
            if p.lower().endswith(IMAGE_EXTENSIONS)
        )
        items = [Datum(impath=p) for p in paths]
    if not items:
        raise ValueError(f"TRAINER.PROMPTKD.TRAIN_SOURCE {directory} holds no images")
    return items
