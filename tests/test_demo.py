"""End-to-end test of the whole method: the demo's fast variant through the real entry points."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _demo(tmp_path, *extra: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, os.path.join(ROOT, "tools", "demo.py"), "--fast", "-q"]
    cmd += ["--data", str(tmp_path / "data"), "--output", str(tmp_path / "out"), *extra]
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2")}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=env, cwd=ROOT)


@pytest.mark.slow
def test_demo_fast_variant_distils_a_better_student(tmp_path):
    proc = _demo(tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    demo = tmp_path / "out" / "demo"
    summary = json.loads((demo / "summary.json").read_text())
    assert list(summary) == ["student_zeroshot", "teacher_zeroshot", "teacher", "student"]
    for row in summary.values():
        hm = 2 * row["base"] * row["new"] / (row["base"] + row["new"])
        assert row["hm"] == pytest.approx(hm, abs=0.01)
    # The method works: the distilled student beats its zero-shot self, and the teacher is
    # stronger than the student at zero-shot.
    assert summary["student"]["hm"] > summary["student_zeroshot"]["hm"]
    assert summary["teacher_zeroshot"]["hm"] > summary["student_zeroshot"]["hm"]
    # The table is printed through tools/parse_test_res.py, one row per stage in order.
    rows = [line.split()[0] for line in proc.stdout.strip().splitlines()[2:]]
    assert rows == ["student_zeroshot", "teacher_zeroshot", "teacher", "student"]
    # Real runs: the teacher wrote its checkpoint and class vectors; the student trained.
    teacher = demo / "teacher" / "ToyShapes" / "seed1"
    assert (teacher / "class_vectors.safetensors").is_file()
    assert (teacher / "VLPromptLearner" / "checkpoint").is_file()
    student_log = (demo / "student" / "ToyShapes" / "seed1" / "log.txt").read_text()
    assert "Finish training" in student_log and "* accuracy:" in student_log

    # Re-running reuses every finished stage and prints the same table.
    again = _demo(tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stderr.count("finished earlier, reusing") == 4
    assert again.stdout == proc.stdout
