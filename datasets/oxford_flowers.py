"""Oxford Flowers-102."""

from __future__ import annotations

import os
import random
from collections import defaultdict

from dassl.data.datasets import DATASET_REGISTRY, Datum
from dassl.utils import read_json
from dassl.utils.logger import get_logger

from .coop_base import CoOpDataset, DatasetLayoutError, load_mat, make_datum

logger = get_logger(__name__)


@DATASET_REGISTRY.register(builtin=True)
class OxfordFlowers(CoOpDataset):
    """``oxford_flowers/jpg/`` + ``split_zhou_OxfordFlowers.json``.

    Fallback: ``imagelabels.mat`` (label of ``image_%05d.jpg``, 1-based) and
    ``cat_to_name.json`` (keys "1".."102"); random 50/20/30 split per class.
    """

    dataset_dir = "oxford_flowers"
    image_subdir = "jpg"
    split_file = "split_zhou_OxfordFlowers.json"
    annotation_files = ("jpg", "imagelabels.mat", "cat_to_name.json")

    @property
    def label_file(self) -> str:
        return os.path.join(self.dataset_dir, "imagelabels.mat")

    @property
    def lab2cname_file(self) -> str:
        return os.path.join(self.dataset_dir, "cat_to_name.json")

    def build_splits(self):
        return self.read_data()

    def read_data(self) -> tuple[list[Datum], list[Datum], list[Datum]]:
        tracker: dict[int, list[str]] = defaultdict(list)
        labels = load_mat(self.label_file, "labels")[0]
        for i, label in enumerate(labels):
            impath = os.path.join(self.image_dir, f"image_{str(i + 1).zfill(5)}.jpg")
            tracker[int(label)].append(impath)

        logger.info("Splitting data into 50% train, 20% val, and 30% test")
        lab2cname = read_json(self.lab2cname_file)
        train: list[Datum] = []
        val: list[Datum] = []
        test: list[Datum] = []
        for label, impaths in tracker.items():
            random.shuffle(impaths)
            n_total = len(impaths)
            n_train = round(n_total * 0.5)
            n_val = round(n_total * 0.2)
            n_test = n_total - n_train - n_val
            if not (n_train > 0 and n_val > 0 and n_test > 0):
                raise ValueError(
                    f"{self.label_file}: class {label} has {n_total} images, too few for a "
                    "50/20/30 split"
                )
            if str(label) not in lab2cname:
                raise DatasetLayoutError(
                    f"{self.lab2cname_file} has no name for class {label} (keys are '1'..'102')"
                )
            cname = lab2cname[str(label)]

            def _collate(ims: list[str], y: int = label - 1, c: str = cname) -> list[Datum]:
                return [make_datum(im, y, c, self.label_file) for im in ims]

            train.extend(_collate(impaths[:n_train]))
            val.extend(_collate(impaths[n_train : n_train + n_val]))
            test.extend(_collate(impaths[n_train + n_val :]))
        return train, val, test
