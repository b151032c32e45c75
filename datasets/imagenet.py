"""ImageNet-1k (train + official val as test) and the base of the test-only variants."""

from __future__ import annotations

import os
from collections import OrderedDict
from typing import Any

from dassl.data.datasets import DATASET_REGISTRY, DatasetBase, Datum
from dassl.utils import listdir_nohidden
from dassl.utils.logger import get_logger

from .coop_base import (
    DATA_ENV_VAR,
    CoOpDataset,
    DatasetLayoutError,
    docs_ref,
    is_datum_list,
    load_datum_pickle,
    resolve_root,
    save_datum_pickle,
    set_test_only_info,
    trusted_datum,
)

logger = get_logger(__name__)


def read_classnames(text_file: str) -> OrderedDict[str, str]:
    """``classnames.txt`` (``<wnid> <class name words>`` per line) -> ordered wnid -> name."""
    classnames: OrderedDict[str, str] = OrderedDict()
    with open(text_file, encoding="utf-8") as f:
        for line in f:
            fields = line.strip().split(" ")
            if not fields[0]:
                continue
            classnames[fields[0]] = " ".join(fields[1:])
    return classnames


def _class_folder_items(class_dir: str, label: int, classname: str) -> list[Datum]:
    # the listing itself proves the files exist: no per-image stat (1.3M files for ImageNet)
    return [
        trusted_datum(os.path.join(class_dir, name), label, 0, classname)
        for name in listdir_nohidden(class_dir)
    ]


def _classname_of(classnames: dict[str, str], folder: str, text_file: str) -> str:
    if folder not in classnames:
        raise DatasetLayoutError(f"Class folder {folder!r} has no line in {text_file}")
    return classnames[folder]


@DATASET_REGISTRY.register(builtin=True)
class ImageNet(CoOpDataset):
    """``imagenet/images/{train,val}/<wnid>/`` + ``classnames.txt`` (CLIP's class names).

    Labels = index of the wnid in the sorted folder list. The official val set is the test
    set, and there is no validation split: ``val`` is the test set (upstream), so select the
    last-step model on ImageNet. The parsed folders are cached in ``preprocessed.pkl``
    (upstream format); the few-shot cache holds only ``"train"``.
    """

    dataset_dir = "imagenet"
    image_subdir = "images"
    split_file = None
    annotation_files = ("classnames.txt", "images/train", "images/val")

    read_classnames = staticmethod(read_classnames)

    @property
    def preprocessed(self) -> str:
        return os.path.join(self.dataset_dir, "preprocessed.pkl")

    def load_splits(self):
        if os.path.exists(self.preprocessed):
            data = self._load_preprocessed()
            if data is not None:
                return data["train"], None, data["test"]
        self.check_annotations()
        return self.build_splits()

    def build_splits(self) -> tuple[list[Datum], None, list[Datum]]:
        """Parse the folders (train, no val, official val as test); cache preprocessed.pkl."""
        text_file = os.path.join(self.dataset_dir, "classnames.txt")
        classnames = read_classnames(text_file)
        train = self.read_data(classnames, "train")
        test = self.read_data(classnames, "val")
        try:
            save_datum_pickle({"train": train, "test": test}, self.preprocessed)
        except OSError as e:
            logger.warning(f"Could not save {self.preprocessed} ({e}); continuing without it.")
        return train, None, test

    def _load_preprocessed(self) -> dict[str, list[Datum]] | None:
        path = self.preprocessed
        logger.info(f"Loading preprocessed data from {path}")
        try:
            data = load_datum_pickle(path)
        except Exception as e:
            logger.warning(f"Ignoring {path}: cannot read it ({e}); rebuilding it.")
            return None
        if not isinstance(data, dict) or not all(
            is_datum_list(data.get(k)) for k in ("train", "test")
        ):
            logger.warning(f"Ignoring {path}: expected Datum lists under 'train' and 'test'.")
            return None
        out = {}
        for k in ("train", "test"):
            # one image per class is checked; read_image reports any other missing file
            items = self._resolve_cached_paths(data[k], path, check_all=False)
            if items is None:
                return None
            out[k] = items
        return out

    def read_data(self, classnames: dict[str, str], split_dir: str) -> list[Datum]:
        """Datums of ``images/<split_dir>/<wnid>/*`` labelled by sorted wnid order."""
        split_path = os.path.join(self.image_dir, split_dir)
        text_file = os.path.join(self.dataset_dir, "classnames.txt")
        folders = sorted(f.name for f in os.scandir(split_path) if f.is_dir())
        if not folders:
            raise DatasetLayoutError(
                f"{split_path} has no class folders: it must hold one folder per wnid "
                f"(sort the official flat val images into wnid folders). See "
                f"{docs_ref('imagenet')}."
            )
        if split_dir == "val":
            train_folders = sorted(
                f.name for f in os.scandir(os.path.join(self.image_dir, "train")) if f.is_dir()
            )
            if folders != train_folders:
                raise DatasetLayoutError(
                    f"{split_path} and {os.path.join(self.image_dir, 'train')} must contain the "
                    f"same wnid folders (got {len(folders)} vs {len(train_folders)}); labels "
                    "would not match."
                )
        items = []
        for label, folder in enumerate(folders):
            classname = _classname_of(classnames, folder, text_file)
            items.extend(_class_folder_items(os.path.join(split_path, folder), label, classname))
        return items


class ImageNetTestOnly(DatasetBase):
    """Base of the test-only ImageNet variants: folders + ``classnames.txt``.

    ``DatasetBase(train_x=data, test=data)`` as upstream (no val, no few-shot, no
    SUBSAMPLE_CLASSES); ``train_x`` only lets DataManager build its train loader.
    """

    dataset_dir = ""
    image_subdir = ""

    def __init__(self, cfg: Any) -> None:
        root = resolve_root(cfg)
        self.dataset_dir = os.path.join(root, type(self).dataset_dir)
        self.image_dir = os.path.join(self.dataset_dir, self.image_subdir)
        text_file = os.path.join(self.dataset_dir, "classnames.txt")
        expected = [self.image_dir, text_file]
        missing = [p for p in expected if not os.path.exists(p)]
        if missing:
            raise DatasetLayoutError(
                f"{type(self).__name__}: expected\n"
                + "\n".join(f"  {p}{'  [missing]' if p in missing else ''}" for p in expected)
                + f"\nunder the data root {root} (--root / DATASET.ROOT or ${DATA_ENV_VAR}). "
                f"See {docs_ref(type(self).__name__.lower())} (classnames.txt is ImageNet's)."
            )
        self.classnames_file = text_file
        data = self.read_data(read_classnames(text_file))
        set_test_only_info(self, data)
        super().__init__(train_x=data, test=data)

    def read_data(self, classnames: dict[str, str]) -> list[Datum]:
        raise NotImplementedError


class ImageNetSortedFolders(ImageNetTestOnly):
    """Variants whose labels follow the sorted wnid folders of ``image_dir``."""

    ignored: tuple[str, ...] = ()

    def read_data(self, classnames: dict[str, str]) -> list[Datum]:
        folders = [
            f
            for f in listdir_nohidden(self.image_dir, sort=True)
            if f not in self.ignored and os.path.isdir(os.path.join(self.image_dir, f))
        ]
        if not folders:
            raise DatasetLayoutError(f"{self.image_dir} has no class folders")
        items = []
        for label, folder in enumerate(folders):
            classname = _classname_of(classnames, folder, self.classnames_file)
            items.extend(
                _class_folder_items(os.path.join(self.image_dir, folder), label, classname)
            )
        return items
