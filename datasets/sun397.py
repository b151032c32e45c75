"""SUN397 (397 scene classes)."""

from __future__ import annotations

import os

from dassl.data.datasets import DATASET_REGISTRY, Datum

from .coop_base import CoOpDataset, DatasetLayoutError, make_datum, split_trainval


def scene_name(class_path: str) -> str:
    """``"a/abbey"`` -> ``"abbey"``; ``"a/apartment_building/outdoor"`` ->
    ``"outdoor apartment_building"`` (drop the letter folder, reverse, join with spaces)."""
    return " ".join(class_path.split("/")[1:][::-1])


@DATASET_REGISTRY.register(builtin=True)
class SUN397(CoOpDataset):
    """``sun397/SUN397/<letter>/<class>[/<sub>]/`` + ``split_zhou_SUN397.json``.

    Fallback: the Partitions files ``ClassName.txt`` (label = line index),
    ``Training_01.txt`` (80/20 train/val) and ``Testing_01.txt``.
    """

    dataset_dir = "sun397"
    image_subdir = "SUN397"
    split_file = "split_zhou_SUN397.json"
    annotation_files = ("SUN397", "ClassName.txt", "Training_01.txt", "Testing_01.txt")

    def build_splits(self):
        with open(os.path.join(self.dataset_dir, "ClassName.txt"), encoding="utf-8") as f:
            classnames = [line.strip()[1:] for line in f if line.strip()]  # drop leading "/"
        cname2lab = {c: i for i, c in enumerate(classnames)}
        trainval = self.read_data(cname2lab, "Training_01.txt")
        test = self.read_data(cname2lab, "Testing_01.txt")
        train, val = split_trainval(trainval)
        return train, val, test

    def read_data(self, cname2lab: dict[str, int], text_file: str) -> list[Datum]:
        text_file = os.path.join(self.dataset_dir, text_file)
        items = []
        with open(text_file, encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                imname = line.strip()[1:]  # drop leading "/"
                if not imname:
                    continue
                class_path = os.path.dirname(imname)
                if class_path not in cname2lab:
                    raise DatasetLayoutError(
                        f"{text_file}:{lineno}: class {class_path!r} is not in ClassName.txt"
                    )
                impath = os.path.join(self.image_dir, imname)
                items.append(
                    make_datum(impath, cname2lab[class_path], scene_name(class_path), text_file)
                )
        return items
