"""Per-domain tables (parse_test_res --domains) and bar chart (plot_results domains)."""

from __future__ import annotations

import json

import pytest

from tools import parse_test_res, plot_results


def _write(root, method, seed, domains):
    d = root / method / "ToyShapesDG" / f"seed{seed}"
    d.mkdir(parents=True)
    res = {
        "accuracy": sum(domains.values()) / len(domains),
        "domains": domains,
        "target_domains": list(domains),
        "dataset": "ToyShapesDG",
        "trainer": "PromptKDStudent",
        "seed": seed,
    }
    (d / "results.json").write_text(json.dumps(res, sort_keys=True))


def test_domain_table_mean_std_over_seeds_and_plot(tmp_path, capsys):
    _write(tmp_path, "mix", 1, {"photo": 50.0, "sketch": 30.0})
    _write(tmp_path, "mix", 2, {"photo": 60.0, "sketch": 20.0})
    _write(tmp_path, "none", 1, {"photo": 40.0, "sketch": 10.0})
    assert parse_test_res.main([str(tmp_path), "--domains", "--methods", "none", "mix"]) == 0
    out = capsys.readouterr().out.splitlines()
    header = out[1].split()
    assert header[:4] == ["Method", "photo", "sketch", "Mean"]  # config order, not sorted
    rows = {line.split()[0]: line for line in out[3:] if line.strip()}
    assert list(rows) == ["none", "mix"]
    # photo: mean(50, 60) = 55, population std 5; sketch 25 ± 5; per-seed means 40 and 40
    assert "55.00 ± 5.00" in rows["mix"] and "25.00 ± 5.00" in rows["mix"]
    assert "40.00 ± 0.00" in rows["mix"] and rows["mix"].rstrip().endswith("1,2")
    assert "25.00 ± 0.00" in rows["none"]
    png = tmp_path / "bars.png"
    assert plot_results.main(["domains", str(tmp_path), "-o", str(png)]) == 0
    assert png.stat().st_size > 1000
    assert plot_results.main(["domains", str(tmp_path), "--methods", "nope"]) == 1


def test_domain_table_without_domain_runs_fails(tmp_path):
    d = tmp_path / "coop" / "ToyShapes" / "seed1"
    d.mkdir(parents=True)
    (d / "results.json").write_text(json.dumps({"accuracy": 50.0, "dataset": "ToyShapes"}))
    assert parse_test_res.main([str(tmp_path), "--domains"]) == 1
    with pytest.raises(ValueError, match="per-domain"):
        plot_results.plot_domains(tmp_path, tmp_path / "x.png")
