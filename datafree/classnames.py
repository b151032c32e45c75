"""Class names of a dataset config, without reading a single image.

ToyShapes knows its classes in code; every other CoOp dataset reads them from its split json
(``[relpath, label, classname]`` rows) under the data root. A class list given by the user or
stored with a teacher must equal the dataset's, so that a label means the same class
everywhere.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any

from dassl.utils import InputFileNotFoundError, InvalidInputError

__all__ = ["ClassListError", "dataset_classnames", "read_classnames_file", "check_same_classes"]


class ClassListError(InvalidInputError):
    """Class names cannot be found, or two class lists disagree."""


def _from_split(path: str) -> list[str]:
    with open(path, encoding="utf-8") as f:
        split = json.load(f)
    names: dict[int, str] = {}
    for rows in (split.get(k, []) for k in ("train", "val", "test")):
        for _, label, cname in rows:
            names.setdefault(int(label), str(cname))
    if sorted(names) != list(range(len(names))):
        raise ClassListError(f"{path}: labels are not contiguous from 0")
    return [names[i] for i in range(len(names))]


def dataset_classnames(cfg: Any) -> list[str]:
    """Class names (label order) of ``cfg.DATASET.NAME``."""
    import datasets  # noqa: F401  (registers the datasets)
    from dassl.data.datasets import DATASET_REGISTRY
    from datasets.coop_base import DATA_ENV_VAR

    name = cfg.DATASET.NAME
    if not name:
        raise ClassListError("DATASET.NAME is empty: pass a dataset config (--dataset-config-file)")
    try:
        cls = DATASET_REGISTRY.get(name)
    except KeyError as err:
        raise ClassListError(err.args[0]) from None
    if name in ("ToyShapes", "ToyShapesDG"):
        from datasets.toy_render import CLASSNAMES

        return list(CLASSNAMES)
    from datasets.domain_base import DomainDataset

    if issubclass(cls, DomainDataset):  # PACS, VLCS, ...: their list files name the classes
        from dassl.data.datasets import build_dataset

        return list(build_dataset(cfg).all_classnames)
    split_file = getattr(cls, "split_file", None)
    root = str(cfg.DATASET.ROOT or "") or os.environ.get(DATA_ENV_VAR, "")
    path = os.path.join(root, getattr(cls, "dataset_dir", ""), split_file or "")
    if not (root and split_file and os.path.isfile(path)):
        raise ClassListError(
            f"cannot read the class names of {name} without its split file ({path or 'no root'}): "
            f"set DATASET.ROOT (or ${DATA_ENV_VAR}) to a data root holding it, or give the "
            "class list with DATAFREE.CLASSNAMES_FILE"
        )
    return _from_split(path)


def read_classnames_file(path: str) -> list[str]:
    """One class name per line (blank lines ignored), or a JSON list."""
    if not os.path.isfile(path):
        raise InputFileNotFoundError(
            f"class-name file not found: {path} (DATAFREE.CLASSNAMES_FILE)"
        )
    with open(path, encoding="utf-8") as f:
        text = f.read()
    if text.lstrip().startswith("["):
        names = json.loads(text)
    else:
        names = [line.strip() for line in text.splitlines() if line.strip()]
    if not names:
        raise ClassListError(f"{path}: no class names")
    return [str(n) for n in names]


def check_same_classes(
    expected: Sequence[str], got: Sequence[str], where: str, dataset: str
) -> None:
    """Raise :class:`ClassListError` naming the first difference between two class lists."""
    if list(expected) == list(got):
        return
    for i in range(max(len(expected), len(got))):
        e = expected[i] if i < len(expected) else "<none>"
        g = got[i] if i < len(got) else "<none>"
        if e != g:
            raise ClassListError(
                f"the class list of {where} is not that of dataset {dataset}: at index {i} "
                f"expected {e!r}, found {g!r} ({len(expected)} vs {len(got)} classes); give the "
                "class list (or teacher) that belongs to this dataset config"
            )
