"""Shared machinery of the multi-domain (domain generalisation / adaptation) datasets.

PACS, VLCS, ImageCLEF-DA, VisDA-2017 and the toy world's ToyShapesDG follow Dassl's protocol:
``DATASET.SOURCE_DOMAINS`` give ``train_x`` (their train split) and ``val`` (their held-out
split, where the dataset has one); ``DATASET.TARGET_DOMAINS`` give ``test`` (and, for a
domain-adaptation dataset such as VisDA17, ``train_u``). A Datum's ``domain`` is the index of its domain
in that list (Dassl's convention), so ``test_domains[item.domain]`` names a test image's domain.

These datasets have no base/new protocol: every class is used. For the trainers of this
repository they expose the same attributes as :class:`datasets.coop_base.CoOpDataset`
(``all_classnames``, ``base_classes``/``new_classes``, ``full_splits``) plus ``test_domains``,
which the final evaluation uses to report one accuracy per target domain.

A subclass sets ``dataset_dir``, ``domains`` and ``classnames_in_order`` (when the files do not
name the classes) and implements :meth:`DomainDataset.read_domain`.
"""

from __future__ import annotations

import os
from typing import Any

from dassl.data.datasets import DatasetBase, Datum

from .base_new import base_new_ranges
from .coop_base import DatasetLayoutError, class_info, docs_ref, resolve_root

__all__ = ["DomainDataset", "read_list_file"]


def read_list_file(path: str, label_offset: int = 0) -> list[tuple[str, int]]:
    """``"<relative path> <label>"`` lines (blank lines skipped) -> ``[(path, label + offset)]``."""
    if not os.path.isfile(path):
        raise DatasetLayoutError(f"List file {path} does not exist")
    items = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            parts = line.split()
            if not parts:
                continue
            try:
                path_part, label = " ".join(parts[:-1]), int(parts[-1])
            except ValueError:
                path_part, label = "", -1
            if not path_part or label + label_offset < 0:
                raise DatasetLayoutError(
                    f"{path}, line {n}: expected '<image path> <integer label>', got {line.strip()!r}"
                )
            items.append((path_part, label + label_offset))
    return items


class DomainDataset(DatasetBase):
    """Source domains -> train/val, target domains -> test (see the module docstring)."""

    dataset_dir = ""
    domains: list[str] = []
    #: split names read for (train, val, test); a subclass maps them to its files
    splits = ("train", "val", "test")
    #: read a held-out split of the source domains as ``val`` (Dassl's VisDA17 has none)
    has_val = True
    #: also give the target domains' images as unlabelled ``train_u`` (Dassl's VisDA17)
    target_as_train_u = False
    #: heading anchor in docs/DATASETS.md; default: the class name lower-cased
    docs_anchor: str | None = None

    all_classnames: list[str]
    base_classes: range
    new_classes: range
    full_splits: dict[str, list[Datum]]
    test_domains: list[str]

    def __init__(self, cfg: Any) -> None:
        root = resolve_root(cfg)
        self.root = root
        self.dataset_dir = os.path.join(root, type(self).dataset_dir)
        self.prepare(root)
        if not os.path.isdir(self.dataset_dir):
            raise DatasetLayoutError(
                f"{type(self).__name__}: dataset folder {self.dataset_dir} does not exist. "
                f"Expected it under the data root {root} (--root / DATASET.ROOT). See "
                f"{docs_ref(self._anchor)} for how to obtain and lay out this dataset."
            )
        source = list(cfg.DATASET.SOURCE_DOMAINS)
        target = list(cfg.DATASET.TARGET_DOMAINS)
        self._check_domains("SOURCE_DOMAINS", source)
        self._check_domains("TARGET_DOMAINS", target)
        train = self._read(source, "train")
        val = self._read(source, "val") if self.has_val else []
        test = self._read(target, "test")
        self.test_domains = target
        self.full_splits = {"train": train, "val": val, "test": test}
        self.all_classnames = class_info(self.full_splits.values())
        self.base_classes, self.new_classes = base_new_ranges(len(self.all_classnames))
        train_u = list(test) if self.target_as_train_u else None
        super().__init__(train_x=train, train_u=train_u, val=val or None, test=test)

    def _check_domains(self, key: str, names: list[str]) -> None:
        """Dassl's check (exact, case-sensitive names), with the config key in the message."""
        unknown = [d for d in names if d not in self.domains]
        if not names or unknown:
            problem = f"has unknown domain(s) {unknown}" if names else "is empty"
            raise ValueError(
                f"{type(self).__name__}: DATASET.{key} {problem}; valid domains (exact, "
                f"lower case, as in Dassl): {self.domains}"
            )

    @property
    def _anchor(self) -> str:
        return self.docs_anchor or type(self).__name__.lower()

    def prepare(self, root: str) -> None:
        """Hook run before the folder check (ToyShapesDG generates its files here)."""

    def read_domain(self, domain: str, split: str) -> list[tuple[str, int, str]]:
        """``[(absolute image path, label, class name)]`` of one domain's ``split``."""
        raise NotImplementedError

    def _read(self, domains: list[str], split: str) -> list[Datum]:
        items = []
        for index, name in enumerate(domains):
            for impath, label, classname in self.read_domain(name, split):
                try:
                    items.append(
                        Datum(impath=impath, label=label, domain=index, classname=classname)
                    )
                except FileNotFoundError:
                    raise DatasetLayoutError(
                        f"{type(self).__name__}: image {impath} ({name}, {split} split) does not "
                        f"exist; see {docs_ref(self._anchor)} for the expected layout"
                    ) from None
        return items
