"""Tiny fake copies of the on-disk layouts of the 15 CoOp datasets (for tests only).

Each ``make_<name>(root)`` writes ``<root>/<dataset dir>/`` with the real file and folder
names (annotation files, split lists, .mat files) and a few 8x8 JPEGs per class, and returns a
:class:`Fake` describing what the loader must produce. ``FAKES`` maps registry names to them.
"""

from __future__ import annotations

import io
import json
import os
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

__all__ = ["FAKES", "Fake", "jpeg_bytes", "make_cfg", "write_image"]

_JPEG: bytes | None = None


def jpeg_bytes() -> bytes:
    """An 8x8 RGB JPEG (encoded once)."""
    global _JPEG
    if _JPEG is None:
        buf = io.BytesIO()
        Image.new("RGB", (8, 8), (200, 30, 60)).save(buf, format="JPEG")
        _JPEG = buf.getvalue()
    return _JPEG


def write_image(path: str) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(jpeg_bytes())


def _write_text(path: str, lines: list[str], newline: str = "\n") -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="") as f:
        f.write("".join(line + newline for line in lines))


@dataclass
class Fake:
    """What a fake layout should load as (full labels, before any few-shot/subsample)."""

    name: str  # registry name
    dataset_dir: str  # absolute path of the fake dataset folder
    classnames: list[str]  # in label order
    sizes: dict[str, int]  # expected split sizes ("train", "val", "test")
    split_file: str | None = None  # split json path when the dataset has one
    annotation_files: list[str] = field(default_factory=list)  # removable after a first build


def make_cfg(root: str, name: str, num_shots: int = -1, subsample: str = "all", seed: int = 1):
    """A default config for ``name`` under ``root``."""
    from dassl.config import get_cfg_default

    cfg = get_cfg_default()
    cfg.DATASET.ROOT = root
    cfg.DATASET.NAME = name
    cfg.DATASET.NUM_SHOTS = num_shots
    cfg.DATASET.SUBSAMPLE_CLASSES = subsample
    cfg.SEED = seed
    return cfg


# --------------------------------------------------------------------------------------------


def make_oxford_pets(root: str) -> Fake:
    d = os.path.join(root, "oxford_pets")
    breeds = [("Abyssinian", 1, 1), ("american_bulldog", 2, 2), ("Bengal", 1, 3)]
    trainval, test = [], []
    for breed, species, cid in breeds:
        for i in range(1, 8):
            write_image(os.path.join(d, "images", f"{breed}_{i}.jpg"))
            line = f"{breed}_{i} {cid} {species} {i}"
            (trainval if i <= 5 else test).append(line)
    _write_text(os.path.join(d, "annotations", "trainval.txt"), trainval)
    _write_text(os.path.join(d, "annotations", "test.txt"), test)
    return Fake(
        "OxfordPets",
        d,
        ["abyssinian", "american_bulldog", "bengal"],
        {"train": 12, "val": 3, "test": 6},
        os.path.join(d, "split_zhou_OxfordPets.json"),
        ["annotations"],
    )


def make_oxford_flowers(root: str) -> Fake:
    from scipy.io import savemat

    d = os.path.join(root, "oxford_flowers")
    # interleaved, as in the real imagelabels.mat; first appearance order: 3, 1, 4, 2
    labels = [3, 1, 4, 2] * 5
    for i in range(len(labels)):
        write_image(os.path.join(d, "jpg", f"image_{i + 1:05d}.jpg"))
    savemat(os.path.join(d, "imagelabels.mat"), {"labels": np.array([labels], dtype=np.uint8)})
    names = {"1": "pink primrose", "2": "hard-leaved pocket orchid", "3": "canterbury bells"}
    names["4"] = "sweet pea"
    with open(os.path.join(d, "cat_to_name.json"), "w") as f:
        json.dump(names, f)
    return Fake(
        "OxfordFlowers",
        d,
        ["pink primrose", "hard-leaved pocket orchid", "canterbury bells", "sweet pea"],
        {"train": 8, "val": 4, "test": 8},
        os.path.join(d, "split_zhou_OxfordFlowers.json"),
        ["imagelabels.mat", "cat_to_name.json"],
    )


def make_fgvc_aircraft(root: str) -> Fake:
    d = os.path.join(root, "fgvc_aircraft")
    variants = ["707-320", "A300B4", "Cessna 172"]
    _write_text(os.path.join(d, "variants.txt"), variants)
    n = 1000000
    for split, count in (("train", 3), ("val", 2), ("test", 2)):
        lines = []
        for v in variants:
            for _ in range(count):
                n += 1
                write_image(os.path.join(d, "images", f"{n}.jpg"))
                lines.append(f"{n} {v}")
        _write_text(os.path.join(d, f"images_variant_{split}.txt"), lines)
    return Fake("FGVCAircraft", d, variants, {"train": 9, "val": 6, "test": 6})


def _class_folders(image_dir: str, classes: list[str], n: int, pattern: str) -> None:
    for c in classes:
        for i in range(1, n + 1):
            write_image(os.path.join(image_dir, c, pattern.format(c=c, i=i)))


def make_dtd(root: str) -> Fake:
    d = os.path.join(root, "dtd")
    _class_folders(
        os.path.join(d, "images"), ["banded", "zigzagged", "blotchy"], 5, "{c}_{i:04d}.jpg"
    )
    os.makedirs(os.path.join(d, "labels"), exist_ok=True)
    os.makedirs(os.path.join(d, "imdb"), exist_ok=True)
    return Fake(
        "DescribableTextures",
        d,
        ["banded", "blotchy", "zigzagged"],
        {"train": 6, "val": 3, "test": 6},
        os.path.join(d, "split_zhou_DescribableTextures.json"),
        [],  # the image folders are the annotations
    )


def make_eurosat(root: str) -> Fake:
    d = os.path.join(root, "eurosat")
    classes = ["SeaLake", "AnnualCrop", "Forest", "HerbaceousVegetation"]
    _class_folders(os.path.join(d, "2750"), classes, 5, "{c}_{i}.jpg")
    return Fake(
        "EuroSAT",
        d,
        ["Annual Crop Land", "Forest", "Herbaceous Vegetation Land", "Sea or Lake"],
        {"train": 8, "val": 4, "test": 8},
        os.path.join(d, "split_zhou_EuroSAT.json"),
        [],  # the image folders are the annotations
    )


def _cars_annos(labels: list[int]) -> np.ndarray:
    fields = ["bbox_x1", "bbox_y1", "bbox_x2", "bbox_y2", "class", "fname"]
    arr = np.zeros((1, len(labels)), dtype=[(f, "O") for f in fields])
    for i, label in enumerate(labels):
        for f in fields[:4]:
            arr[0, i][f] = np.array([[i]], dtype=np.uint16)
        arr[0, i]["class"] = np.array([[label]], dtype=np.uint8)
        arr[0, i]["fname"] = np.array([f"{i + 1:05d}.jpg"])
    return arr


def make_stanford_cars(root: str) -> Fake:
    from scipy.io import savemat

    d = os.path.join(root, "stanford_cars")
    meta = ["AM General Hummer SUV 2000", "Acura RL Sedan 2012", "Tesla Model S Sedan 2012"]
    meta.append("smart fortwo Convertible 2012")
    class_names = np.empty((1, len(meta)), dtype=object)
    for i, m in enumerate(meta):
        class_names[0, i] = np.array([m])
    os.makedirs(os.path.join(d, "devkit"), exist_ok=True)
    savemat(os.path.join(d, "devkit", "cars_meta.mat"), {"class_names": class_names})
    train_labels = [1, 2, 3, 4] * 5
    test_labels = [4, 3, 2, 1] * 2
    savemat(
        os.path.join(d, "devkit", "cars_train_annos.mat"),
        {"annotations": _cars_annos(train_labels)},
    )
    savemat(
        os.path.join(d, "cars_test_annos_withlabels.mat"), {"annotations": _cars_annos(test_labels)}
    )
    for i in range(len(train_labels)):
        write_image(os.path.join(d, "cars_train", f"{i + 1:05d}.jpg"))
    for i in range(len(test_labels)):
        write_image(os.path.join(d, "cars_test", f"{i + 1:05d}.jpg"))
    return Fake(
        "StanfordCars",
        d,
        [
            "2000 AM General Hummer SUV",
            "2012 Acura RL Sedan",
            "2012 Tesla Model S Sedan",
            "2012 smart fortwo Convertible",
        ],
        {"train": 16, "val": 4, "test": 8},
        os.path.join(d, "split_zhou_StanfordCars.json"),
        ["devkit", "cars_test_annos_withlabels.mat"],
    )


def make_food101(root: str) -> Fake:
    d = os.path.join(root, "food-101")
    _class_folders(
        os.path.join(d, "images"), ["apple_pie", "baby_back_ribs", "waffles"], 5, "{i}00{i}.jpg"
    )
    os.makedirs(os.path.join(d, "meta"), exist_ok=True)
    _write_text(os.path.join(d, "README.txt"), ["Food-101"])
    return Fake(
        "Food101",
        d,
        ["apple_pie", "baby_back_ribs", "waffles"],
        {"train": 6, "val": 3, "test": 6},
        os.path.join(d, "split_zhou_Food101.json"),
        [],  # the image folders are the annotations
    )


def make_sun397(root: str) -> Fake:
    d = os.path.join(root, "sun397")
    classes = ["/a/abbey", "/a/apartment_building/outdoor", "/b/bakery/shop"]
    _write_text(os.path.join(d, "ClassName.txt"), classes)
    train, test = [], []
    for k, c in enumerate(classes):
        for i in range(7):
            rel = f"{c}/sun_a{k}b{i}.jpg"
            write_image(os.path.join(d, "SUN397", rel[1:]))
            (train if i < 5 else test).append(rel)
    _write_text(os.path.join(d, "Training_01.txt"), train)
    _write_text(os.path.join(d, "Testing_01.txt"), test)
    return Fake(
        "SUN397",
        d,
        ["abbey", "outdoor apartment_building", "shop bakery"],
        {"train": 12, "val": 3, "test": 6},
        os.path.join(d, "split_zhou_SUN397.json"),
        ["ClassName.txt", "Training_01.txt", "Testing_01.txt"],
    )


def make_caltech101(root: str) -> Fake:
    d = os.path.join(root, "caltech-101")
    folders = ["BACKGROUND_Google", "Faces", "Faces_easy", "Leopards", "airplanes", "accordion"]
    _class_folders(os.path.join(d, "101_ObjectCategories"), folders, 5, "image_{i:04d}.jpg")
    return Fake(
        "Caltech101",
        d,
        # case-sensitive folder sort: Faces, Leopards, accordion, airplanes
        ["face", "leopard", "accordion", "airplane"],
        {"train": 8, "val": 4, "test": 8},
        os.path.join(d, "split_zhou_Caltech101.json"),
        [],  # the image folders are the annotations
    )


def make_ucf101(root: str) -> Fake:
    d = os.path.join(root, "ucf101")
    actions = ["ApplyEyeMakeup", "Basketball", "YoYo"]
    lists = os.path.join(d, "ucfTrainTestlist")
    # the real list files have Windows line endings
    _write_text(
        os.path.join(lists, "classInd.txt"), [f"{i + 1} {a}" for i, a in enumerate(actions)], "\r\n"
    )
    train, test = [], []
    for label, a in enumerate(actions, 1):
        renamed = {"ApplyEyeMakeup": "Apply_Eye_Makeup", "YoYo": "Yo_Yo"}.get(a, a)
        for g in range(1, 8):
            clip = f"v_{a}_g{g:02d}_c01"
            write_image(os.path.join(d, "UCF-101-midframes", renamed, clip + ".jpg"))
            if g <= 5:
                train.append(f"{a}/{clip}.avi {label}")
            else:
                test.append(f"{a}/{clip}.avi")
    _write_text(os.path.join(lists, "trainlist01.txt"), train, "\r\n")
    _write_text(os.path.join(lists, "testlist01.txt"), test, "\r\n")
    return Fake(
        "UCF101",
        d,
        ["Apply_Eye_Makeup", "Basketball", "Yo_Yo"],
        {"train": 12, "val": 3, "test": 6},
        os.path.join(d, "split_zhou_UCF101.json"),
        ["ucfTrainTestlist"],
    )


_WNIDS = ["n01440764", "n01443537", "n01484850", "n01491361", "n01494475"]
_WNAMES = ["tench", "goldfish", "great white shark", "tiger shark", "hammerhead shark"]


def _classnames_txt(d: str, n: int = 5) -> None:
    _write_text(
        os.path.join(d, "classnames.txt"), [f"{w} {c}" for w, c in zip(_WNIDS[:n], _WNAMES)]
    )


def make_imagenet(root: str) -> Fake:
    d = os.path.join(root, "imagenet")
    wnids = _WNIDS[:3]
    _classnames_txt(d, 3)
    for w in wnids:
        for i in range(4):
            write_image(os.path.join(d, "images", "train", w, f"{w}_{i}.JPEG"))
        for i in range(2):
            write_image(os.path.join(d, "images", "val", w, f"ILSVRC2012_val_{w}{i}.JPEG"))
    return Fake("ImageNet", d, _WNAMES[:3], {"train": 12, "val": 6, "test": 6})


def make_imagenetv2(root: str) -> Fake:
    d = os.path.join(root, "imagenetv2")
    _classnames_txt(d, 3)
    for label in range(3):
        for i in range(2):
            write_image(
                os.path.join(
                    d, "imagenetv2-matched-frequency-format-val", str(label), f"{i}ab.jpeg"
                )
            )
    return Fake("ImageNetV2", d, _WNAMES[:3], {"train": 6, "test": 6})


def make_imagenet_sketch(root: str) -> Fake:
    d = os.path.join(root, "imagenet-sketch")
    _classnames_txt(d, 5)
    for w in [_WNIDS[3], _WNIDS[0], _WNIDS[1]]:
        for i in range(2):
            write_image(os.path.join(d, "images", w, f"sketch_{i}.JPEG"))
    return Fake("ImageNetSketch", d, [_WNAMES[0], _WNAMES[1], _WNAMES[3]], {"train": 6, "test": 6})


def _adversarial_like(root: str, dirname: str, subdir: str, name: str) -> Fake:
    d = os.path.join(root, dirname)
    _classnames_txt(d, 5)  # ImageNet's full list; only some classes have folders
    for w in [_WNIDS[4], _WNIDS[2]]:
        for i in range(3):
            write_image(
                os.path.join(d, subdir, w, f"0.00{i}_digital clock _ digital clock_0.8.jpg")
            )
    _write_text(os.path.join(d, subdir, "README.txt"), ["not a class"])
    return Fake(name, d, [_WNAMES[2], _WNAMES[4]], {"train": 6, "test": 6})


def make_imagenet_a(root: str) -> Fake:
    return _adversarial_like(root, "imagenet-adversarial", "imagenet-a", "ImageNetA")


def make_imagenet_r(root: str) -> Fake:
    return _adversarial_like(root, "imagenet-rendition", "imagenet-r", "ImageNetR")


FAKES = {
    "OxfordPets": make_oxford_pets,
    "OxfordFlowers": make_oxford_flowers,
    "FGVCAircraft": make_fgvc_aircraft,
    "DescribableTextures": make_dtd,
    "EuroSAT": make_eurosat,
    "StanfordCars": make_stanford_cars,
    "Food101": make_food101,
    "SUN397": make_sun397,
    "Caltech101": make_caltech101,
    "UCF101": make_ucf101,
    "ImageNet": make_imagenet,
    "ImageNetV2": make_imagenetv2,
    "ImageNetSketch": make_imagenet_sketch,
    "ImageNetA": make_imagenet_a,
    "ImageNetR": make_imagenet_r,
}
