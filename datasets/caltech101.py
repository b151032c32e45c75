"""Caltech101 (100 classes after dropping the background and easy-faces folders)."""

from __future__ import annotations

from dassl.data.datasets import DATASET_REGISTRY

from .coop_base import CoOpDataset, read_and_split_data

#: class folders that are not object classes
IGNORED = ["BACKGROUND_Google", "Faces_easy"]
#: folder name -> class name used in prompts
NEW_CNAMES = {
    "airplanes": "airplane",
    "Faces": "face",
    "Leopards": "leopard",
    "Motorbikes": "motorbike",
}


@DATASET_REGISTRY.register(builtin=True)
class Caltech101(CoOpDataset):
    """``caltech-101/101_ObjectCategories/<class>/`` + ``split_zhou_Caltech101.json``.

    Fallback: random 50/20/30 split per folder; labels follow a case-sensitive folder sort
    (``Faces``, ``Leopards``, ``Motorbikes`` first), names renamed after labelling.
    """

    dataset_dir = "caltech-101"
    image_subdir = "101_ObjectCategories"
    split_file = "split_zhou_Caltech101.json"
    annotation_files = ("101_ObjectCategories",)

    def build_splits(self):
        return read_and_split_data(self.image_dir, ignored=IGNORED, new_cnames=NEW_CNAMES)
