"""ImageNet-R (200 classes, test only)."""

from __future__ import annotations

from dassl.data.datasets import DATASET_REGISTRY

from .imagenet import ImageNetSortedFolders

TO_BE_IGNORED = ["README.txt"]


@DATASET_REGISTRY.register(builtin=True)
class ImageNetR(ImageNetSortedFolders):
    """``imagenet-rendition/imagenet-r/<wnid>/`` + ``classnames.txt``; labels 0..199 over
    the sorted wnids."""

    dataset_dir = "imagenet-rendition"
    image_subdir = "imagenet-r"
    ignored = tuple(TO_BE_IGNORED)
