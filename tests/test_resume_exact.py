"""Exact resume: a run SIGKILLed anywhere and rerun into the same directory ends bit-identical.

The PromptSRC teacher (GPA state, random crops and flips, SGD with momentum, cosine schedule)
trains 3 tiny epochs with checkpoints every 2 epochs and a mid-epoch one every 2 batches
(``TRAIN.CHECKPOINT_ITER_FREQ``). Killed runs are subprocesses of ``train.py`` with a hook that
sends SIGKILL to itself (after an epoch checkpoint, mid-epoch after a batch, or halfway through
writing a checkpoint); the rerun uses the same command, as a user would. Final weights,
optimizer, scheduler, GPA state and results must equal the uninterrupted run's exactly.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

import train
from clip.testing import save_state_dict, tiny_vit_state_dict
from dassl.utils import load_checkpoint
from datasets.toy_shapes import generate_toy_shapes

REPO = Path(__file__).resolve().parent.parent
MODEL = "VLPromptLearner"

# Runs in a fresh interpreter: installs one kill point, then runs train.main(argv).
KILL_HOOK = textwrap.dedent(
    """
    import io, os, signal, sys
    sys.path.insert(0, {repo!r})
    import torch
    import train
    from dassl.engine import checkpointer, trainer

    mode, a, b = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])

    def die():
        sys.stdout.flush()
        os.kill(os.getpid(), signal.SIGKILL)

    if mode == "after_epoch_save":  # right after the epoch-a checkpoint (0-based) is complete
        orig = checkpointer.save_models
        def save_models(*args, **kw):
            out = orig(*args, **kw)
            if args[3] == a and not kw.get("iteration") and not kw.get("model_name"):
                die()
            return out
        checkpointer.save_models = save_models
    elif mode == "after_batch":  # mid-epoch: after batch b (0-based) of epoch a trained
        orig_after = trainer.TrainerBase._after_batch
        def _after_batch(self, batch_idx):
            orig_after(self, batch_idx)
            if self.epoch == a and batch_idx == b:
                die()
        trainer.TrainerBase._after_batch = _after_batch
    elif mode == "mid_write":  # halfway through writing the checkpoint of epoch a (0-based)
        orig_save = torch.save
        def save(obj, f, *args, **kw):
            if isinstance(obj, dict) and obj.get("epoch") == a + 1 and not obj.get("iteration"):
                buf = io.BytesIO()
                orig_save(obj, buf, *args, **kw)
                data = buf.getvalue()
                f.write(data[: len(data) // 2])
                f.flush()
                die()
            return orig_save(obj, f, *args, **kw)
        torch.save = save
    sys.exit(train.main(sys.argv[4:]))
    """
)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    base = tmp_path_factory.mktemp("resume")
    root = base / "data"
    generate_toy_shapes(str(root), n_train=2, n_val=1, n_test=1)
    teacher = save_state_dict(
        tiny_vit_state_dict(embed_dim=32, width=64, seed=1), base / "teacher.pt"
    )
    hook = base / "kill_hook.py"
    hook.write_text(KILL_HOOK.format(repo=str(REPO)))
    argv = [
        "--root", str(root), "--seed", "3", "--trainer", "PromptKDTeacher",
        "--config-file", str(REPO / "configs/trainers/PromptKDTeacher/toy.yaml"),
    ]  # fmt: skip
    opts = [
        "DATASET.NAME", "ToyShapes", "DATASET.NUM_SHOTS", "1", "DATASET.SUBSAMPLE_CLASSES", "base",
        "MODEL.BACKBONE.NAME", str(teacher), "INPUT.SIZE", "(16, 16)",
        "INPUT.TRANSFORMS", "['random_resized_crop', 'random_flip', 'normalize']",
        "DATALOADER.TRAIN_X.BATCH_SIZE", "4", "DATALOADER.TEST.BATCH_SIZE", "64",
        "OPTIM.MAX_EPOCH", "3", "OPTIM.WARMUP_EPOCH", "0", "OPTIM.LR", "0.05",
        "TRAINER.PROMPTSRC.GPA_MEAN", "2", "TRAINER.PROMPTSRC.N_CTX_TEXT", "2",
        "TRAINER.PROMPTSRC.N_CTX_VISION", "2", "TRAINER.PROMPTSRC.PROMPT_DEPTH_TEXT", "2",
        "TRAINER.PROMPTSRC.PROMPT_DEPTH_VISION", "2", "TRAINER.PROMPTSRC.CTX_INIT", "",
        "TRAIN.CHECKPOINT_FREQ", "2", "TRAIN.CHECKPOINT_ITER_FREQ", "2", "TRAIN.PRINT_FREQ", "100",
    ]  # fmt: skip
    ref = base / "reference"
    assert train.main([*argv, "--output-dir", str(ref), *opts]) == 0
    return base, hook, (argv, opts), ref


def _final(out: Path) -> dict:
    ckpt = load_checkpoint(str(out / MODEL / "model.pth.tar-3"), legacy=False)
    results = json.loads((out / "results.json").read_text())
    return {"ckpt": ckpt, "results": {k: results[k] for k in ("base", "new", "epoch")}}


def _assert_identical(a, b, where="checkpoint"):
    if torch.is_tensor(a):
        assert torch.is_tensor(b) and a.dtype == b.dtype and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert set(a) == set(b), (where, set(a) ^ set(b))
        for k in a:
            _assert_identical(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_identical(x, y, f"{where}[{i}]")
    else:
        assert a == b, (where, a, b)


def _killed_run(hook: Path, mode: str, a: int, b: int, argv: list[str]) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, str(hook), mode, str(a), str(b), *argv],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == -signal.SIGKILL, (proc.returncode, proc.stderr[-3000:])


@pytest.mark.slow
@pytest.mark.parametrize(
    "mode, a, b",
    [
        ("after_epoch_save", 1, 0),  # resume at an epoch boundary
        ("after_batch", 1, 2),  # mid-epoch: model-iter after batch 2, batch 3 lost
        # truncated write of the last checkpoint, after GPA saw epoch 3: the old gpa_state.pt
        # side file then resumed as epochs [0, 1, 2, 2]
        ("mid_write", 2, 0),
    ],
)
def test_killed_run_resumes_bit_identical(setup, mode, a, b):
    base, hook, argv, ref = setup
    out = base / f"killed_{mode}"
    full = [*argv[0], "--output-dir", str(out), *argv[1]]
    _killed_run(hook, mode, a, b, full)
    model_dir = out / MODEL
    assert (out / ".run.lock").is_file()  # the dead run's lock is left behind
    if mode == "mid_write":
        # the half-written file never took the real name; the pointer names the last good one
        assert not (model_dir / "model.pth.tar-3").exists()
        assert any(p.name.endswith(".tmp") for p in model_dir.iterdir())
        assert (model_dir / "checkpoint").read_text().strip() == "model-iter.pth.tar"
    if mode == "after_batch":
        iter_ckpt = load_checkpoint(str(model_dir / "model-iter.pth.tar"), legacy=False)
        assert (iter_ckpt["epoch"], iter_ckpt["iteration"]) == (1, 2)
        assert iter_ckpt["trainer_state"]["gpa"]["epochs_seen"] == [0]
    # the same command again: takes over the stale lock, resumes, finishes
    assert train.main(full) == 0
    assert not (out / ".run.lock").exists()
    log = (out / "log.txt").read_text()
    assert "stale lock" in log or "stale lock" in "".join(
        p.read_text() for p in out.glob("log.txt-*")
    )
    got, want = _final(out), _final(ref)
    for key in ("state_dict", "optimizer", "scheduler", "trainer_state", "epoch"):
        _assert_identical(got["ckpt"][key], want["ckpt"][key], key)
    assert got["ckpt"]["trainer_state"]["gpa"]["epochs_seen"] == [0, 1, 2]
    assert got["results"] == want["results"]
