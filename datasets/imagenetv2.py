"""ImageNetV2 matched-frequency (test only)."""

from __future__ import annotations

import os

from dassl.data.datasets import DATASET_REGISTRY, Datum

from .coop_base import DatasetLayoutError
from .imagenet import ImageNetTestOnly, _class_folder_items


@DATASET_REGISTRY.register(builtin=True)
class ImageNetV2(ImageNetTestOnly):
    """``imagenetv2/imagenetv2-matched-frequency-format-val/<0..999>/`` + ``classnames.txt``.

    Folder ``<k>`` holds class ``k``, named by the k-th line of ``classnames.txt``.
    """

    dataset_dir = "imagenetv2"
    image_subdir = "imagenetv2-matched-frequency-format-val"

    def read_data(self, classnames: dict[str, str]) -> list[Datum]:
        names = list(classnames.values())
        items = []
        for label, classname in enumerate(names):
            class_dir = os.path.join(self.image_dir, str(label))
            if not os.path.isdir(class_dir):
                raise DatasetLayoutError(
                    f"{class_dir} is missing: {self.image_dir} must hold folders 0..{len(names) - 1}"
                    f" (one per line of {self.classnames_file})"
                )
            items.extend(_class_folder_items(class_dir, label, classname))
        return items
