"""PACS, VLCS, VisDA17 and ImageCLEFDA give exactly what upstream's rules give on their files.

Each test writes a tiny copy in the upstream on-disk layout and compares with item lists written
out by hand from the upstream rules (Dassl's ``dg/pacs.py``, ``dg/vlcs.py``, ``da/visda17.py``;
the ImageCLEF-DA release's ``list/<d>List.txt``), not from our readers: file order, label base,
which files feed train/val/test, class names and their order, Datum domains.
"""

from __future__ import annotations

import os

import pytest

import datasets  # noqa: F401  (registers the datasets)
from dassl.data.datasets import build_dataset
from tests.fake_datasets import _write_text, make_cfg, write_image


def _build(root, name, source, target):
    cfg = make_cfg(str(root), name)
    cfg.DATASET.SOURCE_DOMAINS = list(source)
    cfg.DATASET.TARGET_DOMAINS = list(target)
    return build_dataset(cfg)


def _items(items, base):
    return [(os.path.relpath(d.impath, base), d.label, d.domain, d.classname) for d in items]


def _files(base, lines_by_file, images):
    for rel, lines in lines_by_file.items():
        _write_text(os.path.join(base, rel), lines)
    for rel in images:
        write_image(os.path.join(base, rel))


REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACS_CLASSES = ["dog", "elephant", "giraffe", "guitar", "horse", "house", "person"]


def test_pacs_follows_dassl(tmp_path):
    base = tmp_path / "pacs"
    splits = {
        # 1-based labels; listed out of class order on purpose
        "splits/photo_train_kfold.txt": [
            "photo/person/p1.jpg 7",
            "photo/dog/d1.jpg 1",
            "photo/elephant/e1.jpg 2",
            "photo/giraffe/g1.jpg 3",
            "photo/guitar/u1.jpg 4",
            "photo/horse/h1.jpg 5",
            "photo/house/o1.jpg 6",
        ],
        "splits/photo_crossval_kfold.txt": ["photo/dog/d2.jpg 1"],
        # Dassl never reads *_test_kfold.txt (targets use train + crossval)
        "splits/photo_test_kfold.txt": ["photo/dog/t1.jpg 1"],
        # the known-corrupt image is listed but absent: Dassl skips it before any file access
        "splits/sketch_train_kfold.txt": [
            "sketch/dog/n02103406_4068-1.png 1",
            "sketch/horse/s1.png 5",
        ],
        "splits/sketch_crossval_kfold.txt": ["sketch/house/s2.png 6"],
        "splits/sketch_test_kfold.txt": ["sketch/dog/t2.png 1"],
        "splits/art_painting_train_kfold.txt": ["art_painting/guitar/a1.jpg 4"],
        "splits/art_painting_crossval_kfold.txt": ["art_painting/person/a2.jpg 7"],
    }
    images = [line.split(" ")[0] for lines in splits.values() for line in lines]
    _files(base, splits, ["images/" + p for p in images if "4068-1" not in p])

    ds = _build(tmp_path, "PACS", ["photo"], ["sketch", "art_painting"])
    img = str(base / "images")
    assert _items(ds.train_x, img) == [
        ("photo/person/p1.jpg", 6, 0, "person"),
        ("photo/dog/d1.jpg", 0, 0, "dog"),
        ("photo/elephant/e1.jpg", 1, 0, "elephant"),
        ("photo/giraffe/g1.jpg", 2, 0, "giraffe"),
        ("photo/guitar/u1.jpg", 3, 0, "guitar"),
        ("photo/horse/h1.jpg", 4, 0, "horse"),
        ("photo/house/o1.jpg", 5, 0, "house"),
    ]
    assert _items(ds.val, img) == [("photo/dog/d2.jpg", 0, 0, "dog")]
    assert _items(ds.test, img) == [
        ("sketch/horse/s1.png", 4, 0, "horse"),
        ("sketch/house/s2.png", 5, 0, "house"),
        ("art_painting/guitar/a1.jpg", 3, 1, "guitar"),
        ("art_painting/person/a2.jpg", 6, 1, "person"),
    ]
    assert ds.train_u is None
    assert ds.num_classes == 7
    assert ds.classnames == PACS_CLASSES and ds.all_classnames == PACS_CLASSES
    assert ds.test_domains == ["sketch", "art_painting"]
    # Dassl's names are exact and lower case
    with pytest.raises(ValueError, match=r"DATASET\.SOURCE_DOMAINS has unknown domain.*'Photo'"):
        _build(tmp_path, "PACS", ["Photo"], ["sketch"])
    with pytest.raises(ValueError, match=r"DATASET\.TARGET_DOMAINS is empty"):
        _build(tmp_path, "PACS", ["photo"], [])


def test_vlcs_follows_dassl(tmp_path):
    base = tmp_path / "VLCS"
    images = [
        "CALTECH/train/0/a.jpg",
        "CALTECH/train/0/b.jpg",
        "CALTECH/train/1/c.jpg",
        "CALTECH/train/2/d.jpg",
        "CALTECH/train/3/e.jpg",
        "CALTECH/train/4/f.jpg",
        "CALTECH/train/4/g.png",  # not *.jpg: Dassl's glob skips it
        "CALTECH/train/4/h.JPG",  # glob is case-sensitive
        "CALTECH/crossval/2/v.jpg",
        "CALTECH/test/0/unused.jpg",  # a source domain's test folder is not read
        "CALTECH/full/0/unused.jpg",
        "SUN/test/0/s0.jpg",
        "SUN/test/1/s1.jpg",
        "SUN/test/2/s2.jpg",
        "SUN/test/3/s3.jpg",
        "SUN/test/4/s4.jpg",
        "SUN/train/0/unused.jpg",
        "LABELME/test/4/l4.jpg",
    ]
    _files(base, {"CALTECH/train/.DS_Store": ["hidden"]}, images)
    for split in ("crossval", "test"):  # the other class folders exist, empty
        for k in range(5):
            os.makedirs(base / "CALTECH" / split / str(k), exist_ok=True)
    for k in range(5):
        os.makedirs(base / "LABELME" / "test" / str(k), exist_ok=True)

    ds = _build(tmp_path, "VLCS", ["caltech"], ["sun", "labelme"])
    names = ["bird", "car", "chair", "dog", "person"]
    # labels: position of the class folder in the sorted folder list; glob order is unspecified
    assert sorted(_items(ds.train_x, str(base))) == [
        ("CALTECH/train/0/a.jpg", 0, 0, "bird"),
        ("CALTECH/train/0/b.jpg", 0, 0, "bird"),
        ("CALTECH/train/1/c.jpg", 1, 0, "car"),
        ("CALTECH/train/2/d.jpg", 2, 0, "chair"),
        ("CALTECH/train/3/e.jpg", 3, 0, "dog"),
        ("CALTECH/train/4/f.jpg", 4, 0, "person"),
    ]
    assert _items(ds.val, str(base)) == [("CALTECH/crossval/2/v.jpg", 2, 0, "chair")]
    assert sorted(_items(ds.test, str(base))) == [
        ("LABELME/test/4/l4.jpg", 4, 1, "person"),
        ("SUN/test/0/s0.jpg", 0, 0, "bird"),
        ("SUN/test/1/s1.jpg", 1, 0, "car"),
        ("SUN/test/2/s2.jpg", 2, 0, "chair"),
        ("SUN/test/3/s3.jpg", 3, 0, "dog"),
        ("SUN/test/4/s4.jpg", 4, 0, "person"),
    ]
    # Dassl leaves VLCS class names empty; ours name the folders 0..4 in VLCS's class order
    assert ds.classnames == names and ds.all_classnames == names and ds.num_classes == 5
    with pytest.raises(ValueError, match=r"SOURCE_DOMAINS has unknown domain.*'CALTECH'"):
        _build(tmp_path, "VLCS", ["CALTECH"], ["sun"])


VISDA_CLASSES = ["aeroplane", "bicycle", "bus", "car", "horse", "knife", "motorcycle", "person",
                 "plant", "skateboard", "train", "truck"]  # fmt: skip


def test_visda17_follows_dassl(tmp_path):
    base = tmp_path / "visda17"
    order = [11, 0, 5, 1, 2, 3, 4, 6, 7, 8, 9, 10]  # file order differs from label order
    synthetic = [f"{VISDA_CLASSES[y]}/src_1_0{y}_x__288_288_150.png {y}" for y in order]
    real = [f"{VISDA_CLASSES[y]}/{VISDA_CLASSES[y]}_{y:04d}.jpg {y}" for y in reversed(order)]
    lists = {
        "train/image_list.txt": synthetic,
        "validation/image_list.txt": real,
        "test/image_list.txt": ["trunk01/0001.jpg"],  # unlabelled: never read
    }
    images = ["train/" + s.split(" ")[0] for s in synthetic]
    images += ["validation/" + s.split(" ")[0] for s in real]
    _files(base, lists, images)

    ds = _build(tmp_path, "VisDA17", ["synthetic"], ["real"])
    # Dassl: train_x = synthetic (train/), train_u = test = real (validation/), no val, domain 0
    exp_x = [
        (f"train/{VISDA_CLASSES[y]}/src_1_0{y}_x__288_288_150.png", y, 0, VISDA_CLASSES[y])
        for y in order
    ]
    exp_real = [
        (f"validation/{VISDA_CLASSES[y]}/{VISDA_CLASSES[y]}_{y:04d}.jpg", y, 0, VISDA_CLASSES[y])
        for y in reversed(order)
    ]
    assert _items(ds.train_x, str(base)) == exp_x
    assert ds.val is None
    assert _items(ds.train_u, str(base)) == exp_real
    assert _items(ds.test, str(base)) == exp_real
    assert ds.classnames == VISDA_CLASSES and ds.num_classes == 12
    with pytest.raises(ValueError, match=r"TARGET_DOMAINS has unknown domain.*'validation'"):
        _build(tmp_path, "VisDA17", ["synthetic"], ["validation"])


def test_imageclef_da_follows_the_release_lists(tmp_path):
    base = tmp_path / "image_CLEF"
    names = ["aeroplane", "bike", "bird", "boat", "bottle", "bus", "car", "dog", "horse",
             "monitor", "motorbike", "people"]  # fmt: skip
    lists = {
        # paths relative to image_CLEF/, 0-based labels; cList.txt lists a folder not on disk
        "list/iList.txt": [f"i/n{y:08d}_1.JPEG {y}" for y in range(12)],
        "list/cList.txt": ["c/246.wine-bottle/246_0001.jpg 4", "c/251.airplanes/251_0002.jpg 0"],
        "list/pList.txt": ["p/2008_000008.jpg 8"],
    }
    images = [f"i/n{y:08d}_1.JPEG" for y in range(12)]
    images += ["c/246_0001.jpg", "c/251_0002.jpg", "p/2008_000008.jpg"]
    _files(base, lists, images)

    ds = _build(tmp_path, "ImageCLEFDA", ["i"], ["c", "p"])
    assert _items(ds.train_x, str(base)) == [
        (f"i/n{y:08d}_1.JPEG", y, 0, names[y]) for y in range(12)
    ]
    assert _items(ds.test, str(base)) == [
        ("c/246_0001.jpg", 4, 0, "bottle"),
        ("c/251_0002.jpg", 0, 0, "aeroplane"),
        ("p/2008_000008.jpg", 8, 1, "horse"),
    ]
    assert ds.classnames == names and ds.num_classes == 12


@pytest.mark.parametrize(
    "config, name, cls",
    [("pacs", "PACS", "PACS"), ("vlcs", "VLCS", "VLCS"), ("visda17", "VisDA17", "VisDA17"),
     ("imageclef_da", "ImageCLEFDA", "ImageCLEFDA")],
)  # fmt: skip
def test_dataset_configs_use_dassl_names(config, name, cls):
    from dassl.config import get_cfg_default
    from dassl.data.datasets import DATASET_REGISTRY

    cfg = get_cfg_default()
    cfg.merge_from_file(os.path.join(REPO, "configs", "datasets", f"{config}.yaml"))
    assert cfg.DATASET.NAME == name  # Dassl's DATASET.NAME
    domains = DATASET_REGISTRY.get(name).domains
    assert DATASET_REGISTRY.get(name).__name__ == cls
    assert set(cfg.DATASET.SOURCE_DOMAINS) <= set(domains)
    assert set(cfg.DATASET.TARGET_DOMAINS) <= set(domains)
    assert cfg.TEST.PER_CLASS_RESULT == (name == "VisDA17")  # as Dassl's visda17.yaml
