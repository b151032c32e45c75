"""Synthesis: determinism, kill-resume, rank sharding, output format, bad inputs, measures."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import torch

from dassl.config import merge_cfg_file, merge_cfg_list
from datafree import surrogate_set
from datafree.config import get_datafree_cfg
from datafree.generators import FourierGenerator
from datafree.measures import measure_set, within_class_diversity
from datafree.synthesis import plan_batches, plan_items, range_penalty, shard, total_variation
from tools import synthesize

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOY = os.path.join(ROOT, "configs", "datasets", "toy_shapes.yaml")
# 36 classes x 2 images in 3 batches of 24; 2 steps of 2 cutouts keep a run near 2 seconds
TINY = [
    "DATAFREE.N_PER_CLASS", "2",
    "DATAFREE.BATCH_SIZE", "24",
    "DATAFREE.OPTIM.STEPS", "2",
    "DATAFREE.AUG.CUTOUTS", "2",
]  # fmt: skip


def tiny_cfg(strategy: str = "random", extra: tuple[str, ...] = ()):
    cfg = get_datafree_cfg()
    merge_cfg_file(cfg, TOY)
    merge_cfg_list(cfg, [*TINY, "DATAFREE.STRATEGY", strategy, *extra])
    return cfg


def read_set(folder: str) -> tuple[dict, dict[str, bytes]]:
    meta = json.load(open(os.path.join(folder, surrogate_set.METADATA_FILE)))
    files = {}
    for rec in meta["images"]:
        with open(os.path.join(folder, rec["path"]), "rb") as f:
            files[rec["path"]] = f.read()
    return meta, files


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("ref") / "random")
    surrogate_set.synthesize_set(tiny_cfg(), out, progress=False)
    return out


def test_plan_and_shards():
    items = plan_items(3, 2)
    assert [(i.index, i.label, i.n) for i in items[:4]] == [
        (0, 0, 0),
        (1, 1, 0),
        (2, 2, 0),
        (3, 0, 1),
    ]
    batches = plan_batches(items, 4)
    assert [len(b) for b in batches] == [4, 2]
    parts = [shard(5, r, 2) for r in range(2)]
    assert parts == [[0, 2, 4], [1, 3]]
    with pytest.raises(ValueError):
        shard(5, 2, 2)


def test_fourier_generator_is_seeded_per_image():
    g = FourierGenerator(16)
    a = g.render(g.init_params([1, 2, 3]))
    b = g.render(g.init_params([2]))
    torch.testing.assert_close(a[1:2], b)
    assert a.shape == (3, 3, 16, 16) and a.min() > 0 and a.max() < 1
    assert not torch.allclose(a[0], a[2])


def test_penalties_by_hand():
    x = torch.tensor([[[[0.0, 1.0], [1.5, -0.5]]]])
    # squared neighbour differences: rows (1.5, 2.25) mean 1.625... computed explicitly
    dh = ((1.5 - 0.0) ** 2 + (-0.5 - 1.0) ** 2) / 2
    dw = ((1.0 - 0.0) ** 2 + (-0.5 - 1.5) ** 2) / 2
    assert float(total_variation(x)) == pytest.approx(dh + dw)
    assert float(range_penalty(x)) == pytest.approx((0.25 + 0.25) / 4)


def test_output_format_and_measures(reference):
    meta, files = read_set(reference)
    assert meta["strategy"] == "random" and len(meta["classnames"]) == 36
    assert len(files) == 72 and all(p.startswith("images/") for p in files)
    rec = meta["images"][0]
    assert set(rec) >= {"class", "strategy", "style", "seed", "steps", "loss", "teacher_prob"}
    assert rec["style"]["style_seed"] > 0 and rec["steps"] == 2
    from datasets.coop_base import read_split

    train, val, test = read_split(
        os.path.join(reference, surrogate_set.SPLIT_FILE), os.path.join(reference, "images")
    )
    assert len(train) == 72 and not val and not test
    assert train[5].classname == meta["classnames"][train[5].label]
    from datafree.teacher import load_teacher

    m = measure_set(reference, load_teacher("toy-teacher", meta["classnames"]))
    assert m["images"] == 72 and 0 < m["diversity"] < 2 and 0 <= m["accuracy"] <= 1
    # the measured probability is that of the saved PNG, as recorded
    recorded = sum(r["teacher_prob"] for r in meta["images"]) / 72
    assert m["mean_prob"] == pytest.approx(recorded, abs=1e-4)


def test_diversity_by_hand():
    f = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.6, 0.8], [0.0, 1.0]])
    labels = torch.tensor([0, 0, 1, 1, 2])  # class 2 has one image: ignored
    assert within_class_diversity(f, labels) == pytest.approx(((1 - 0) + (1 - 0.6)) / 2)


def test_deterministic_under_seed(reference, tmp_path):
    """A second run makes the same bytes (the resume and torchrun tests compare against it too)."""
    out = str(tmp_path / "again")
    surrogate_set.synthesize_set(tiny_cfg(), out, progress=False)
    assert read_set(out) == read_set(reference)


def test_killed_run_resumes_to_the_same_set(reference, tmp_path, monkeypatch):
    out = str(tmp_path / "killed")
    real_write = surrogate_set.write_json_atomic

    def dies_on_second_batch(path, obj):  # the PNGs of batch 1 are on disk, its record is not
        if path.endswith("00001.json"):
            raise KeyboardInterrupt
        real_write(path, obj)

    monkeypatch.setattr(surrogate_set, "write_json_atomic", dies_on_second_batch)
    with pytest.raises(KeyboardInterrupt):
        surrogate_set.synthesize_set(tiny_cfg(), out, progress=False)
    monkeypatch.setattr(surrogate_set, "write_json_atomic", real_write)
    assert not surrogate_set.is_complete(out)
    first = os.path.join(out, ".batches", "00000.json")
    stamp = os.stat(first).st_mtime_ns
    summary = surrogate_set.synthesize_set(tiny_cfg(), out, progress=False)
    assert summary["images"] == 48 and summary["complete"]  # batch 0 was kept
    assert os.stat(first).st_mtime_ns == stamp
    assert read_set(out) == read_set(reference)


def test_torchrun_ranks_share_the_work(reference, tmp_path):
    """Two gloo processes (batches 0, 2 and batch 1) make the same set as one process."""
    out = tmp_path / "sharded"
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        os.path.join(ROOT, "tools", "synthesize.py"), "--dataset-config-file", TOY,
        "--output-dir", str(out), "--strategy", "random", "--no-progress", "--no-cuda", *TINY,
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "on 2 process(es); 48 images to do here" in proc.stdout
    assert read_set(str(out)) == read_set(reference)


def test_other_settings_in_the_same_folder_fail(reference):
    with pytest.raises(ValueError, match="other settings"):
        surrogate_set.synthesize_set(tiny_cfg("mix"), reference, progress=False)


def test_tool_end_to_end_with_grid(tmp_path):
    out, grid = tmp_path / "none", tmp_path / "grid.png"
    argv = ["--dataset-config-file", TOY, "--output-dir", str(out), "--strategy", "none"]
    rc = synthesize.main(
        [*argv, "--teacher", "toy-teacher", "--grid", str(grid), "--no-progress", *TINY]
    )
    assert rc == 0 and surrogate_set.is_complete(str(out))
    from PIL import Image

    with Image.open(grid) as im:
        assert im.size[1] > 36 * 32


@pytest.mark.parametrize(
    "flags, opts, message",
    [
        (["--strategy", "mixx"], [], "Unknown DATAFREE.STRATEGY 'mixx'"),
        (["--generator", "gan"], [], "Unknown DATAFREE.GENERATOR.NAME 'gan'"),
        (["--generator", "vqgan"], [], "DATAFREE.GENERATOR.VQGAN.CONFIG not found"),
        (["--teacher", "/nonexistent/t.pt"], [], "Model /nonexistent/t.pt not found"),
        (["--teacher-run", "/nonexistent/run"], [], "DATAFREE.TEACHER_RUN not found"),
        ([], ["DATAFREE.LOSS.MATCH", "l2"], "DATAFREE.LOSS.MATCH must be"),
        (
            [],
            ["DATAFREE.CLASSNAMES_FILE", "{pets}"],
            "list of .*pets.txt is not that of .*ToyShapes",
        ),
        ([], ["DATAFREE.CLASS_VECTORS", "{cv}"], "cv.safetensors is not that of dataset ToyShapes"),
    ],
)
def test_bad_inputs_fail_clearly(tmp_path, capsys, flags, opts, message):
    from trainers.class_vectors import save_class_vectors

    pets = tmp_path / "pets.txt"
    pets.write_text("abyssinian\nbeagle\n")
    cv = str(tmp_path / "cv.safetensors")
    names = ["abyssinian", "beagle"]
    save_class_vectors(
        cv, torch.randn(2, 128), names, base_classes=range(1), new_classes=range(1, 2)
    )
    opts = [o.format(pets=pets, cv=cv) for o in opts]
    out = tmp_path / "out"
    argv = ["--dataset-config-file", TOY, "--output-dir", str(out), "--no-progress", *flags]
    rc = synthesize.main([*argv, *TINY, *opts])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2
    assert len(err) == 1 and err[0].startswith("synthesize: error:")
    assert re.search(message, err[0]), err[0]
    assert not out.exists()


def test_class_list_of_a_dataset_without_split_file(tmp_path, capsys):
    dtd = os.path.join(ROOT, "configs", "datasets", "dtd.yaml")
    rc = synthesize.main(
        ["--dataset-config-file", dtd, "--root", str(tmp_path), "--output-dir", str(tmp_path / "o")]
    )
    assert rc == 2
    assert "cannot read the class names of DescribableTextures" in capsys.readouterr().err


def test_paired_comparison_by_hand():
    from tools.datafree_measures import paired_vs, render_table

    rows = [
        {"strategy": "none", "per_class_diversity": [0.1, 0.2, 0.3]},
        {"strategy": "mix", "per_class_diversity": [0.2, 0.2, 0.6]},
    ]
    mean, sem, higher = paired_vs(rows)["mix"]
    assert mean == pytest.approx(0.4 / 3) and higher == 2
    assert sem == pytest.approx(float(np.std([0.1, 0.0, 0.3], ddof=1) / np.sqrt(3)))
    for r in rows:
        r.update(images=3, accuracy=1.0, mean_prob=0.9, diversity=0.2, diversity_sem=0.05)
        r.update(seconds=6.0, cpu_seconds=3.0)
    assert "| mix | 3 | 100.0 | 0.900 | 0.2000 ± 0.0500 | +0.1333 ±" in render_table(rows)
