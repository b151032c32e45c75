"""The multi-domain benchmarks load from tiny fakes in their exact layouts; ToyShapesDG."""

from __future__ import annotations

import os

import numpy as np
import pytest

import datasets  # noqa: F401  (registers the datasets)
from dassl.data.datasets import build_dataset
from datasets.coop_base import DatasetLayoutError
from tests.fake_datasets import make_cfg
from tests.fake_domain_datasets import DOMAIN_FAKES


def _cfg(root, name, source, target):
    cfg = make_cfg(str(root), name)
    cfg.DATASET.SOURCE_DOMAINS = list(source)
    cfg.DATASET.TARGET_DOMAINS = list(target)
    return cfg


def _rel(items, base):
    return sorted((os.path.relpath(it.impath, base), it.label) for it in items)


@pytest.mark.parametrize("name", list(DOMAIN_FAKES))
def test_domain_layouts_load_with_source_and_target_domains(tmp_path, name):
    fake = DOMAIN_FAKES[name](str(tmp_path))
    domains = list(fake["domains"])
    source, target = domains[:1], domains[::-1]  # target order differs from the dataset's
    ds = build_dataset(_cfg(tmp_path, name, source, target))
    exp = fake["domains"]
    assert _rel(ds.train_x, fake["dir"]) == sorted(exp[source[0]]["train"])
    assert _rel(ds.val or [], fake["dir"]) == sorted(exp[source[0]]["val"])
    assert ds.test_domains == target
    # Dassl's convention: a test item's domain is its index in TARGET_DOMAINS
    for index, dname in enumerate(target):
        got = [it for it in ds.test if it.domain == index]
        assert _rel(got, fake["dir"]) == sorted(exp[dname]["test"]), dname
    assert ds.all_classnames == fake["classnames"]
    assert ds.classnames == fake["classnames"]
    for it in ds.test:
        assert it.classname == fake["classnames"][it.label]


def test_unknown_domain_names_the_key_and_the_valid_domains(tmp_path):
    DOMAIN_FAKES["PACS"](str(tmp_path))
    with pytest.raises(ValueError, match=r"TARGET_DOMAINS.*art_painting"):
        build_dataset(_cfg(tmp_path, "PACS", ["photo"], ["painting"]))


def test_missing_image_and_bad_list_line_name_the_file(tmp_path):
    fake = DOMAIN_FAKES["PACS"](str(tmp_path))
    os.remove(os.path.join(fake["dir"], "images", "photo", "dog", "train_0.jpg"))
    with pytest.raises(DatasetLayoutError, match=r"photo/dog/train_0.jpg"):
        build_dataset(_cfg(tmp_path, "PACS", ["photo"], ["sketch"]))
    fake = DOMAIN_FAKES["ImageCLEFDA"](str(tmp_path / "b"))
    with open(os.path.join(fake["dir"], "list", "pList.txt"), "a") as f:
        f.write("p/broken.jpg notalabel\n")
    with pytest.raises(DatasetLayoutError, match=r"pList.txt, line 25"):
        build_dataset(_cfg(tmp_path / "b", "ImageCLEFDA", ["i"], ["p"]))
    with pytest.raises(DatasetLayoutError, match=r"VLCS"):
        build_dataset(_cfg(tmp_path / "none", "VLCS", ["sun"], ["sun"]))


def test_toy_shapes_dg_four_domains_seeded_and_generated_once(tmp_path):
    from datasets.toy_render_dg import DG_DOMAINS, render_domain
    from datasets.toy_shapes_dg import generate_toy_shapes_dg

    labels = np.arange(36)
    for domain in DG_DOMAINS:
        a = render_domain(labels, np.random.default_rng(3), domain)
        b = render_domain(labels, np.random.default_rng(3), domain)
        assert a.shape == (36, 32, 32, 3) and a.dtype == np.uint8
        np.testing.assert_array_equal(a, b)
    # The styles: sketch is mostly paper (bright, no fill); cartoon has no noise (few colours).
    sketch = render_domain(labels, np.random.default_rng(0), "sketch").astype(float)
    photo = render_domain(labels, np.random.default_rng(0), "photo").astype(float)
    assert (sketch.min(axis=-1) > 200).mean() > 0.7 > (photo.min(axis=-1) > 200).mean()
    cartoon = render_domain([5], np.random.default_rng(0), "cartoon")[0]
    noisy = render_domain([5], np.random.default_rng(0), "photo")[0]
    n_colours = lambda im: len(np.unique(im.reshape(-1, 3), axis=0))  # noqa: E731
    assert n_colours(cartoon) < n_colours(noisy) / 3

    d = generate_toy_shapes_dg(str(tmp_path), n_train=1, n_val=1, n_test=2)
    stamp = os.path.getmtime(os.path.join(d, "generation.json"))
    assert generate_toy_shapes_dg(str(tmp_path), n_train=1, n_val=1, n_test=2) == d
    assert os.path.getmtime(os.path.join(d, "generation.json")) == stamp
    ds = build_dataset(_cfg(tmp_path, "ToyShapesDG", ["photo"], list(DG_DOMAINS)))
    assert len(ds.all_classnames) == 36 and len(ds.train_x) == 36
    assert len(ds.test) == 4 * 72
    assert sorted({it.domain for it in ds.test}) == [0, 1, 2, 3]
