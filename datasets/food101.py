"""Food-101 (101 dishes)."""

from __future__ import annotations

from dassl.data.datasets import DATASET_REGISTRY

from .coop_base import CoOpDataset, read_and_split_data


@DATASET_REGISTRY.register(builtin=True)
class Food101(CoOpDataset):
    """``food-101/images/<class>/`` + ``split_zhou_Food101.json``.

    Fallback: random 50/20/30 split per folder (not the official food-101 split).
    """

    dataset_dir = "food-101"
    image_subdir = "images"
    split_file = "split_zhou_Food101.json"
    annotation_files = ("images",)

    def build_splits(self):
        return read_and_split_data(self.image_dir)
