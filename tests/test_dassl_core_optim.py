"""Optimizer builder and the LR schedules against the closed forms of spec 6.2."""

import io
import math
import warnings

import pytest
import torch
from torch import nn

from dassl.config import get_cfg_default
from dassl.optim import (
    ConstantWarmupScheduler,
    LinearWarmupScheduler,
    build_lr_scheduler,
    build_optimizer,
)


def _ocfg(**kw):
    o = get_cfg_default().OPTIM
    o.NAME = "sgd"
    for k, v in kw.items():
        setattr(o, k, v)
    return o


def _run(ocfg, n, model=None):
    model = model or nn.Linear(2, 2)
    opt = build_optimizer(model, ocfg)
    sched = build_lr_scheduler(opt, ocfg)
    lrs = []
    for _ in range(n):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return lrs


def _cos_warm(base, e, w, t):
    return base * (1 + math.cos(math.pi * (e - w) / t)) / 2


def test_cosine_constant_warmup_maple():
    o = _ocfg(
        LR=0.0035,
        LR_SCHEDULER="cosine",
        MAX_EPOCH=5,
        WARMUP_EPOCH=1,
        WARMUP_TYPE="constant",
        WARMUP_CONS_LR=1e-5,
    )
    lrs = _run(o, 5)
    expected = [1e-5] + [_cos_warm(0.0035, e, 1, 5) for e in range(1, 5)]
    assert lrs == pytest.approx(expected, abs=1e-12)
    assert [round(x, 7) for x in lrs] == [1e-5, 0.0035, 0.0031658, 0.0022908, 0.0012092]


def test_cosine_constant_warmup_promptsrc():
    o = _ocfg(
        LR=0.0025,
        LR_SCHEDULER="cosine",
        MAX_EPOCH=20,
        WARMUP_EPOCH=1,
        WARMUP_TYPE="constant",
        WARMUP_CONS_LR=1e-5,
    )
    lrs = _run(o, 20)
    expected = [1e-5] + [_cos_warm(0.0025, e, 1, 20) for e in range(1, 20)]
    assert lrs == pytest.approx(expected, abs=1e-12)
    assert round(lrs[2], 7) == 0.0024846
    assert round(lrs[-2], 8) == pytest.approx(1.3624e-4, abs=1e-8)
    assert round(lrs[-1], 9) == pytest.approx(6.1179e-5, abs=1e-9)


def test_linear_warmup():
    o = _ocfg(
        LR=0.0035,
        LR_SCHEDULER="cosine",
        MAX_EPOCH=6,
        WARMUP_EPOCH=3,
        WARMUP_TYPE="linear",
        WARMUP_MIN_LR=1e-5,
    )
    lrs = _run(o, 6)
    expected = [1e-5, 0.0035 / 3, 0.0035 * 2 / 3] + [_cos_warm(0.0035, e, 3, 6) for e in (3, 4, 5)]
    assert lrs == pytest.approx(expected, abs=1e-12)
    assert [round(x, 7) for x in lrs] == [1e-5, 0.0011667, 0.0023333, 0.0035, 0.0032655, 0.002625]


def test_no_recount_rescaled_cosine():
    base, w, t = 0.01, 2, 8
    o = _ocfg(
        LR=base,
        LR_SCHEDULER="cosine",
        MAX_EPOCH=t,
        WARMUP_EPOCH=w,
        WARMUP_TYPE="constant",
        WARMUP_CONS_LR=1e-5,
        WARMUP_RECOUNT=False,
    )
    lrs = _run(o, 8)
    expected = [1e-5] * w + [
        base * (1 + math.cos(math.pi * e / t)) / (1 + math.cos(math.pi * w / t))
        for e in range(w, 8)
    ]
    assert lrs == pytest.approx(expected, abs=1e-12)


def test_step_schedules_and_errors():
    lrs = _run(_ocfg(LR=1.0, LR_SCHEDULER="single_step", STEPSIZE=(3,), GAMMA=0.5), 7)
    assert lrs == pytest.approx([1, 1, 1, 0.5, 0.5, 0.5, 0.25])
    lrs = _run(_ocfg(LR=1.0, LR_SCHEDULER="single_step", STEPSIZE=(-1,), MAX_EPOCH=2), 3)
    assert lrs == pytest.approx([1, 1, 0.1])
    lrs = _run(_ocfg(LR=1.0, LR_SCHEDULER="multi_step", STEPSIZE=(1, 3), GAMMA=0.1), 5)
    assert lrs == pytest.approx([1, 0.1, 0.1, 0.01, 0.01])
    opt = torch.optim.SGD(nn.Linear(1, 1).parameters(), lr=1.0)
    with pytest.raises(TypeError, match="STEPSIZE"):
        build_lr_scheduler(opt, _ocfg(LR_SCHEDULER="multi_step", STEPSIZE=3))
    with pytest.raises(TypeError, match="STEPSIZE"):
        build_lr_scheduler(opt, _ocfg(LR_SCHEDULER="single_step", STEPSIZE=(1.5,)))
    with pytest.raises(ValueError, match="cosine"):
        build_lr_scheduler(opt, _ocfg(LR_SCHEDULER="poly"))
    with pytest.raises(ValueError, match="WARMUP_TYPE"):
        build_lr_scheduler(opt, _ocfg(LR_SCHEDULER="cosine", WARMUP_EPOCH=1, WARMUP_TYPE="exp"))


@pytest.mark.parametrize(
    "warmup_type,k",
    [
        ("constant", 0),
        ("constant", 1),
        ("constant", 3),
        ("linear", 1),
        ("linear", 2),
        ("linear", 4),
    ],
)
def test_resume_continues_schedule_exactly(warmup_type, k):
    o = _ocfg(
        LR=0.0035,
        LR_SCHEDULER="cosine",
        MAX_EPOCH=6,
        WARMUP_EPOCH=2,
        WARMUP_TYPE=warmup_type,
        WARMUP_CONS_LR=1e-5,
    )
    full = _run(o, 6)

    model = nn.Linear(2, 2)
    opt = build_optimizer(model, o)
    sched = build_lr_scheduler(opt, o)
    seq = []
    for _ in range(k):
        seq.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    buf = io.BytesIO()
    torch.save({"optimizer": opt.state_dict(), "scheduler": sched.state_dict()}, buf)
    buf.seek(0)
    state = torch.load(buf, weights_only=True)

    model2 = nn.Linear(2, 2)
    opt2 = build_optimizer(model2, o)
    sched2 = build_lr_scheduler(opt2, o)  # as the trainer does: build, then load
    opt2.load_state_dict(state["optimizer"])
    sched2.load_state_dict(state["scheduler"])
    assert sched2.successor.optimizer is opt2
    for _ in range(6 - k):
        seq.append(opt2.param_groups[0]["lr"])
        opt2.step()
        sched2.step()
    assert seq == pytest.approx(full, abs=1e-15)


def test_warmup_state_dict_is_plain():
    opt = torch.optim.SGD(nn.Linear(1, 1).parameters(), lr=0.1)
    sched = build_lr_scheduler(opt, _ocfg(LR=0.1, LR_SCHEDULER="cosine", WARMUP_EPOCH=1))
    assert isinstance(sched, LinearWarmupScheduler)
    sd = sched.state_dict()
    assert "optimizer" not in sd and isinstance(sd["successor"], dict)
    assert "optimizer" not in sd["successor"]
    with pytest.raises(TypeError, match="successor"):
        sched.load_state_dict({k: v for k, v in sd.items() if k != "successor"})
    assert ConstantWarmupScheduler is not None


def test_build_optimizer_kinds_and_hparams():
    model = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2))
    model[0].weight.requires_grad_(False)  # frozen params are accepted
    for name, cls in [
        ("adam", torch.optim.Adam),
        ("amsgrad", torch.optim.Adam),
        ("sgd", torch.optim.SGD),
        ("rmsprop", torch.optim.RMSprop),
        ("radam", torch.optim.RAdam),
        ("adamw", torch.optim.AdamW),
    ]:
        opt = build_optimizer(model, _ocfg(NAME=name, LR=0.01, WEIGHT_DECAY=0.001))
        assert type(opt) is cls
        g = opt.param_groups[0]
        assert g["lr"] == 0.01 and g["weight_decay"] == 0.001
        if name == "amsgrad":
            assert g["amsgrad"] is True
        if name == "sgd":
            assert g["momentum"] == 0.9 and g["nesterov"] is False
    with pytest.raises(ValueError, match="adamw"):
        build_optimizer(model, _ocfg(NAME="lamb"))
    opt = build_optimizer(list(model.parameters()), _ocfg(LR=0.5))
    assert len(opt.param_groups[0]["params"]) == 4
    groups = [{"params": model[0].parameters(), "lr": 0.1}, {"params": model[1].parameters()}]
    opt = build_optimizer(model, _ocfg(LR=0.5), param_groups=groups)
    assert [g["lr"] for g in opt.param_groups] == [0.1, 0.5]


def test_staged_lr():
    model = nn.Sequential()
    model.add_module("backbone", nn.Linear(2, 2))
    model.add_module("head", nn.Linear(2, 3))
    o = _ocfg(LR=1.0, STAGED_LR=True, NEW_LAYERS="head", BASE_LR_MULT=0.1)
    opt = build_optimizer(model, o)
    lrs = sorted(g["lr"] for g in opt.param_groups)
    assert lrs == pytest.approx([0.1, 1.0])
    new_group = [g for g in opt.param_groups if g["lr"] == 1.0][0]
    assert new_group["params"][0] is model.head.weight
    with pytest.warns(UserWarning, match="NEW_LAYERS is empty"):
        build_optimizer(model, _ocfg(LR=1.0, STAGED_LR=True, NEW_LAYERS=()))
    with pytest.raises(TypeError, match="nn.Module"):
        build_optimizer(list(model.parameters()), o)
    with pytest.raises(ValueError, match="not children"):
        build_optimizer(model, _ocfg(STAGED_LR=True, NEW_LAYERS=("fc",)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        build_optimizer(model, o)
