"""ImageNet-Sketch (test only)."""

from __future__ import annotations

from dassl.data.datasets import DATASET_REGISTRY

from .imagenet import ImageNetSortedFolders


@DATASET_REGISTRY.register(builtin=True)
class ImageNetSketch(ImageNetSortedFolders):
    """``imagenet-sketch/images/<wnid>/`` + ``classnames.txt``; labels = sorted wnids."""

    dataset_dir = "imagenet-sketch"
    image_subdir = "images"
