"""Datasets in CoOp's on-disk layout. Importing this package registers them in DATASET_REGISTRY.

Data root: ``DATASET.ROOT`` (``train.py --root``), else ``$PROMPTKD_DATA``; layouts in
``docs/DATASETS.md``. Shared machinery for new datasets: :mod:`datasets.coop_base`;
base/new class rule: :mod:`datasets.base_new`.
"""

from . import (  # noqa: F401  (imported for registration)
    caltech101,
    dtd,
    eurosat,
    fgvc_aircraft,
    food101,
    imageclef_da,
    imagenet,
    imagenet_a,
    imagenet_r,
    imagenet_sketch,
    imagenetv2,
    oxford_flowers,
    oxford_pets,
    pacs,
    stanford_cars,
    sun397,
    toy_shapes,
    toy_shapes_dg,
    ucf101,
    visda17,
    vlcs,
)
from .base_new import base_new_ranges, select_classes, subsample_classes

__all__ = ["base_new_ranges", "select_classes", "subsample_classes"]
