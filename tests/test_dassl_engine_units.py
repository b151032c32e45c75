"""Engine pieces without a full run: model registry, modes, precision, checkpointer, writer."""

import json
import logging
import random
import sys

import numpy as np
import pytest
import torch
import torch.nn as nn

from dassl.config import get_cfg_default
from dassl.engine import TRAINER_REGISTRY, SimpleTrainer, TrainerBase, build_trainer
from dassl.engine import checkpointer as ckpt
from dassl.engine.metric_writer import MetricWriter
from dassl.engine.precision import Precision


class _Frozen(nn.Module):
    def __init__(self):
        super().__init__()
        self.bn = nn.BatchNorm1d(2)


def _base_with_models():
    tb = TrainerBase()
    m = nn.Linear(2, 2)
    opt = torch.optim.SGD(m.parameters(), lr=0.1)
    sched = torch.optim.lr_scheduler.StepLR(opt, 1, gamma=0.5)
    tb.register_model("prompt", m, opt, sched)
    return tb, m, opt


def test_register_and_names():
    tb, m, _ = _base_with_models()
    assert tb.get_model_names() == ["prompt"]
    assert tb.get_model_names("prompt") == ["prompt"]
    with pytest.raises(KeyError):
        tb.get_model_names("other")
    with pytest.raises(KeyError):
        tb.register_model("prompt", m)

    class Forgot(TrainerBase):
        def __init__(self):  # no super().__init__()
            pass

    with pytest.raises(AttributeError):
        Forgot().register_model("x", m)


def test_set_model_mode_touches_registered_modules_only():
    tb, m, _ = _base_with_models()
    frozen = _Frozen().eval()
    tb.model = nn.ModuleDict({"frozen": frozen, "prompt": m})
    tb.set_model_mode("train")
    assert m.training and not frozen.training  # P12
    tb.set_model_mode("eval")
    assert not m.training
    with pytest.raises(KeyError):
        tb.set_model_mode("bogus")


def test_backward_update_lr_and_anomaly():
    tb, m, opt = _base_with_models()
    w0 = m.weight.detach().clone()
    loss = m(torch.ones(1, 2)).sum()
    tb.model_backward_and_update(loss)
    assert not torch.equal(m.weight, w0)
    assert tb.get_current_lr() == pytest.approx(0.1)
    tb.update_lr()
    assert tb.get_current_lr() == pytest.approx(0.05)
    with pytest.raises(FloatingPointError, match="infinite or NaN"):
        tb.model_backward_and_update(m(torch.ones(1, 2)).sum() * float("nan"))


def test_precision_policies(caplog, monkeypatch):
    p = Precision.from_name("fp32", "cpu")
    assert p.frozen_dtype == torch.float32 and p.scaler is None
    with p.autocast():
        assert not torch.is_autocast_enabled("cpu")
    monkeypatch.setattr(logging.getLogger("dassl"), "propagate", True)
    with caplog.at_level(logging.WARNING, logger="dassl"):
        p16 = Precision.from_name("FP16", "cpu")
    assert p16.name == "fp32" and p16.requested == "fp16"
    assert "needs CUDA" in caplog.text
    pb = Precision.from_name("bf16", "cpu")
    assert pb.frozen_dtype == torch.bfloat16
    with pb.autocast():
        y = nn.Linear(4, 4)(torch.randn(2, 4))
    assert y.dtype == torch.bfloat16
    pa = Precision.from_name("amp", "cpu")
    assert pa.frozen_dtype == torch.float32 and pa.scaler is None
    assert pa.state_dict() == {"name": "amp"}
    with pytest.raises(ValueError, match="fp32"):
        Precision.from_name("fp8", "cpu")


def test_precision_name_from_cfg():
    cfg = get_cfg_default()
    cfg.TRAINER.NAME = "MyTrainer"
    assert SimpleTrainer.get_precision_name(None, cfg) == "fp32"
    from yacs.config import CfgNode

    cfg.TRAINER.MYTRAINER = CfgNode()
    cfg.TRAINER.MYTRAINER.PREC = "bf16"
    assert SimpleTrainer.get_precision_name(None, cfg) == "bf16"


def test_rng_state_roundtrip_is_weights_only_loadable(tmp_path):
    g = torch.Generator().manual_seed(3)
    random.seed(1)
    np.random.seed(1)
    torch.manual_seed(1)
    state = ckpt.capture_rng_state({"train_x": g})
    torch.save(state, tmp_path / "s.pt")
    loaded = torch.load(tmp_path / "s.pt", weights_only=True)
    expect = (random.random(), np.random.rand(), torch.rand(1).item(), torch.rand(1, generator=g))
    random.random(), np.random.rand(), torch.rand(3), torch.rand(2, generator=g)  # noqa: B018
    ckpt.restore_rng_state(loaded, {"train_x": g})
    again = (random.random(), np.random.rand(), torch.rand(1).item(), torch.rand(1, generator=g))
    assert expect[:3] == again[:3] and torch.equal(expect[3], again[3])


def test_base_load_model_handles_missing_val_result(tmp_path, capsys):
    tb, m, opt = _base_with_models()
    logging.getLogger("dassl").setLevel(logging.INFO)
    ckpt.save_models(tb._models, tb._optims, tb._scheds, 0, str(tmp_path))
    assert (tmp_path / "prompt" / "checkpoint").read_text().strip() == "model.pth.tar-1"
    TrainerBase.load_model(tb, str(tmp_path), epoch=1)  # P4: val_result None must not crash
    assert "val_result=None" in capsys.readouterr().out
    # No model-best (the run did not select by val): the final weights are the last save.
    TrainerBase.load_model(tb, str(tmp_path))
    assert "model.pth.tar-1 to prompt" in capsys.readouterr().out
    with pytest.raises(FileNotFoundError, match="model.pth.tar-7"):
        TrainerBase.load_model(tb, str(tmp_path), epoch=7)
    TrainerBase.load_model(tb, "")
    assert "load_model() is skipped" in capsys.readouterr().out


def test_metric_writer_without_tensorboard(tmp_path, monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    monkeypatch.setattr("dassl.engine.metric_writer._TB_WARNED", False)
    monkeypatch.setattr(logging.getLogger("dassl"), "propagate", True)
    with caplog.at_level(logging.WARNING, logger="dassl"):
        w = MetricWriter(str(tmp_path / "tb"), str(tmp_path / "metrics.jsonl"))
        MetricWriter(str(tmp_path / "tb"), None).close()
    assert caplog.text.count("tensorboard is not installed") == 1
    w.add_scalar("train/loss", 1.0, 0)  # no-op, no error
    w.log_train_epoch(1, {"loss": torch.tensor(0.5)}, 0.01)
    w.log_test("val", 1, {"accuracy": 50.0, "bad": float("nan")})
    w.close()
    recs = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert recs[0]["losses"] == {"loss": 0.5} and recs[0]["lr"] == 0.01
    assert recs[1]["split"] == "val" and recs[1]["results"]["bad"] == "nan"


def test_build_trainer_unknown_name():
    cfg = get_cfg_default()
    cfg.TRAINER.NAME = "NoSuchTrainer"
    with pytest.raises(ValueError, match="NoSuchTrainer"):
        build_trainer(cfg)
    assert "NoSuchTrainer" not in TRAINER_REGISTRY
