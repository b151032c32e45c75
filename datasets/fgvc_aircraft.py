"""FGVC-Aircraft 2013b (100 variants), with the official train/val/test split."""

from __future__ import annotations

import os

from dassl.data.datasets import DATASET_REGISTRY, Datum

from .coop_base import CoOpDataset, DatasetLayoutError, make_datum


@DATASET_REGISTRY.register(builtin=True)
class FGVCAircraft(CoOpDataset):
    """``fgvc_aircraft/`` = the ``data/`` folder of fgvc-aircraft-2013b.

    No split json: ``variants.txt`` gives the class names (label = line index) and
    ``images_variant_{train,val,test}.txt`` (``<id> <variant name>`` per line) the splits.
    """

    dataset_dir = "fgvc_aircraft"
    image_subdir = "images"
    split_file = None
    annotation_files = (
        "images",
        "variants.txt",
        "images_variant_train.txt",
        "images_variant_val.txt",
        "images_variant_test.txt",
    )

    def build_splits(self):
        variants = os.path.join(self.dataset_dir, "variants.txt")
        with open(variants, encoding="utf-8") as f:
            classnames = [line.strip() for line in f if line.strip()]
        cname2lab = {c: i for i, c in enumerate(classnames)}
        train = self.read_data(cname2lab, "images_variant_train.txt")
        val = self.read_data(cname2lab, "images_variant_val.txt")
        test = self.read_data(cname2lab, "images_variant_test.txt")
        return train, val, test

    def read_data(self, cname2lab: dict[str, int], split_file: str) -> list[Datum]:
        filepath = os.path.join(self.dataset_dir, split_file)
        items = []
        with open(filepath, encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                fields = line.strip().split(" ")
                if not fields[0]:
                    continue
                classname = " ".join(fields[1:])
                if classname not in cname2lab:
                    raise DatasetLayoutError(
                        f"{filepath}:{lineno}: variant {classname!r} is not in variants.txt"
                    )
                impath = os.path.join(self.image_dir, fields[0] + ".jpg")
                items.append(make_datum(impath, cname2lab[classname], classname, filepath))
        return items
