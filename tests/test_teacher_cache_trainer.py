"""PromptKDStudent with TRAINER.PROMPTKD.TEACHER_CACHE: build, replay, reuse, refuse."""

from __future__ import annotations

import os

import pytest
import torch

import train
from clip.testing import save_state_dict, tiny_vit_state_dict
from dassl.engine import build_trainer
from datasets.toy_shapes import generate_toy_shapes


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    base = tmp_path_factory.mktemp("cache_world")
    root = str(base / "data")
    generate_toy_shapes(root, n_train=1, n_val=1, n_test=1)
    teacher = save_state_dict(tiny_vit_state_dict(embed_dim=48, width=128, seed=1), base / "t.pt")
    student = save_state_dict(tiny_vit_state_dict(embed_dim=32, width=64, seed=2), base / "s.pt")
    common = [
        "--root", root, "--seed", "1",
        "DATASET.NAME", "ToyShapes",
        "INPUT.SIZE", "(16, 16)",
        "INPUT.TRANSFORMS", "['random_resized_crop', 'random_flip', 'normalize']",
        "DATALOADER.NUM_WORKERS", "0",
        "DATALOADER.TRAIN_X.BATCH_SIZE", "4",
        "DATALOADER.TEST.BATCH_SIZE", "64",
        "OPTIM.NAME", "sgd", "OPTIM.LR", "0.01", "OPTIM.MAX_EPOCH", "1",
        "TRAIN.PRINT_FREQ", "100",
        "TRAINER.PROMPTSRC.N_CTX_TEXT", "2", "TRAINER.PROMPTSRC.N_CTX_VISION", "2",
        "TRAINER.PROMPTSRC.PROMPT_DEPTH_TEXT", "2", "TRAINER.PROMPTSRC.PROMPT_DEPTH_VISION", "2",
    ]  # fmt: skip
    tdir = str(base / "teacher_run")
    rc = train.main(
        ["--trainer", "PromptKDTeacher", "--output-dir", tdir, *common,
         "MODEL.BACKBONE.NAME", teacher, "DATASET.NUM_SHOTS", "1",
         "DATASET.SUBSAMPLE_CLASSES", "base", "TRAINER.PROMPTSRC.PREC", "fp32",
         "TRAINER.PROMPTSRC.GPA_MEAN", "1"]
    )  # fmt: skip
    assert rc == 0
    cache = str(base / "cache")
    student_args = [
        *common,
        "MODEL.BACKBONE.NAME", student, "DATASET.NUM_SHOTS", "0",
        "TRAINER.PROMPTKD.TEACHER_WEIGHTS", tdir, "TRAINER.PROMPTKD.TEACHER_NAME", teacher,
        "TRAINER.PROMPTKD.N_CTX_VISION", "2", "TRAINER.PROMPTKD.PROMPT_DEPTH_VISION", "2",
        "TRAINER.PROMPTKD.PREC", "fp32", "TRAINER.MODAL", "base2novel",
        "TRAINER.PROMPTKD.TEACHER_CACHE", cache, "TRAINER.PROMPTKD.TEACHER_CACHE_VIEWS", "2",
    ]  # fmt: skip
    return {"base": base, "cache": cache, "args": student_args}


def _run(world, name, *extra):
    out = str(world["base"] / name)
    rc = train.main(["--trainer", "PromptKD", "--output-dir", out, *world["args"], *extra])
    return rc, open(os.path.join(out, "log.txt")).read()


def test_cache_is_built_once_then_replayed(world):
    rc, log = _run(world, "s1")
    assert rc == 0
    assert "Teacher cache" in log and "shard 1/1 written" in log
    assert "replay 2 cached teacher views" in log
    files = sorted(os.listdir(world["cache"]))
    assert files == ["features-00000.npy", "teacher_cache.json", "views-00000.npy"]
    mtime = os.path.getmtime(os.path.join(world["cache"], "features-00000.npy"))
    rc, log = _run(world, "s2")
    assert rc == 0 and "shard 1/1 written" not in log
    assert "Loading teacher image encoder" not in log  # no teacher at all in student epochs
    assert os.path.getmtime(os.path.join(world["cache"], "features-00000.npy")) == mtime


def test_cached_logits_equal_the_online_teacher_on_the_replayed_view(world):
    _run(world, "s3")  # make sure the cache exists
    out = str(world["base"] / "s4")
    cfg = train.setup_cfg(
        train.build_parser().parse_args(
            ["--trainer", "PromptKD", "--output-dir", out, *world["args"]]
        )
    )
    trainer = build_trainer(cfg)
    trainer.start_epoch = 0
    trainer.teacher_cache = trainer.open_teacher_cache()
    batch = next(iter(trainer.train_loader_x))
    assert set(batch) >= {"index", "view", "img"}
    images = trainer.parse_batch_train(batch)
    cached = trainer.teacher_logits(images, batch)
    trainer.teacher_cache, trainer.distiller = None, trainer.build_distiller()
    online = trainer.teacher_logits(images, batch)
    assert torch.equal(cached, online)


def test_cache_of_another_transform_is_refused(world, capsys):
    _run(world, "s5")
    out = str(world["base"] / "s6")
    argv = ["--trainer", "PromptKD", "--output-dir", out, *world["args"]]
    assert train.main([*argv, "INPUT.RRCROP_SCALE", "(0.5, 1.0)"]) != 0
    err = capsys.readouterr().err
    assert "transform: scale cache [0.08, 1.0] vs run [0.5, 1.0]" in err
    assert "TEACHER_CACHE" in err


def test_non_replayable_transform_fails_before_training(world, tmp_path):
    out = str(tmp_path / "bad")
    rc = train.main(
        ["--trainer", "PromptKD", "--output-dir", out, *world["args"],
         "INPUT.TRANSFORMS", "['random_resized_crop', 'colorjitter', 'normalize']"]
    )  # fmt: skip
    assert rc != 0 and not os.path.exists(out)
