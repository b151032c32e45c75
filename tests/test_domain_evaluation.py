"""Per-domain evaluation: results.json holds one accuracy per target domain and their mean."""

from __future__ import annotations

import json
import os

import pytest

import train
from datasets.toy_shapes_dg import generate_toy_shapes_dg

DOMAINS = ["photo", "smooth", "sketch", "cartoon"]


@pytest.fixture(scope="module")
def dg_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("dg")
    generate_toy_shapes_dg(str(root), n_train=1, n_val=1, n_test=3)
    return root


def _zeroshot(root, out, targets):
    argv = ["--root", str(root), "--output-dir", str(out), "--trainer", "ZeroshotCLIP"]
    argv += ["--config-file", "configs/trainers/ZeroshotCLIP/toy.yaml", "--eval-only"]
    argv += ["--dataset-config-file", "configs/datasets/toy_shapes_dg.yaml"]
    argv += ["MODEL.BACKBONE.NAME", "toy-student", "DATASET.TARGET_DOMAINS", str(targets)]
    assert train.main(argv) == 0
    with open(os.path.join(out, "results.json")) as f:
        return json.load(f), open(os.path.join(out, "log.txt")).read()


def test_per_domain_totals_and_mean(dg_root, tmp_path):
    res, log = _zeroshot(dg_root, tmp_path / "all", DOMAINS)
    assert sorted(res["domains"]) == sorted(DOMAINS) and res["target_domains"] == DOMAINS
    mean = sum(res["domains"].values()) / 4
    assert res["accuracy"] == pytest.approx(mean, abs=1e-3)
    # every domain is evaluated on exactly its own 36 x 3 test images
    for d in DOMAINS:
        assert f"Evaluate on the *test* set: {d} domain (36 classes, 108 images)" in log
    assert log.count("* total: 108") == 4
    # one domain alone scores the same as inside the four-domain run
    alone, _ = _zeroshot(dg_root, tmp_path / "sketch", ["sketch"])
    assert alone["domains"] == {"sketch": res["domains"]["sketch"]}
    assert alone["accuracy"] == pytest.approx(res["domains"]["sketch"], abs=1e-3)
