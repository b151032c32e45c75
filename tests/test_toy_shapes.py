"""ToyShapes: generated CoOp layout, split json, determinism, resumability, base/new classes."""

import json
import os

import numpy as np
import pytest
from PIL import Image

from dassl.config import get_cfg_default
from dassl.data.datasets import build_dataset
from datasets.toy_render import CLASSNAMES
from datasets.toy_shapes import (
    SPLIT_FILE,
    ToyShapes,
    class_dirname,
    generate_toy_shapes,
    render_split,
)

COUNTS = dict(n_train=3, n_val=1, n_test=2)


@pytest.fixture(scope="module")
def toy_root(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("data"))
    generate_toy_shapes(root, **COUNTS)
    return root


def _cfg(root, **kw):
    cfg = get_cfg_default()
    cfg.DATASET.ROOT = root
    cfg.DATASET.NAME = "ToyShapes"
    cfg.SEED = 1
    for k, v in kw.items():
        setattr(cfg.DATASET, k, v)
    return cfg


def test_layout_and_split_file(toy_root):
    ddir = os.path.join(toy_root, "toy_shapes")
    assert sorted(os.listdir(os.path.join(ddir, "images"))) == sorted(
        class_dirname(c) for c in CLASSNAMES
    )
    assert not [f for f in os.listdir(toy_root) if f.startswith(".toy_shapes")]  # no temp left
    with open(os.path.join(ddir, SPLIT_FILE)) as f:
        split = json.load(f)
    assert set(split) == {"train", "val", "test"}
    for name, n in (("train", 3), ("val", 1), ("test", 2)):
        items = split[name]
        assert len(items) == 36 * n
        for rel, label, cname in items:
            assert CLASSNAMES[label] == cname
            assert rel.startswith(class_dirname(cname) + "/") and rel.endswith(".png")
    all_paths = [rel for s in split.values() for rel, _, _ in s]
    assert len(set(all_paths)) == len(all_paths) == 36 * 6


def test_pngs_are_the_rendered_arrays(toy_root):
    ddir = os.path.join(toy_root, "toy_shapes")
    with open(os.path.join(ddir, SPLIT_FILE)) as f:
        test_items = json.load(f)["test"]
    images, labels = render_split("test", 2, seed=0)
    assert labels.tolist() == [label for _, label, _ in test_items]
    for (rel, _, _), arr in zip(test_items[:8], images[:8]):
        img = Image.open(os.path.join(ddir, "images", rel))
        assert img.mode == "RGB" and img.size == (32, 32)
        np.testing.assert_array_equal(np.asarray(img), arr)
    again, _ = render_split("test", 2, seed=0)
    np.testing.assert_array_equal(again, images)
    other, _ = render_split("test", 2, seed=1)
    assert not np.array_equal(other, images)


def test_generation_is_idempotent_and_repairs_partial_trees(tmp_path):
    root = str(tmp_path)
    ddir = generate_toy_shapes(root, **COUNTS)
    split_path = os.path.join(ddir, SPLIT_FILE)
    mtime = os.stat(split_path).st_mtime_ns
    assert generate_toy_shapes(root, **COUNTS) == ddir
    assert os.stat(split_path).st_mtime_ns == mtime  # complete: untouched

    victim = os.path.join(ddir, "images", "red_star", "00000.png")
    reference = np.asarray(Image.open(victim))
    os.remove(victim)  # a half-written / damaged tree is detected and regenerated
    generate_toy_shapes(root, **COUNTS)
    np.testing.assert_array_equal(np.asarray(Image.open(victim)), reference)

    generate_toy_shapes(root, n_train=2, n_val=1, n_test=1)  # other sizes: regenerated
    with open(split_path) as f:
        assert len(json.load(f)["train"]) == 72
    with pytest.raises(ValueError, match="n_test"):
        generate_toy_shapes(root, n_train=1, n_val=1, n_test=0)


def test_dataset_classes_and_subsampling(toy_root):
    ds = build_dataset(_cfg(toy_root))
    assert isinstance(ds, ToyShapes)
    assert ds.all_classnames == CLASSNAMES
    assert ds.base_classes == range(0, 18) and ds.new_classes == range(18, 36)
    assert len(ds.train_x) == 36 * 3 and len(ds.val) == 36 and len(ds.test) == 72
    assert ds.classnames == CLASSNAMES

    base = ToyShapes(_cfg(toy_root, SUBSAMPLE_CLASSES="base"))
    assert base.classnames == CLASSNAMES[:18]
    assert {c.split()[0] for c in base.classnames} == {"blue", "green", "orange"}
    new = ToyShapes(_cfg(toy_root, SUBSAMPLE_CLASSES="new"))
    assert new.classnames == CLASSNAMES[18:]
    assert sorted({d.label for d in new.test}) == list(range(18))
    assert len(new.full_splits["test"]) == 72  # full labels kept for all-class trainers


def test_few_shot_uses_the_shared_cache(toy_root):
    ds = ToyShapes(_cfg(toy_root, NUM_SHOTS=2, SUBSAMPLE_CLASSES="base"))
    assert len(ds.train_x) == 18 * 2
    cache = os.path.join(toy_root, "toy_shapes", "split_fewshot", "shot_2-seed_1.pkl")
    assert os.path.isfile(cache)
