"""Trainer files written in the upstream code bases' style (tests/upstream_trainers/) run
unchanged with their upstream config files: train, evaluate, and evaluate on new classes."""

import importlib.util
import json
import os

import pytest

import train
from dassl.engine import TRAINER_REGISTRY

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FILES = ("cocoop.py", "maple_repo.py", "promptsrc.py")
CONFIGS = {
    "CoCoOp": ("CoCoOp/vit_b16_c4_ep10_batch1_ctxv1.yaml", "COCOOP"),
    "MaPLe": ("MaPLe/vit_b16_c2_ep5_batch4_2ctx.yaml", "MAPLE"),
    "IVLP": ("IVLP/vit_b16_c2_ep5_batch4_2+2ctx.yaml", "IVLP"),
    "VPT": ("VPT/vit_b16_c2_ep5_batch4_4.yaml", "VPT"),
    "PromptSRC": ("PromptSRC/vit_b16_c2_ep20_batch4_4+4ctx.yaml", "PROMPTSRC"),
}


@pytest.fixture(scope="module")
def upstream(tmp_path_factory, toy_world):
    """The upstream files registered under their upstream names, taking them from our built-in
    trainers as a dropped-in file does (the registry is restored afterwards)."""
    base = tmp_path_factory.mktemp("upstream_files")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(TRAINER_REGISTRY, "_obj_map", dict(TRAINER_REGISTRY._obj_map))
        mp.setattr(TRAINER_REGISTRY, "_builtin", set(TRAINER_REGISTRY._builtin))
        for file in FILES:
            path = os.path.join(ROOT, "tests", "upstream_trainers", file)
            spec = importlib.util.spec_from_file_location(f"upstream_{file[:-3]}", path)
            spec.loader.exec_module(importlib.util.module_from_spec(spec))
        assert all(TRAINER_REGISTRY.get(n).__module__.startswith("upstream_") for n in CONFIGS)
        yield base, toy_world


def _argv(toy, name, out, *flags):
    yaml, node = CONFIGS[name]
    return [
        *toy.flags,
        "--trainer",
        name,
        "--config-file",
        os.path.join(ROOT, "configs/trainers", yaml),
        "--output-dir",
        out,
        *flags,
        *toy.opts,
        "MODEL.BACKBONE.NAME",
        "toy-teacher",
        "DATASET.NUM_SHOTS",
        "1",
        f"TRAINER.{node}.PREC",
        "fp32",
    ]


@pytest.mark.parametrize("name", list(CONFIGS))
def test_upstream_trainer_file_runs_unchanged(upstream, name):
    base, toy = upstream
    out = str(base / name)
    assert train.main([*_argv(toy, name, out), "DATASET.SUBSAMPLE_CLASSES", "base"]) == 0
    res = json.load(open(os.path.join(out, "results.json")))
    assert res["trainer"] == name and res["epoch"] == 1 and 0 <= res["accuracy"] <= 100
    log = open(os.path.join(out, "log.txt")).read()
    assert "epoch [1/1]" in log and "Evaluate on the *test* set" in log
    if name == "VPT":  # fixed text features of the built classes: no new-class evaluation
        return
    ev = str(base / f"{name}_new")
    flags = ("--eval-only", "--model-dir", out, "--load-epoch", "1")
    assert train.main([*_argv(toy, name, ev, *flags), "DATASET.SUBSAMPLE_CLASSES", "new"]) == 0
    assert "accuracy" in json.load(open(os.path.join(ev, "results.json")))
