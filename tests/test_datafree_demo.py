"""End to end: the data-free demo's fast variant through the real entry points."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STRATEGIES = ["none", "mix", "random", "contrastive"]
DOMAINS = ["photo", "smooth", "sketch", "cartoon"]


def _demo(tmp_path) -> subprocess.CompletedProcess:
    cmd = [sys.executable, os.path.join(ROOT, "tools", "datafree_demo.py"), "--fast", "-q"]
    cmd += ["--data", str(tmp_path / "data"), "--output", str(tmp_path / "out")]
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2")}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=env, cwd=ROOT)


@pytest.mark.slow
def test_datafree_demo_fast_variant(tmp_path):
    proc = _demo(tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    root = tmp_path / "out" / "datafree"
    summary = json.loads((root / "summary.json").read_text())
    assert list(summary) == ["teacher_zeroshot", "student_zeroshot", *STRATEGIES]
    for method, row in summary.items():
        assert list(row["domains"]) == DOMAINS
        assert row["accuracy"] == pytest.approx(sum(row["domains"].values()) / 4, abs=0.02)
        assert ("diversity" in row) == (method in STRATEGIES)
        if method in STRATEGIES:
            assert 0 < row["diversity"] < 2  # a cosine distance between distinct images
    # every student trained on its synthesized folder, never on ToyShapesDG images
    for s in STRATEGIES:
        log = (root / s / "ToyShapesDG" / "seed1" / "log.txt").read_text()
        assert "Distilling on 72 unlabelled training images" in log
        assert (root / "synth" / s / "s1" / "split_datafree.json").is_file()
    assert (root / "grids" / "mix.png").is_file()
    # the table: one row per method, gap to the teacher, the best strategy named
    lines = proc.stdout.splitlines()
    assert [ln.split()[0] for ln in lines[3 : 3 + 6]] == [
        "teacher_zeroshot",
        "student_zeroshot",
        *STRATEGIES,
    ]
    assert "Diversity" in lines[1] and lines[-1].startswith("best strategy: ")

    again = _demo(tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stderr.count("finished earlier, reusing") == 2 + 1 + 2 * 4
    assert again.stdout == proc.stdout
