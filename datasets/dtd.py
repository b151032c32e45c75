"""Describable Textures (47 classes); hosts upstream's ``read_and_split_data`` helper."""

from __future__ import annotations

from dassl.data.datasets import DATASET_REGISTRY

from .coop_base import CoOpDataset, read_and_split_data


@DATASET_REGISTRY.register(builtin=True)
class DescribableTextures(CoOpDataset):
    """``dtd/images/<class>/`` + ``split_zhou_DescribableTextures.json``.

    Fallback: a random 50/20/30 split per class folder (not the official DTD folds).
    Caltech101, EuroSAT and Food101 reuse ``DescribableTextures.read_and_split_data``.
    """

    dataset_dir = "dtd"
    image_subdir = "images"
    split_file = "split_zhou_DescribableTextures.json"
    annotation_files = ("images",)

    read_and_split_data = staticmethod(read_and_split_data)

    def build_splits(self):
        return read_and_split_data(self.image_dir)
