"""2-process CPU/gloo training via torchrun equals the 1-process run on the same data.

Exactly comparable setup: sequential sampling and deterministic transforms, global batch 4
(1 process x 4 == 2 processes x 2, so every optimizer step sees the same 4 images), the
upstream-style trainer (no DDP wrapper: the engine all-reduces its gradients). Tolerance:
the mean over 4 vs the mean of two means over 2 differ only by float rounding (<= 1e-6).
"""

import os
import subprocess
import sys

import pytest
import torch

import train
from tests.test_train_helpers import make_image_folder, parse_log, write_trainer_yaml

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

LAUNCHER = f"""
import sys
sys.path.insert(0, {REPO!r})
import tests.test_train_helpers  # registers ToyCoOp / EngineToyData
import train
sys.exit(train.main(sys.argv[1:]))
"""


def _argv(root, cfg_file, out, batch):
    return [
        "--root", root, "--seed", "2", "--trainer", "ToyCoOp", "--config-file", cfg_file,
        "--output-dir", str(out),
        "DATASET.NAME", "EngineToyData", "USE_CUDA", "False",
        "DATALOADER.TRAIN_X.SAMPLER", "SequentialSampler",
        "DATALOADER.TRAIN_X.BATCH_SIZE", str(batch),
        "INPUT.TRANSFORMS", "['normalize']",
    ]  # fmt: skip


@pytest.mark.slow
def test_two_process_gloo_matches_one_process(tmp_path):
    root = str(tmp_path / "data")
    make_image_folder(root, n_train=6, n_val=2, n_test=5)  # 24 train, 20 test (odd shards)
    cfg_file = write_trainer_yaml(tmp_path / "toy.yaml", max_epoch=2, lr=0.2)

    out1 = tmp_path / "one"
    assert train.main(_argv(root, cfg_file, out1, batch=4)) == 0

    out2 = tmp_path / "two"
    launcher = tmp_path / "launch.py"
    launcher.write_text(LAUNCHER)
    env = dict(os.environ, OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        str(launcher), *_argv(root, cfg_file, out2, batch=2),
    ]  # fmt: skip
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    w1 = torch.load(out1 / "prompt_learner" / "model.pth.tar-2", weights_only=True)
    w2 = torch.load(out2 / "prompt_learner" / "model.pth.tar-2", weights_only=True)
    assert not torch.equal(w1["state_dict"]["ctx"], torch.zeros_like(w1["state_dict"]["ctx"]))
    torch.testing.assert_close(w2["state_dict"]["ctx"], w1["state_dict"]["ctx"], atol=1e-6, rtol=0)

    log1 = (out1 / "log.txt").read_text()
    log2 = (out2 / "log.txt").read_text()
    # the sharded evaluation covers every test image exactly once
    assert "* total: 20" in log1 and "* total: 20" in log2
    assert parse_log(out2 / "log.txt") == parse_log(out1 / "log.txt")
    # 12 images per rank / batch 2 = 6 batches, as the 1-process run's 24 / 4
    assert "epoch [2/2] batch [6/6]" in log2
    # rank 0 alone writes the log and the checkpoints
    assert log2.count("Finish training") == 1
    assert sorted(os.listdir(out2 / "prompt_learner")) == ["checkpoint", "model.pth.tar-2"]
