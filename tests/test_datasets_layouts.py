"""Every dataset loads its real on-disk layout (tiny fakes): names, labels, splits, few-shot."""

from __future__ import annotations

import json
import os
import random
import shutil
import time
from collections import Counter

import pytest

import datasets  # noqa: F401  (registers the datasets)
from dassl.data.datasets import DATASET_REGISTRY, build_dataset
from datasets.base_new import base_new_ranges
from tests.fake_datasets import FAKES, make_cfg

TEST_ONLY = {"ImageNetV2", "ImageNetSketch", "ImageNetA", "ImageNetR"}
WITH_SPLIT_JSON = [n for n in FAKES if n not in TEST_ONLY | {"ImageNet", "FGVCAircraft"}]


def _load(root, name, seed=1, **kw):
    random.seed(seed)  # train.py seeds the global RNG before building the dataset
    return build_dataset(make_cfg(str(root), name, seed=seed, **kw))


def _paths(items):
    return [(it.impath, it.label, it.classname) for it in items]


def test_registry_has_the_15_upstream_names():
    expected = {
        "ImageNet", "Caltech101", "OxfordPets", "StanfordCars", "OxfordFlowers", "Food101",
        "FGVCAircraft", "SUN397", "DescribableTextures", "EuroSAT", "UCF101", "ImageNetV2",
        "ImageNetSketch", "ImageNetA", "ImageNetR",
    }  # fmt: skip
    assert expected <= set(DATASET_REGISTRY.registered_names())


def test_dataset_yaml_files_set_only_the_name(repo_root):
    import yaml

    names = {
        "imagenet": "ImageNet", "caltech101": "Caltech101", "oxford_pets": "OxfordPets",
        "stanford_cars": "StanfordCars", "oxford_flowers": "OxfordFlowers",
        "food101": "Food101", "fgvc_aircraft": "FGVCAircraft", "sun397": "SUN397",
        "dtd": "DescribableTextures", "eurosat": "EuroSAT", "ucf101": "UCF101",
        "imagenetv2": "ImageNetV2", "imagenet_sketch": "ImageNetSketch",
        "imagenet_a": "ImageNetA", "imagenet_r": "ImageNetR",
    }  # fmt: skip
    for fname, name in names.items():
        with open(os.path.join(repo_root, "configs", "datasets", fname + ".yaml")) as f:
            assert yaml.safe_load(f) == {"DATASET": {"NAME": name}}, fname


@pytest.mark.parametrize("name", list(FAKES))
def test_full_load_classnames_labels_sizes(tmp_path, name):
    fake = FAKES[name](str(tmp_path))
    ds = _load(tmp_path, name)
    assert ds.classnames == fake.classnames
    assert ds.all_classnames == fake.classnames
    assert ds.num_classes == len(fake.classnames)
    assert (ds.base_classes, ds.new_classes) == base_new_ranges(len(fake.classnames))
    assert len(ds.train_x) == fake.sizes["train"]
    assert len(ds.test) == fake.sizes["test"]
    if name in TEST_ONLY:
        assert ds.val is None and ds.train_x == ds.test  # upstream: test-only datasets
    else:
        assert len(ds.val) == fake.sizes["val"]
    if name == "ImageNet":
        assert ds.val == ds.test  # no val split: upstream evaluates test as val
    for split in (ds.train_x, ds.val or [], ds.test):
        for it in split:
            assert os.path.isfile(it.impath)
            assert it.impath.startswith(fake.dataset_dir + os.sep)
            assert ds.lab2cname[it.label] == it.classname
    for key, items in ds.full_splits.items():
        assert _paths(items) == _paths(
            {"train": ds.train_x, "val": ds.val or [], "test": ds.test}[key]
        )


@pytest.mark.parametrize("name", WITH_SPLIT_JSON)
def test_split_json_is_saved_then_read_without_annotations(tmp_path, name, caplog):
    fake = FAKES[name](str(tmp_path))
    first = _load(tmp_path, name, seed=1)
    assert os.path.isfile(fake.split_file)
    with open(fake.split_file) as f:
        split = json.load(f)
    assert set(split) == {"train", "val", "test"}
    rel, label, cname = split["train"][0]
    assert not os.path.isabs(rel) and isinstance(label, int) and cname in fake.classnames
    assert [len(split[k]) for k in ("train", "val", "test")] == [
        fake.sizes[k] for k in ("train", "val", "test")
    ]
    # the split file alone is enough; a different seed must not change anything
    for ann in fake.annotation_files:
        p = os.path.join(fake.dataset_dir, ann)
        shutil.rmtree(p) if os.path.isdir(p) else os.remove(p)
    caplog.clear()
    with caplog.at_level("INFO"):
        second = _load(tmp_path, name, seed=99)
    assert f"Reading split from {fake.split_file}" in caplog.text
    for attr in ("train_x", "val", "test"):
        assert _paths(getattr(first, attr)) == _paths(getattr(second, attr))


def test_hand_written_split_json_is_read_as_upstream(tmp_path):
    fake = FAKES["StanfordCars"](str(tmp_path))  # paths relative to the dataset folder
    split = {
        "train": [["cars_train/00001.jpg", 0, "2000 AM General Hummer SUV"],
                  ["cars_train/00002.jpg", 1, "2012 Acura RL Sedan"]],
        "val": [["cars_train/00003.jpg", 1, "2012 Acura RL Sedan"]],
        "test": [["cars_test/00001.jpg", 0, "2000 AM General Hummer SUV"]],
    }  # fmt: skip
    with open(fake.split_file, "w") as f:
        json.dump(split, f)
    ds = _load(tmp_path, "StanfordCars")
    assert _paths(ds.train_x) == [
        (
            os.path.join(fake.dataset_dir, "cars_train", "00001.jpg"),
            0,
            "2000 AM General Hummer SUV",
        ),
        (os.path.join(fake.dataset_dir, "cars_train", "00002.jpg"), 1, "2012 Acura RL Sedan"),
    ]
    assert ds.test[0].impath == os.path.join(fake.dataset_dir, "cars_test", "00001.jpg")


@pytest.mark.parametrize("name", [n for n in FAKES if n not in TEST_ONLY])
def test_base_new_subsample_partitions_and_relabels(tmp_path, name):
    fake = FAKES[name](str(tmp_path))
    full = _load(tmp_path, name)
    base = _load(tmp_path, name, subsample="base")
    new = _load(tmp_path, name, subsample="new")
    b, n = base_new_ranges(len(fake.classnames))
    assert base.classnames == [fake.classnames[i] for i in b]
    assert new.classnames == [fake.classnames[i] for i in n]
    for sub, rng in ((base, b), (new, n)):
        # full labels stay available to trainers that need them
        assert sub.all_classnames == fake.classnames
        assert (sub.base_classes, sub.new_classes) == (b, n)
        assert _paths(sub.full_splits["train"]) == _paths(full.train_x)
        for attr in ("train_x", "val", "test"):
            expected = [(p, rng.index(y), c) for p, y, c in _paths(getattr(full, attr)) if y in rng]
            assert _paths(getattr(sub, attr)) == expected
    assert len(base.test) + len(new.test) == len(full.test)


@pytest.mark.parametrize("name", [n for n in FAKES if n not in TEST_ONLY])
def test_few_shot_counts_cache_and_determinism(tmp_path, name, caplog):
    FAKES[name](str(tmp_path))
    full = _load(tmp_path, name, seed=2)
    k = 2
    ds = _load(tmp_path, name, seed=2, num_shots=k)
    per_class_full = Counter(it.label for it in full.train_x)
    assert Counter(it.label for it in ds.train_x) == {
        y: min(k, c) for y, c in per_class_full.items()
    }
    cache = os.path.join(ds.dataset_dir, "split_fewshot", f"shot_{k}-seed_2.pkl")
    assert os.path.isfile(cache)
    if name == "ImageNet":
        assert ds.val == ds.test and len(ds.test) == len(full.test)
    else:
        val_full = Counter(it.label for it in full.val)
        assert Counter(it.label for it in ds.val) == {y: min(k, c) for y, c in val_full.items()}
    # the cache is used on the next run (no random draws), with a different global state
    with caplog.at_level("INFO"):
        again = _load(tmp_path, name, seed=2, num_shots=k)
    assert f"Loading preprocessed few-shot data from {cache}" in caplog.text
    assert _paths(again.train_x) == _paths(ds.train_x)
    # rebuilt from scratch with the same seed: identical subset
    os.remove(cache)
    rebuilt = _load(tmp_path, name, seed=2, num_shots=k)
    assert _paths(rebuilt.train_x) == _paths(ds.train_x)
    assert _paths(rebuilt.val) == _paths(ds.val)


def test_all_15_fakes_load_quickly(tmp_path):
    for make in FAKES.values():
        make(str(tmp_path))
    t0 = time.perf_counter()
    for name in FAKES:
        _load(tmp_path, name, num_shots=1 if name not in TEST_ONLY else -1)
    assert time.perf_counter() - t0 < 10.0
