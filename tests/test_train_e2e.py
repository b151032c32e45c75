"""train.py end to end with an upstream-style trainer and dataset (CPU, 8x8 images)."""

import json
import os
import re
import shutil

import pytest
import torch

import train
from tests.test_train_helpers import make_image_folder, parse_log, write_trainer_yaml

PROGRESS = re.compile(
    r"^epoch \[\d+/\d+\] batch \[\d+/\d+\] time \d+\.\d{3} \(\d+\.\d{3}\) "
    r"data \d+\.\d{3} \(\d+\.\d{3}\) loss \d+\.\d{4} \(\d+\.\d{4}\) acc \d+\.\d{4} \(\d+\.\d{4}\) "
    r"lr \d\.\d{4}e[+-]\d\d eta \d+:\d\d:\d\d$"
)


@pytest.fixture
def data_root(tmp_path):
    root = tmp_path / "data"
    make_image_folder(str(root))
    return str(root)


def _args(data_root, cfg_file, out, *opts, seed="1"):
    return [
        "--root",
        data_root,
        "--seed",
        seed,
        "--trainer",
        "ToyCoOp",
        "--config-file",
        cfg_file,
        "--output-dir",
        str(out),
        "DATASET.NAME",
        "EngineToyData",
        "USE_CUDA",
        "False",
        *opts,
    ]


def _state(out, name="model.pth.tar-2"):
    ckpt = torch.load(os.path.join(out, "prompt_learner", name), weights_only=True)
    return ckpt


def test_train_then_eval_only(tmp_path, data_root, capsys):
    cfg_file = write_trainer_yaml(tmp_path / "toy.yaml")
    out = tmp_path / "out" / "seed1"
    assert train.main(_args(data_root, cfg_file, out)) == 0

    log = (out / "log.txt").read_text()
    # banners and life-cycle lines, in upstream order
    order = [
        "** Arguments **",
        "** Config **",
        "Collecting env info ...",
        "** System info **",
        "Loading trainer: ToyCoOp",
        "Loading dataset: EngineToyData",
        "Building transform_train",
        "Building transform_test",
        "Building custom CLIP",
        "Loading evaluator: Classification",
        "No checkpoint found, train from scratch",
        "Initialize tensorboard",
        "Finish training",
        "Deploy the last-epoch model",
        "Evaluate on the *test* set",
        "=> result",
        "Elapsed: ",
    ]
    pos = [log.find(s) for s in order]
    assert all(p >= 0 for p in pos), [s for s, p in zip(order, pos) if p < 0]
    assert pos == sorted(pos)
    # dataset summary table with thousands separators style counts
    assert re.search(r"^# train_x\s+24$", log, re.M)
    assert re.search(r"^# val\s+8$", log, re.M)
    progress = [ln for ln in log.splitlines() if ln.startswith("epoch [")]
    # 24 images / batch 4 = 6 batches, PRINT_FREQ 2 -> 3 lines per epoch
    assert len(progress) == 6
    assert all(PROGRESS.match(ln) for ln in progress), progress
    assert progress[-1].startswith("epoch [2/2] batch [6/6]")
    assert progress[-1].endswith("eta 0:00:00")

    acc = parse_log(out / "log.txt")
    assert acc is not None and 0.0 <= acc <= 100.0
    assert acc >= 75.0  # four well separated colours: the prompt learns them

    # checkpoints in the upstream layout
    ckpt_dir = out / "prompt_learner"
    assert (ckpt_dir / "model.pth.tar-2").is_file()
    assert (ckpt_dir / "checkpoint").read_text().strip() == "model.pth.tar-2"
    assert not (ckpt_dir / "model-best.pth.tar").exists()
    ckpt = _state(out)
    assert ckpt["epoch"] == 2 and ckpt["val_result"] is None
    assert set(ckpt["state_dict"]) == {"ctx", "token_prefix"}
    assert {"optimizer", "scheduler", "rng_state", "precision", "best_result"} <= set(ckpt)

    # run files
    run_info = json.loads((out / "run_info.json").read_text())
    assert run_info["seed"] == 1 and run_info["torch_version"] == torch.__version__
    assert "--trainer" in run_info["argv"]
    assert "ToyCoOp" in (out / "config.yaml").read_text()
    records = [json.loads(ln) for ln in (out / "metrics.jsonl").read_text().splitlines()]
    train_recs = [r for r in records if r["type"] == "train"]
    assert [r["epoch"] for r in train_recs] == [1, 2]
    assert set(train_recs[0]["losses"]) == {"loss", "acc"}
    test_recs = [r for r in records if r["type"] == "test"]
    assert test_recs[-1]["split"] == "test"
    assert test_recs[-1]["results"]["accuracy"] == pytest.approx(acc, abs=0.05)
    assert os.listdir(out / "tensorboard")

    # eval-only reload: --test-log style parse after "=> result"
    out_eval = tmp_path / "eval" / "seed1"
    # flags go before the KEY VALUE opts (argparse.REMAINDER)
    args = _args(data_root, cfg_file, out_eval)
    i = args.index("DATASET.NAME")
    args[i:i] = ["--eval-only", "--model-dir", str(out), "--load-epoch", "2"]
    rc = train.main(args)
    assert rc == 0
    eval_log = (out_eval / "log.txt").read_text()
    assert "Loading weights to prompt_learner from" in eval_log
    assert "(epoch = 2)" in eval_log
    assert "Finish training" not in eval_log
    assert parse_log(out_eval / "log.txt", end_signal="=> result") == acc
    assert not (out_eval / "tensorboard").exists()
    assert not (out_eval / "prompt_learner").exists()

    # re-running into the finished dir resumes at MAX_EPOCH: no training, only the test
    assert train.main(_args(data_root, cfg_file, out)) == 0
    log2 = (out / "log.txt").read_text()
    assert "Found checkpoint at" in log2 and "Previous epoch: 2" in log2
    assert not any(ln.startswith("epoch [") for ln in log2.splitlines())
    assert parse_log(out / "log.txt") == acc
    assert [p for p in os.listdir(out) if p.startswith("log.txt-")]  # old log kept aside


def test_best_val_writes_model_best(tmp_path, data_root):
    cfg_file = write_trainer_yaml(tmp_path / "toy.yaml", extra='TEST:\n  FINAL_MODEL: "best_val"\n')
    out = tmp_path / "out"
    assert train.main(_args(data_root, cfg_file, out)) == 0
    ckpt_dir = out / "prompt_learner"
    assert (ckpt_dir / "model-best.pth.tar").is_file()
    assert (ckpt_dir / "model.pth.tar-2").is_file()
    # P5: the pointer never names model-best
    assert (ckpt_dir / "checkpoint").read_text().strip() == "model.pth.tar-2"
    best = torch.load(ckpt_dir / "model-best.pth.tar", weights_only=True)
    assert best["val_result"] is not None and best["best_result"] == best["val_result"]
    log = (out / "log.txt").read_text()
    assert log.count("Evaluate on the *val* set") == 2
    assert "Deploy the model with the best val performance" in log
    assert parse_log(out / "log.txt") is not None


def test_resume_is_exact(tmp_path, data_root):
    """2 epochs straight == 1 epoch, 'crash', resume for epoch 2 (same dir, same seed)."""
    cfg_file = write_trainer_yaml(tmp_path / "toy.yaml", extra="  CHECKPOINT_FREQ: 1\n")
    transforms = ["INPUT.TRANSFORMS", "['random_flip', 'random_crop', 'normalize']"]
    out_a = tmp_path / "a"
    assert train.main(_args(data_root, cfg_file, out_a, *transforms)) == 0
    # a run that died after epoch 1: epoch-1 checkpoint + pointer only
    out_b = tmp_path / "b"
    (out_b / "prompt_learner").mkdir(parents=True)
    shutil.copy(out_a / "prompt_learner" / "model.pth.tar-1", out_b / "prompt_learner")
    (out_b / "prompt_learner" / "checkpoint").write_text("model.pth.tar-1\n")
    assert train.main(_args(data_root, cfg_file, out_b, *transforms)) == 0
    log_b = (out_b / "log.txt").read_text()
    assert "Previous epoch: 1" in log_b
    assert not any(ln.startswith("epoch [1/2]") for ln in log_b.splitlines())
    a, b = _state(out_a), _state(out_b)
    assert torch.equal(a["state_dict"]["ctx"], b["state_dict"]["ctx"])
    assert a["optimizer"]["state"][0]["momentum_buffer"].equal(
        b["optimizer"]["state"][0]["momentum_buffer"]
    )
    # and the run without the pointer file resumes too (newest periodic file, with a message)
    out_c = tmp_path / "c"
    (out_c / "prompt_learner").mkdir(parents=True)
    shutil.copy(out_a / "prompt_learner" / "model.pth.tar-1", out_c / "prompt_learner")
    assert train.main(_args(data_root, cfg_file, out_c, *transforms)) == 0
    assert "No pointer file" in (out_c / "log.txt").read_text()
    assert torch.equal(_state(out_c)["state_dict"]["ctx"], a["state_dict"]["ctx"])
