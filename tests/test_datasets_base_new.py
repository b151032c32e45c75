"""The base/new rule and upstream's random consumption (checked against reference code here)."""

from __future__ import annotations

import os
import random

import pytest

import datasets  # noqa: F401
from dassl.data.datasets import Datum, build_dataset
from datasets.base_new import base_new_ranges, select_classes, subsample_classes
from datasets.dtd import DescribableTextures
from datasets.oxford_pets import OxfordPets
from tests.fake_datasets import FAKES, make_cfg, write_image


@pytest.mark.parametrize(
    ("n", "base", "new"),
    [(0, 0, 0), (1, 1, 0), (4, 2, 2), (5, 3, 2), (37, 19, 18), (397, 199, 198), (1000, 500, 500)],
)
def test_base_new_ranges_odd_and_even(n, base, new):
    b, nw = base_new_ranges(n)
    assert (len(b), len(nw)) == (base, new)
    assert list(b) + list(nw) == list(range(n))


def _items(tmp_path, labels):
    p = str(tmp_path / "x.jpg")
    write_image(p)
    return [Datum(impath=p, label=y, classname=f"c{y}") for y in labels]


def test_select_classes_relabels_from_zero(tmp_path):
    items = _items(tmp_path, [0, 3, 2, 4, 1, 3])
    out = select_classes(items, range(2, 5))
    assert [(it.label, it.classname) for it in out] == [(1, "c3"), (0, "c2"), (2, "c4"), (1, "c3")]
    assert [it.label for it in items] == [0, 3, 2, 4, 1, 3]  # inputs untouched


def test_subsample_classes_uses_first_split_labels(tmp_path):
    train = _items(tmp_path, [0, 1, 2, 3, 4])
    test = _items(tmp_path, [4, 3, 2, 1, 0])
    assert subsample_classes(train, test, subsample="all") == (train, test)
    base_train, base_test = subsample_classes(train, test, subsample="base")
    assert [it.classname for it in base_test] == ["c2", "c1", "c0"]
    new_train, new_test = subsample_classes(train, test, subsample="new")
    assert [(it.label, it.classname) for it in new_test] == [(1, "c4"), (0, "c3")]
    # the upstream static helper is the same function
    assert OxfordPets.subsample_classes is subsample_classes
    with pytest.raises(ValueError):
        subsample_classes(train, subsample="half")


def test_read_and_split_data_matches_upstream_reference(tmp_path):
    fake = FAKES["Food101"](str(tmp_path))
    image_dir = os.path.join(fake.dataset_dir, "images")
    random.seed(7)
    got = DescribableTextures.read_and_split_data(image_dir)
    # reference: upstream's algorithm written out
    random.seed(7)
    ref = ([], [], [])
    for label, c in enumerate(sorted(os.listdir(image_dir))):
        ims = [os.path.join(image_dir, c, f) for f in os.listdir(os.path.join(image_dir, c))]
        random.shuffle(ims)
        n_tr, n_va = round(len(ims) * 0.5), round(len(ims) * 0.2)
        for part, sl in zip(ref, (ims[:n_tr], ims[n_tr : n_tr + n_va], ims[n_tr + n_va :])):
            part.extend((p, label, c) for p in sl)
    for g, r in zip(got, ref):
        assert [(it.impath, it.label, it.classname) for it in g] == r


def test_pets_split_and_few_shot_match_upstream_reference(tmp_path):
    fake = FAKES["OxfordPets"](str(tmp_path))
    cfg = make_cfg(str(tmp_path), "OxfordPets", num_shots=2, seed=5)
    random.seed(5)
    ds = build_dataset(cfg)
    # reference: trainval/test lists, per-class shuffle for val, then few-shot sampling
    random.seed(5)
    trainval = []
    with open(os.path.join(fake.dataset_dir, "annotations", "trainval.txt")) as f:
        for line in f:
            im, y, _, _ = line.split()
            trainval.append((os.path.join(fake.dataset_dir, "images", im + ".jpg"), int(y) - 1))
    groups = {}
    for i, (_, y) in enumerate(trainval):
        groups.setdefault(y, []).append(i)
    train, val = [], []
    for idxs in groups.values():
        n_val = round(len(idxs) * 0.2)
        random.shuffle(idxs)
        val += [trainval[i] for i in idxs[:n_val]]
        train += [trainval[i] for i in idxs[n_val:]]

    def fewshot(items, k):
        by = {}
        for it in items:
            by.setdefault(it[1], []).append(it)
        out = []
        for group in by.values():
            out += random.sample(group, k) if len(group) >= k else group
        return out

    assert [(it.impath, it.label) for it in ds.train_x] == fewshot(train, 2)
    assert [(it.impath, it.label) for it in ds.val] == fewshot(val, 2)
