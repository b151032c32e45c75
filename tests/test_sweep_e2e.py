"""The issue's done-criterion: a real sweep (tiny CLIPs, CPU) killed midway resumes cleanly.

Two tiny datasets (fake EuroSAT and DTD layouts) x two seeds: teachers, then students with the
real trainers through scripts/promptkd/sweep.sh; the student sweep is killed (SIGKILL to its
process group) while a run is in progress, rerun with the same command, and the final table
lists every run exactly once, with finished runs not repeated.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from clip.testing import save_state_dict, tiny_vit_state_dict
from tests.fake_datasets import make_dtd, make_eurosat
from tools import parse_test_res

REPO = Path(__file__).resolve().parent.parent
SWEEP = REPO / "scripts" / "promptkd" / "sweep.sh"
STUDENT_CFG = "vit_b16_c2_ep20_batch8_4+4ctx"
TEACHER_CFG = "vit_l14_c2_ep20_batch8_4+4ctx"

# Shrink the paper's configs to tiny CLIPs on CPU (no spaces inside values: EXTRA_OPTS is
# split on whitespace).
COMMON = [
    "INPUT.SIZE", "(16,16)", "INPUT.TRANSFORMS", "['random_flip','normalize']",
    "DATALOADER.NUM_WORKERS", "0", "DATALOADER.TRAIN_X.BATCH_SIZE", "4",
    "DATALOADER.TEST.BATCH_SIZE", "32", "OPTIM.MAX_EPOCH", "1", "OPTIM.WARMUP_EPOCH", "0",
    "TRAIN.PRINT_FREQ", "100",
]  # fmt: skip


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    base = tmp_path_factory.mktemp("sweep_e2e")
    data = base / "data"
    make_eurosat(str(data))
    make_dtd(str(data))
    teacher = save_state_dict(
        tiny_vit_state_dict(embed_dim=48, width=128, seed=1), base / "teacher.pt"
    )
    student = save_state_dict(
        tiny_vit_state_dict(embed_dim=32, width=64, seed=2), base / "student.pt"
    )
    env = {
        **os.environ,
        "PYTHON": sys.executable,
        "DATA": str(data),
        "OUTPUT": str(base / "output"),
        "RELEASED_TEACHERS": str(base / "no_released_teachers"),
        "SEEDS": "1 2",
        "QUIET": "1",
        "TEACHER_SHOTS": "2",
        "OMP_NUM_THREADS": "1",
    }
    env.pop("GPUS", None)
    # The teacher's prompt shape (TRAINER.PROMPTSRC.*) is read by both stages.
    teacher_prompts = [
        "TRAINER.PROMPTSRC.N_CTX_TEXT", "2", "TRAINER.PROMPTSRC.N_CTX_VISION", "2",
        "TRAINER.PROMPTSRC.PROMPT_DEPTH_TEXT", "2", "TRAINER.PROMPTSRC.PROMPT_DEPTH_VISION", "2",
    ]  # fmt: skip
    teacher_opts = [
        *COMMON, *teacher_prompts, "MODEL.BACKBONE.NAME", teacher, "TRAINER.PROMPTSRC.PREC", "fp32",
        "TRAINER.PROMPTSRC.GPA_MEAN", "1",
    ]  # fmt: skip
    student_opts = [
        *COMMON, *teacher_prompts, "MODEL.BACKBONE.NAME", student,
        "TRAINER.PROMPTKD.TEACHER_NAME", teacher,
        "TRAINER.PROMPTKD.PREC", "fp32", "TRAINER.PROMPTKD.N_CTX_VISION", "2",
        "TRAINER.PROMPTKD.PROMPT_DEPTH_VISION", "2",
    ]  # fmt: skip
    return {
        "base": base,
        "env": env,
        "teacher_opts": " ".join(teacher_opts),
        "student_opts": " ".join(student_opts),
    }


def sweep(world, stage: str, **extra) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        ["bash", str(SWEEP), stage, "eurosat", "dtd"],
        env={**world["env"], **extra},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, (
        f"{stage} sweep failed\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    )
    return proc


def run_dirs(world, stage: str, cfg: str) -> list[Path]:
    out = world["base"] / "output" / stage
    return [out / d / cfg / f"seed{s}" for d in ("EuroSAT", "DescribableTextures") for s in (1, 2)]


@pytest.mark.slow
def test_sweep_killed_midway_resumes_and_lists_every_run_once(world):
    sweep(world, "teacher", EXTRA_OPTS=world["teacher_opts"])
    for run in run_dirs(world, "teacher", TEACHER_CFG):
        assert (run / "results.json").is_file() and (run / "class_vectors.safetensors").is_file()

    students = run_dirs(world, "base2novel", STUDENT_CFG)
    env = {**world["env"], "EXTRA_OPTS": world["student_opts"]}
    proc = subprocess.Popen(
        ["bash", str(SWEEP), "base2novel", "eurosat", "dtd"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    # Kill as soon as the first run has finished and the second has started.
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if (students[0] / "results.json").is_file() and (students[1] / "command.txt").is_file():
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the sweep ended before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    assert (students[0] / "results.json").is_file()
    assert not (students[1] / "results.json").is_file()  # killed partial run
    first_result = (students[0] / "results.json").read_bytes()
    first_mtime = (students[0] / "results.json").stat().st_mtime_ns

    rerun = sweep(world, "base2novel", EXTRA_OPTS=world["student_opts"])
    assert f"skip (finished): {students[0]}" in rerun.stderr
    assert f"restart (no results.json, killed or failed run): {students[1]}" in rerun.stderr
    # The finished run was not repeated.
    assert (students[0] / "results.json").stat().st_mtime_ns == first_mtime
    assert (students[0] / "results.json").read_bytes() == first_result

    for run in students:
        res = json.loads((run / "results.json").read_text())
        assert set(res) >= {"base", "new", "hm", "seed", "dataset", "trainer"}
        argv = (run / "command.txt").read_text().split("\n")
        weight = argv[argv.index("TRAINER.PROMPTKD.KD_WEIGHT") + 1]
        assert weight == ("200.0" if "DescribableTextures" in str(run) else "1000.0")

    runs = parse_test_res.collect(world["base"] / "output" / "base2novel")
    assert sorted((r.dataset, r.seed) for r in runs) == [
        ("DescribableTextures", 1),
        ("DescribableTextures", 2),
        ("EuroSAT", 1),
        ("EuroSAT", 2),
    ]
    tables = parse_test_res.build_tables(runs)
    assert len(tables) == 1
    table = tables[0]
    assert [r.dataset for r in table.rows] == ["DescribableTextures", "EuroSAT"]
    assert all(r.seeds == [1, 2] and not r.missing_seeds and not r.partial_runs for r in table.rows)
    assert table.average is not None and table.average.average_over == [
        "DescribableTextures",
        "EuroSAT",
    ]
    text = parse_test_res.render(tables)
    assert text.count("DescribableTextures") == 1 and text.count("EuroSAT") == 1
