"""tools/bench_distill.py: the modes compute the same loss; the JSON report has its format."""

from __future__ import annotations

import json

import pytest
import torch

from dassl.engine.precision import Precision
from tools import bench_distill as bd


def test_modes_a_and_b_give_the_same_teacher_logits(tmp_path):
    """Mode A (text encoder every step) and B (pre-stored vectors) are the same loss."""
    cpu = torch.device("cpu")
    bench = bd.Bench(
        bd.SHAPES["small"], 30, 4, cpu, Precision.from_name("fp32", cpu), str(tmp_path)
    )
    a, b = bench.teacher_logits("A"), bench.teacher_logits("B")
    assert a.shape == (4, 30)
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-4)
    c = bench.teacher_logits("C")
    assert c.shape == (4, 30) and torch.isfinite(c).all()
    before = bench.student.image_encoder.VPT.detach().clone()
    for mode in bd.MODES:
        assert torch.isfinite(torch.tensor(bench.step(mode)))
    assert not torch.equal(before, bench.student.image_encoder.VPT)
    assert bench.mode_weights("A") > bench.mode_weights("B") > bench.mode_weights("C")


def test_json_report_format(tmp_path):
    out = tmp_path / "bench.json"
    argv = ["--shapes", "small", "--classes", "10", "20", "--steps", "1", "--threads", "1"]
    report = bd.main([*argv, "--no-extras", "--json", str(out)])
    data = json.loads(out.read_text())
    assert data["device"] == "cpu" and data["shapes"] == "small"
    assert set(data["results"]) == {"C10", "C20"}
    for row in data["results"].values():
        for mode in ("A", "B", "C", "floor"):
            assert row[mode] > 0
        assert set(row["peak_mb"]) == {"A", "B", "C", "floor"}
        assert abs(row["B/A"] - row["B"] / row["A"]) < 1e-9
    assert data["machine"]["torch"] == torch.__version__
    assert report["results"].keys() == data["results"].keys()


def test_pipeline_rate_is_measured(tmp_path):
    rate = bd.pipeline_rate(str(tmp_path), 32, 8, (64, 48))
    assert rate > 0


def test_teacher_memory_report_fits_and_extrapolates(monkeypatch):
    fake = {"plain": {8: 100.0, 16: 180.0}, "ckpt": {8: 60.0, 16: 80.0}}
    monkeypatch.setattr(bd, "teacher_step_memory", lambda *a, **k: fake)
    args = bd.parse_args(["--memory-classes", "8", "16", "--extrapolate-classes", "500"])
    rep = bd.teacher_memory_report(args, bd.SHAPES["small"], torch.device("cpu"))
    assert rep["mb_per_class"]["plain"] == pytest.approx(10.0)
    assert rep["extrapolated"]["peak_mb"]["plain"] == pytest.approx(100.0 + 492 * 10.0)
    assert rep["extrapolated"]["peak_mb"]["ckpt"] == pytest.approx(60.0 + 492 * 2.5)
