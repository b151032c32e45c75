"""tools/parse_test_res.py: statistics, the average-row convention, logs, formats, gaps."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from tools import paper_numbers, parse_test_res


def write_result(run: Path, **values) -> None:
    run.mkdir(parents=True, exist_ok=True)
    (run / "results.json").write_text(json.dumps(values))


def run_main(capsys, *argv: str) -> tuple[int, str, str]:
    rc = parse_test_res.main([str(a) for a in argv])
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


def test_log_parsing_follows_coop_rules():
    log = "\n".join(
        [
            "* accuracy: 11.0%",  # before the end signal: ignored
            "=> result",
            "* accuracy: 22.0%",  # per-epoch val block, before Finish training
            "  Finish training  ",  # lines are stripped
            "=> result",
            "* accuracy: 33.5%",
            "* error: 66.5%",
            "=> result",
            "* accuracy: 44.25%",  # last match wins
        ]
    )
    assert parse_test_res.parse_log_text(log) == 44.25
    assert parse_test_res.parse_log_text(log, "error") == 66.5
    assert parse_test_res.parse_log_text(log, end_signal="=> result") == 44.25
    assert parse_test_res.parse_log_text("=> result\n* accuracy: 5.0%\n") is None  # no Finish


def test_paper_table1_as_one_seed_reproduces_the_average_row(tmp_path, capsys):
    for dataset, (base, new, _) in paper_numbers.TABLE1["PromptKD"].items():
        if dataset != "Average":
            write_result(tmp_path / "b2n" / dataset / "cfg" / "seed1", base=base, new=new)
    rc, out, _ = run_main(capsys, tmp_path, "--format", "json")
    assert rc == 0
    rows = json.loads(out)
    avg = rows[-1]
    assert avg["dataset"] == "Average"
    assert (round(avg["base"], 2), round(avg["new"], 2), round(avg["hm"], 2)) == (
        86.96,
        80.73,
        83.73,
    )
    # The mean of the per-dataset HMs (recomputed from Base/New) would be 83.60: the
    # convention matters.
    per_dataset_hms = [r["hm"] for r in rows[:-1]]
    assert round(sum(per_dataset_hms) / len(per_dataset_hms), 2) == 83.60
    assert len(rows) == 12 and avg["average_over"] == list(paper_numbers.DATASETS_B2N)


def test_three_seeds_by_hand(tmp_path, capsys):
    # Dataset A: base 80, 82, 84 (mean 82, pop. std sqrt(8/3)); new 70, 70, 76 (mean 72).
    # Dataset B: base 60, 60, 60; new 40, 50, 60 (mean 50, pop. std sqrt(200/3)).
    values = {"A": [(80, 70), (82, 70), (84, 76)], "B": [(60, 40), (60, 50), (60, 60)]}
    for dataset, pairs in values.items():
        for seed, (base, new) in enumerate(pairs, start=1):
            write_result(tmp_path / dataset / f"seed{seed}", base=base, new=new)
    rc, out, _ = run_main(capsys, tmp_path, "--format", "json")
    assert rc == 0
    rows = {r["dataset"]: r for r in json.loads(out)}

    def hm(a, b):
        return 2 * a * b / (a + b)

    a = rows["A"]
    assert a["base"] == pytest.approx(82.0) and a["new"] == pytest.approx(72.0)
    assert a["base_std"] == pytest.approx((8 / 3) ** 0.5, abs=1e-4)
    assert a["new_std"] == pytest.approx(8**0.5, abs=1e-4)  # deviations 2, 2, 4 -> 24/3
    assert a["hm"] == pytest.approx(hm(82, 72), abs=1e-4)  # HM of the means
    hms = [hm(80, 70), hm(82, 70), hm(84, 76)]
    mean = sum(hms) / 3
    assert a["hm_std"] == pytest.approx((sum((h - mean) ** 2 for h in hms) / 3) ** 0.5, abs=1e-4)
    b = rows["B"]
    assert b["new_std"] == pytest.approx((200 / 3) ** 0.5, abs=1e-4)
    avg = rows["Average"]
    assert avg["base"] == pytest.approx(71.0) and avg["new"] == pytest.approx(61.0)
    assert avg["hm"] == pytest.approx(hm(71, 61), abs=1e-4)
    # Per-seed averages: base 70, 71, 72 -> std sqrt(2/3); new 55, 60, 68.
    assert avg["base_std"] == pytest.approx((2 / 3) ** 0.5, abs=1e-4)
    assert avg["seeds"] == [1, 2, 3]


def test_missing_and_partial_runs_are_reported_not_averaged(tmp_path, capsys, caplog):
    for seed in (1, 2, 3):
        write_result(tmp_path / "EuroSAT" / f"seed{seed}", base=90.0, new=80.0)
    write_result(tmp_path / "DescribableTextures" / "seed1", base=50.0, new=40.0)
    (tmp_path / "DescribableTextures" / "seed2").mkdir()  # killed run: nothing inside
    rc, out, _ = run_main(capsys, tmp_path)
    assert rc == 0
    assert "DescribableTextures: missing seed(s) 2, 3" in out
    assert "seed2 (no result)" in out
    assert "excluded (incomplete): DescribableTextures" in out
    assert "Average (1 of 2 datasets)" in out
    rc, out, _ = run_main(capsys, tmp_path, "--format", "json")
    avg = json.loads(out)[-1]
    assert avg["base"] == 90.0 and avg["excluded"] == ["DescribableTextures"]
    assert "missing seed(s) 2, 3" in caplog.text  # notes go to the log for machine formats
    rc, _, _ = run_main(capsys, tmp_path, "--strict")
    assert rc == 1


def test_coop_base2new_layout_pairs_train_base_and_test_new(tmp_path, capsys):
    root = tmp_path / "output" / "base2new"
    for seed, (base, new) in enumerate([(80.0, 60.0), (82.0, 62.0)], start=1):
        train = (
            root / "train_base" / "oxford_pets" / "shots_16" / "CoOp" / "vit_b16" / f"seed{seed}"
        )
        test = root / "test_new" / "oxford_pets" / "shots_16" / "CoOp" / "vit_b16" / f"seed{seed}"
        train.mkdir(parents=True)
        test.mkdir(parents=True)
        (train / "log.txt").write_text(
            f"=> result\n* accuracy: 10.0%\nFinish training\n=> result\n* accuracy: {base}%\n"
        )
        (test / "log.txt").write_text(
            f"Evaluate on the *test* set\n=> result\n* accuracy: {new}%\n"
        )
    # A PromptKD run with results.json beside it.
    write_result(
        tmp_path / "output" / "base2novel" / "OxfordPets" / "kd" / "seed1", base=96.0, new=98.0
    )
    write_result(
        tmp_path / "output" / "base2novel" / "OxfordPets" / "kd" / "seed2", base=96.0, new=98.0
    )
    rc, out, _ = run_main(capsys, tmp_path / "output", "--format", "json")
    assert rc == 0
    rows = json.loads(out)
    coop = [r for r in rows if r["method"] == "base2new/shots_16/CoOp/vit_b16"]
    assert coop[0]["dataset"] == "OxfordPets"
    assert coop[0]["base"] == pytest.approx(81.0) and coop[0]["new"] == pytest.approx(61.0)
    kd = [r for r in rows if r["method"] == "base2novel/kd"]
    assert kd[-1]["dataset"] == "Average" and kd[-1]["hm"] == pytest.approx(
        2 * 96 * 98 / 194, abs=1e-4
    )
    rc, out, _ = run_main(capsys, tmp_path / "output", "--paper")
    assert "side by side" in out
    assert "93.67 / 95.29 / 94.47" in out  # CoOp's own paper row, chosen from the path
    assert "96.30 / 98.01 / 97.15" in out  # PromptKD's


def test_test_log_flag_and_keyword(tmp_path, capsys):
    run = tmp_path / "eurosat" / "seed1"
    run.mkdir(parents=True)
    (run / "log.txt").write_text(
        "Finish training\n=> result\n* accuracy: 70.0%\n* macro_f1: 65.5%\n"
    )
    rc, out, _ = run_main(capsys, tmp_path, "--format", "json", "--keyword", "macro_f1")
    assert json.loads(out)[0]["accuracy"] == 65.5
    eval_only = tmp_path / "eurosat" / "seed2"
    eval_only.mkdir()
    (eval_only / "log.txt").write_text("=> result\n* accuracy: 72.0%\n")
    rc, out, _ = run_main(capsys, tmp_path, "--format", "json", "--test-log")
    rows = json.loads(out)
    assert rows[0]["dataset"] == "EuroSAT" and rows[0]["accuracy"] == pytest.approx(71.0)


def test_all_formats(tmp_path, capsys):
    for seed, acc in ((1, 50.0), (2, 60.0)):
        write_result(
            tmp_path / "xd" / "Caltech101" / "xcfg" / f"seed{seed}",
            accuracy=acc,
            dataset="Caltech101",
        )
        write_result(
            tmp_path / "xd" / "EuroSAT" / "xcfg" / f"seed{seed}",
            accuracy=acc + 10,
            dataset="EuroSAT",
        )
    outputs = {}
    for fmt in ("text", "markdown", "csv", "json"):
        rc, out, _ = run_main(capsys, tmp_path, "--format", fmt, "--paper")
        assert rc == 0
        outputs[fmt] = out
    assert "Caltech101" in outputs["text"] and "55.00 ± 5.00" in outputs["text"]
    assert "60.00 ± 5.00" in outputs["text"]  # the average row (accuracy: mean of means)
    assert "| Caltech101" in outputs["markdown"] and "|---" in outputs["markdown"].replace(":", "-")
    records = list(csv.DictReader(io.StringIO(outputs["csv"])))
    assert [r["dataset"] for r in records] == ["Caltech101", "EuroSAT", "Average"]
    assert float(records[-1]["accuracy"]) == 60.0 and records[0]["seeds"] == "1 2"
    assert float(records[0]["paper_accuracy"]) == 93.61
    rows = json.loads(outputs["json"])
    assert rows[-1]["dataset"] == "Average"
    # Paper average over the same datasets: (93.61 + 63.74) / 2.
    assert rows[-1]["paper_accuracy"] == pytest.approx((93.61 + 63.74) / 2, abs=1e-4)


def test_errors(tmp_path, capsys, caplog):
    rc, _, _ = run_main(capsys, tmp_path / "nope")
    assert rc == 1 and "not a directory" in caplog.text
    rc, _, _ = run_main(capsys, tmp_path)
    assert rc == 1 and "no seed*/ run directories" in caplog.text
    write_result(tmp_path / "EuroSAT" / "seed1", base=1.0, new=2.0)
    rc, _, _ = run_main(capsys, tmp_path, "--paper", "--paper-method", "NoSuchMethod")
    assert rc == 1 and "choose from" in caplog.text


def test_compact_view_orders_methods_and_rejects_unknown_ones(tmp_path, capsys):
    for method, (base, new) in {"zs": (30.0, 40.0), "kd": (50.0, 60.0)}.items():
        for seed, delta in ((1, 0.0), (2, 2.0)):
            write_result(
                tmp_path / method / "ToyShapes" / f"seed{seed}", base=base + delta, new=new + delta
            )
    rc, out, _ = run_main(capsys, str(tmp_path), "--compact", "--methods", "zs", "kd")
    assert rc == 0
    lines = [line.split() for line in out.strip().splitlines()[2:]]
    assert [line[0] for line in lines] == ["zs", "kd"]  # the requested order, one row each
    # zs: Base 31 ± 1, New 41 ± 1, HM = HM(31, 41) of the seed means = 35.31
    assert lines[0][2:5] == ["31.00", "±", "1.00"] and lines[0][5:8] == ["41.00", "±", "1.00"]
    assert lines[0][8] == f"{2 * 31 * 41 / 72:.2f}" and lines[0][-1] == "2/2"
    rc, _, _ = run_main(capsys, str(tmp_path), "--compact", "--methods", "zs", "nope")
    assert rc == 1


def test_compact_view_counts_seeds_and_keeps_average_label_and_notes(tmp_path, capsys):
    # Regression: a 2-of-3-seeds row used to read "1/2", and the average label and the
    # missing-seed notes were dropped from the compact view.
    for seed in (1, 2, 3):
        write_result(tmp_path / "kd" / "EuroSAT" / f"seed{seed}", base=90.0, new=80.0)
    for seed in (1, 2):
        write_result(tmp_path / "kd" / "DescribableTextures" / f"seed{seed}", base=50.0, new=40.0)
    rc, out, _ = run_main(capsys, str(tmp_path), "--compact")
    assert rc == 0
    rows = {line.split()[1]: line for line in out.splitlines() if line.startswith("kd ")}
    assert rows["EuroSAT"].rstrip().endswith("3/3")
    assert rows["DescribableTextures"].rstrip().endswith("2/3")
    assert "Average (1 of 2 datasets)" in out
    assert "DescribableTextures: missing seed(s) 3" in out
    assert "excluded (incomplete): DescribableTextures" in out
