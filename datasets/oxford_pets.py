"""Oxford-IIIT Pets (37 breeds); also hosts upstream's shared static split helpers."""

from __future__ import annotations

import os

from dassl.data.datasets import DATASET_REGISTRY, Datum

from .base_new import subsample_classes
from .coop_base import (
    CoOpDataset,
    DatasetLayoutError,
    make_datum,
    read_split,
    save_split,
    split_trainval,
)


@DATASET_REGISTRY.register(builtin=True)
class OxfordPets(CoOpDataset):
    """``oxford_pets/{images,annotations}`` + ``split_zhou_OxfordPets.json``.

    Fallback: ``annotations/trainval.txt`` (80/20 train/val) and ``annotations/test.txt``.
    Class name = image name minus its trailing ``_<n>``, lower-cased; label = class id - 1.
    Other dataset files (ours and upstream forks) call the static helpers as
    ``OxfordPets.read_split`` etc.
    """

    dataset_dir = "oxford_pets"
    image_subdir = "images"
    split_file = "split_zhou_OxfordPets.json"
    annotation_files = ("images", "annotations/trainval.txt", "annotations/test.txt")

    read_split = staticmethod(read_split)
    save_split = staticmethod(save_split)
    split_trainval = staticmethod(split_trainval)
    subsample_classes = staticmethod(subsample_classes)

    @property
    def anno_dir(self) -> str:
        return os.path.join(self.dataset_dir, "annotations")

    def build_splits(self):
        trainval = self.read_data(split_file="trainval.txt")
        test = self.read_data(split_file="test.txt")
        train, val = split_trainval(trainval)
        return train, val, test

    def read_data(self, split_file: str) -> list[Datum]:
        """Parse an annotation list (``<image> <class id> <species> <breed id>`` per line)."""
        filepath = os.path.join(self.anno_dir, split_file)
        items = []
        with open(filepath, encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                line = line.strip()
                if not line or line.startswith("#"):
                    continue
                fields = line.split(" ")
                if len(fields) != 4:
                    raise DatasetLayoutError(
                        f"{filepath}:{lineno}: expected '<image> <class id> <species> "
                        f"<breed id>', got {line!r}"
                    )
                imname, label = fields[0], fields[1]
                breed = "_".join(imname.split("_")[:-1]).lower()
                impath = os.path.join(self.image_dir, imname + ".jpg")
                items.append(make_datum(impath, int(label) - 1, breed, filepath))
        return items
