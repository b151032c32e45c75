"""Stanford Cars (196 models); class names put the year first ("2012 Tesla Model S Sedan")."""

from __future__ import annotations

import os

from dassl.data.datasets import DATASET_REGISTRY, Datum

from .coop_base import CoOpDataset, load_mat, make_datum, split_trainval


def year_first(classname: str) -> str:
    """``"Tesla Model S Sedan 2012"`` -> ``"2012 Tesla Model S Sedan"`` (CoOp's class names)."""
    names = classname.split(" ")
    year = names.pop(-1)
    names.insert(0, year)
    return " ".join(names)


@DATASET_REGISTRY.register(builtin=True)
class StanfordCars(CoOpDataset):
    """``stanford_cars/{cars_train,cars_test}/`` + ``split_zhou_StanfordCars.json``.

    Split paths are relative to the dataset folder (``cars_train/00001.jpg``). Fallback:
    ``devkit/cars_train_annos.mat`` (80/20 train/val), ``cars_test_annos_withlabels.mat``,
    ``devkit/cars_meta.mat``.
    """

    dataset_dir = "stanford_cars"
    image_subdir = ""
    split_file = "split_zhou_StanfordCars.json"
    split_relative_to = "dataset_dir"
    annotation_files = (
        "cars_train",
        "cars_test",
        "devkit/cars_train_annos.mat",
        "cars_test_annos_withlabels.mat",
        "devkit/cars_meta.mat",
    )

    def build_splits(self):
        trainval_file = os.path.join(self.dataset_dir, "devkit", "cars_train_annos.mat")
        test_file = os.path.join(self.dataset_dir, "cars_test_annos_withlabels.mat")
        meta_file = os.path.join(self.dataset_dir, "devkit", "cars_meta.mat")
        trainval = self.read_data("cars_train", trainval_file, meta_file)
        test = self.read_data("cars_test", test_file, meta_file)
        train, val = split_trainval(trainval)
        return train, val, test

    def read_data(self, image_dir: str, anno_file: str, meta_file: str) -> list[Datum]:
        """Datums of ``image_dir`` from a devkit annotation struct array (``fname``, ``class``)."""
        annos = load_mat(anno_file, "annotations")[0]
        class_names = load_mat(meta_file, "class_names")[0]
        items = []
        for anno in annos:
            imname = str(anno["fname"][0])
            label = int(anno["class"][0, 0]) - 1  # 1-based in the devkit
            classname = year_first(str(class_names[label][0]))
            impath = os.path.join(self.dataset_dir, image_dir, imname)
            items.append(make_datum(impath, label, classname, anno_file))
        return items
