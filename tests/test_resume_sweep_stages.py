"""The sweep scripts with the real ``train.py`` for every cross-dataset/DG stage (issue 13).

tests/test_sweep_scripts.py replaces train.py with a fake, so it could not see that
``DG_MODE=eval`` ran ``--eval-only`` of a student without ``--load-epoch`` (the loader looked
for a ``model-best.pth.tar`` the student never writes). Here tiny CLIPs on fake ImageNet and
ImageNet-V2 go through teacher.sh (cross) -> xd.sh imagenet -> dg.sh (eval), then rerunning a
finished stage is a no-op.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from clip.testing import save_state_dict, tiny_vit_state_dict
from tests.fake_datasets import make_imagenet, make_imagenetv2

REPO = Path(__file__).resolve().parent.parent
SCRIPTS = REPO / "scripts" / "promptkd"
XD_CFG = "vit_b16_c2_ep20_batch8_4+4ctx_cross_datasets"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    base = tmp_path_factory.mktemp("sweep_stages")
    data = base / "data"
    make_imagenet(str(data))
    make_imagenetv2(str(data))
    teacher = save_state_dict(
        tiny_vit_state_dict(embed_dim=48, width=128, seed=1), base / "teacher.pt"
    )
    student = save_state_dict(
        tiny_vit_state_dict(embed_dim=32, width=64, seed=2), base / "student.pt"
    )
    common = [
        "INPUT.SIZE", "(16,16)", "INPUT.TRANSFORMS", "['random_flip','normalize']",
        "DATALOADER.NUM_WORKERS", "0", "DATALOADER.TRAIN_X.BATCH_SIZE", "4",
        "DATALOADER.TEST.BATCH_SIZE", "32", "OPTIM.MAX_EPOCH", "1", "OPTIM.WARMUP_EPOCH", "0",
        "TRAIN.PRINT_FREQ", "100", "TRAINER.PROMPTSRC.N_CTX_TEXT", "2",
        "TRAINER.PROMPTSRC.N_CTX_VISION", "2", "TRAINER.PROMPTSRC.PROMPT_DEPTH_TEXT", "2",
        "TRAINER.PROMPTSRC.PROMPT_DEPTH_VISION", "2",
    ]  # fmt: skip
    teacher_opts = [*common, "MODEL.BACKBONE.NAME", teacher, "TRAINER.PROMPTSRC.GPA_MEAN", "1"]
    student_opts = [
        *common, "MODEL.BACKBONE.NAME", student, "TRAINER.PROMPTKD.TEACHER_NAME", teacher,
        "TRAINER.PROMPTKD.N_CTX_VISION", "2", "TRAINER.PROMPTKD.PROMPT_DEPTH_VISION", "2",
    ]  # fmt: skip
    env = {
        **os.environ,
        "PYTHON": sys.executable,
        "DATA": str(data),
        "OUTPUT": str(base / "output"),
        "RELEASED_TEACHERS": str(base / "no_released_teachers"),
        "QUIET": "1",
        "TEACHER_SHOTS": "2",
        "OMP_NUM_THREADS": "1",
    }
    env.pop("GPUS", None)
    return base, env, " ".join(teacher_opts), " ".join(student_opts)


def _sh(env: dict, *args: str, **extra: str) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        ["bash", *args], env={**env, **extra}, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, f"{args} failed\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


@pytest.mark.slow
def test_cross_dataset_and_dg_eval_stages_with_the_real_train_py(world):
    base, env, teacher_opts, student_opts = world
    out = base / "output"
    _sh(env, str(SCRIPTS / "teacher.sh"), "imagenet", "1", "cross", EXTRA_OPTS=teacher_opts)
    teacher_run = next((out / "teacher" / "ImageNet-xd").glob("*/seed1"))
    assert (teacher_run / "class_vectors.safetensors").is_file()

    # class-vector exports (per target) read the teacher's options from TEACHER_OPTS
    env = {**env, "TEACHER_OPTS": teacher_opts}
    _sh(env, str(SCRIPTS / "xd.sh"), "imagenet", "1", EXTRA_OPTS=student_opts)
    student_run = out / "xd" / "ImageNet" / XD_CFG / "seed1"
    assert json.loads((student_run / "results.json").read_text())["epoch"] == 1
    assert not list(student_run.glob("*/model-best.pth.tar"))  # the student never writes one

    # DG_MODE=eval: --eval-only of that student on ImageNet-V2 with --load-epoch 1.
    _sh(env, str(SCRIPTS / "dg.sh"), "1", "imagenetv2", DG_MODE="eval", EXTRA_OPTS=student_opts)
    run = out / "dg-eval" / "ImageNetV2" / XD_CFG / "seed1"
    results = json.loads((run / "results.json").read_text())
    assert results["epoch"] == 1 and 0.0 <= results["accuracy"] <= 100.0
    argv = json.loads((run / "run_info.json").read_text())["argv"]
    assert argv[argv.index("--load-epoch") + 1] == "1"
    assert argv[argv.index("--model-dir") + 1] == str(student_run)
