"""EuroSAT (10 land-use classes, RGB version), with CoOp's descriptive class names."""

from __future__ import annotations

from dassl.data.datasets import DATASET_REGISTRY

from .coop_base import CoOpDataset, read_and_split_data

#: folder name -> class name used in prompts
NEW_CNAMES = {
    "AnnualCrop": "Annual Crop Land",
    "Forest": "Forest",
    "HerbaceousVegetation": "Herbaceous Vegetation Land",
    "Highway": "Highway or Road",
    "Industrial": "Industrial Buildings",
    "Pasture": "Pasture Land",
    "PermanentCrop": "Permanent Crop Land",
    "Residential": "Residential Buildings",
    "River": "River",
    "SeaLake": "Sea or Lake",
}


@DATASET_REGISTRY.register(builtin=True)
class EuroSAT(CoOpDataset):
    """``eurosat/2750/<Class>/`` + ``split_zhou_EuroSAT.json``.

    Fallback: random 50/20/30 split per folder, folder names renamed through ``NEW_CNAMES``.
    """

    dataset_dir = "eurosat"
    image_subdir = "2750"
    split_file = "split_zhou_EuroSAT.json"
    annotation_files = ("2750",)

    def build_splits(self):
        return read_and_split_data(self.image_dir, new_cnames=NEW_CNAMES)
