"""Checkpoint layout, atomic writes, weights-only loading and the restricted legacy loader."""

import collections
import os
import pickle

import pytest
import torch
from torch import nn

from dassl.utils import (
    CheckpointError,
    LegacyCheckpointError,
    LegacyObject,
    UnsafeCheckpointError,
    is_legacy_checkpoint_error,
    load_checkpoint,
    load_pretrained_weights,
    resume_from_checkpoint,
    save_checkpoint,
)


class _UpstreamStyleWarmup:
    """Mimics what upstream Dassl pickles: a wrapper holding a successor and an optimizer."""

    def __init__(self, optimizer):
        self.optimizer = optimizer
        self.successor = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, 5)
        self.warmup_epoch = 1
        self.last_epoch = 3


class _Evil:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (os.system, (f"echo pwned > {self.path}",))


def _trained():
    model = nn.Linear(3, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.randn(4, 3)).sum().backward()
    opt.step()
    return model, opt


def test_save_layout_pointer_and_atomicity(tmp_path):
    model, opt = _trained()
    d = str(tmp_path / "prompt_learner")
    state = {
        "state_dict": {"module." + k: v for k, v in model.state_dict().items()},
        "epoch": 2,
        "optimizer": opt.state_dict(),
        "scheduler": None,
        "val_result": None,
    }
    path = save_checkpoint(state, d)
    assert path == os.path.join(d, "model.pth.tar-2")
    assert open(os.path.join(d, "checkpoint")).read() == "model.pth.tar-2\n"
    ck = load_checkpoint(path)
    assert list(ck["state_dict"]) == ["weight", "bias"]  # module. stripped
    # a best save must not move the pointer (P5); is_best copies
    save_checkpoint(dict(state, epoch=3), d, model_name="model-best.pth.tar")
    assert open(os.path.join(d, "checkpoint")).read() == "model.pth.tar-2\n"
    save_checkpoint(dict(state, epoch=4), d, is_best=True)
    assert open(os.path.join(d, "checkpoint")).read() == "model.pth.tar-4\n"
    assert load_checkpoint(os.path.join(d, "model-best.pth.tar"))["epoch"] == 4
    assert sorted(os.listdir(d)) == [
        "checkpoint",
        "model-best.pth.tar",
        "model.pth.tar-2",
        "model.pth.tar-4",
    ]


def test_save_failure_leaves_no_tmp(tmp_path):
    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        save_checkpoint({"state_dict": {}, "epoch": 1, "x": Unpicklable()}, str(tmp_path))
    assert os.listdir(tmp_path) == []


def test_resume(tmp_path, capsys):
    model, opt = _trained()
    sched = torch.optim.lr_scheduler.StepLR(opt, 2)
    save_checkpoint(
        {
            "state_dict": model.state_dict(),
            "epoch": 5,
            "optimizer": opt.state_dict(),
            "scheduler": sched.state_dict(),
        },
        str(tmp_path),
    )
    model2 = nn.Linear(3, 2)
    opt2 = torch.optim.SGD(model2.parameters(), lr=0.1, momentum=0.9)
    sched2 = torch.optim.lr_scheduler.StepLR(opt2, 2)
    assert resume_from_checkpoint(str(tmp_path), model2, opt2, sched2) == 5
    assert torch.equal(model2.weight, model.weight)
    assert opt2.state_dict()["state"][0]["momentum_buffer"].equal(
        opt.state_dict()["state"][0]["momentum_buffer"]
    )
    out = capsys.readouterr().out
    for line in (
        'Loading checkpoint from "',
        "Loaded model weights",
        "Loaded optimizer",
        "Loaded scheduler",
        "Previous epoch: 5",
    ):
        assert line in out
    with pytest.raises(RuntimeError, match="Missing key|Unexpected key"):
        resume_from_checkpoint(str(tmp_path), nn.Sequential(nn.Linear(3, 2)))
    with pytest.raises(FileNotFoundError, match="checkpoint"):
        resume_from_checkpoint(str(tmp_path / "empty"), model2)


def test_upstream_checkpoint_refused_then_loaded_by_legacy(tmp_path):
    model, opt = _trained()
    f = str(tmp_path / "model.pth.tar-5")
    torch.save(
        {
            "state_dict": model.state_dict(),
            "epoch": 5,
            "optimizer": opt.state_dict(),
            "scheduler": _UpstreamStyleWarmup(opt),
            "val_result": None,
        },
        f,
    )
    with pytest.raises(pickle.UnpicklingError):
        torch.load(f, weights_only=True)
    with pytest.raises(LegacyCheckpointError, match="legacy=True") as ei:
        load_checkpoint(f, legacy=False)
    assert f in str(ei.value) and is_legacy_checkpoint_error(ei.value)
    # default ("auto"): what unmodified upstream trainers' load_model() calls
    for mode in (True, "auto", None):
        ck = load_checkpoint(f) if mode is None else load_checkpoint(f, legacy=mode)
        assert torch.equal(ck["state_dict"]["weight"], model.weight.detach())
        assert torch.equal(ck["state_dict"]["bias"], model.bias.detach())
        assert ck["epoch"] == 5
        assert ck["optimizer"]["state"][0]["momentum_buffer"].shape == (2, 3)
        sched = ck["scheduler"]
        assert isinstance(sched, LegacyObject) and sched.pickled_name == "_UpstreamStyleWarmup"
        assert sched.state["last_epoch"] == 3
        assert isinstance(sched.state["optimizer"], LegacyObject)
    # the state dict is usable
    fresh = nn.Linear(3, 2)
    fresh.load_state_dict(load_checkpoint(f, legacy=True)["state_dict"])
    assert torch.equal(fresh.weight, model.weight)


def test_legacy_loader_never_executes_code(tmp_path):
    marker = tmp_path / "PWNED"
    f = str(tmp_path / "evil.pth")
    torch.save({"state_dict": {"w": torch.ones(2)}, "payload": _Evil(str(marker))}, f)
    with pytest.raises(LegacyCheckpointError):
        load_checkpoint(f, legacy=False)
    # A pickle naming a code-running function is refused (issue 13), and nothing ran.
    for mode in (True, "auto"):
        with pytest.raises(UnsafeCheckpointError, match=r"evil\.pth.*refused.*system"):
            load_checkpoint(f, legacy=mode)
    assert not marker.exists()
    # Other pickled objects (an upstream scheduler class) still become inert placeholders.
    f2 = str(tmp_path / "legacy.pth")
    torch.save({"state_dict": {"w": torch.ones(2)}, "payload": collections.Counter(a=1)}, f2)
    ck = load_checkpoint(f2, legacy=True)
    assert isinstance(ck["payload"], LegacyObject) and ck["payload"].pickled_name == "Counter"
    assert torch.equal(ck["state_dict"]["w"], torch.ones(2))


def test_missing_none_and_corrupt(tmp_path):
    with pytest.raises(ValueError):
        load_checkpoint(None)
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        load_checkpoint(str(tmp_path / "nope.pth"))
    good = tmp_path / "good.pth"
    torch.save({"state_dict": {"w": torch.randn(100, 100)}}, good)
    bad = tmp_path / "trunc.pth"
    bad.write_bytes(good.read_bytes()[:2000])
    for mode in (False, True, "auto"):
        with pytest.raises(CheckpointError, match="trunc.pth"):
            load_checkpoint(str(bad), legacy=mode)
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="junk.pth"):
        load_checkpoint(str(junk), legacy=True)


def test_load_pretrained_weights(tmp_path, capsys):
    src = nn.Sequential(nn.Linear(3, 2), nn.Linear(2, 5))
    f = str(tmp_path / "w.pth")
    torch.save({"state_dict": {"module." + k: v for k, v in src.state_dict().items()}}, f)
    dst = nn.Sequential(nn.Linear(3, 2), nn.Linear(2, 4))
    load_pretrained_weights(dst, f)
    assert torch.equal(dst[0].weight, src[0].weight)
    out = capsys.readouterr().out
    assert f"Successfully loaded pretrained weights from {f}" in out
    assert "Layers discarded due to unmatched keys or size: ['1.weight', '1.bias']" in out
