"""The extension surface of the engine: config defaults on the trainer class, LR stepping owned
by the engine, lenient class-name buffers on load, per-domain evaluation in the one loop."""

import json
import os

import pytest
import torch
from torch import nn
from yacs.config import CfgNode as CN

import train
from dassl.config import get_cfg_default
from dassl.data.datasets import DATASET_REGISTRY, Datum
from dassl.engine import TRAINER_REGISTRY, TrainerBase, build_trainer
from dassl.engine.build import add_config_defaults
from tests.test_train_helpers import EngineToyData, ToyCoOp, make_image_folder, write_trainer_yaml


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("ext") / "data"
    make_image_folder(str(root), n_train=4, n_val=1, n_test=2)
    return str(root)


def _cfg(data_root, out, trainer="ToyCoOp", *opts, flags=()):
    yaml = write_trainer_yaml(os.path.join(out, "toy.yaml"), max_epoch=2)
    argv = ["--root", data_root, "--seed", "1", "--trainer", trainer, "--config-file", yaml]
    argv += [*flags, "--output-dir", out, "DATASET.NAME", "EngineToyData", "USE_CUDA", "False"]
    return train.setup_cfg(train.build_parser().parse_args([*argv, *opts]))


def test_config_defaults_nodes_and_keys_never_overwrite():
    cfg = CN({"TRAINER": CN({"A": CN({"X": 5})})})
    add_config_defaults(cfg, {"TRAINER.A": {"X": 1, "Y": 2}, "TRAINER.B.Z": "z", "TEST.K": 3})
    assert (cfg.TRAINER.A.X, cfg.TRAINER.A.Y, cfg.TRAINER.B.Z, cfg.TEST.K) == (5, 2, "z", 3)
    full = train.trainers.extend_cfg(get_cfg_default())  # every registered trainer's node
    for node in ("COOP", "COCOOP", "IVLP", "VPT", "MAPLE", "PROMPTSRC", "PROMPTKD", "ZSCLIP"):
        assert "PREC" in full.TRAINER[node], node
    assert full.TRAINER.VPT.PROMPT_DEPTH_VISION == 1 and full.TRAINER.MODAL == "base2novel"


class _NoLRStep(ToyCoOp):  # a trainer that leaves LR stepping to the engine
    def forward_backward(self, batch):
        image, label = self.parse_batch_train(batch)
        loss = nn.functional.cross_entropy(self.model(image), label)
        self.model_backward_and_update(loss)
        return {"loss": loss.item()}


@pytest.mark.parametrize(
    "cls,interval", [(ToyCoOp, "epoch"), (_NoLRStep, "epoch"), (_NoLRStep, "iter")]
)
def test_engine_steps_the_scheduler_once_per_epoch_or_iteration(
    data_root, tmp_path, monkeypatch, cls, interval
):
    cfg = _cfg(data_root, str(tmp_path), "ToyCoOp", "TEST.NO_TEST", "True")
    trainer = cls(cfg)
    trainer.sched.interval = interval
    calls, step = [], type(trainer.sched).step

    def counting_step(sched, *args):
        calls.append(trainer.batch_idx)
        return step(sched, *args)

    monkeypatch.setattr(type(trainer.sched), "step", counting_step)
    trainer.train()
    n = len(trainer.train_loader_x)
    expected = list(range(n)) * 2 if interval == "iter" else [n - 1, n - 1]
    assert calls == expected  # upstream's own update_lr() at the last batch is not repeated


class _Learner(nn.Module):
    def __init__(self, n_cls):
        super().__init__()
        self.ctx = nn.Parameter(torch.randn(4))
        self.register_buffer("token_prefix", torch.full((n_cls, 4), float(n_cls)))


def test_load_keeps_the_models_class_name_buffers(tmp_path):
    d = tmp_path / "run" / "prompt_learner"
    d.mkdir(parents=True)
    saved = _Learner(19)  # trained on 19 base classes, evaluated on 18 new ones
    torch.save({"state_dict": saved.state_dict(), "epoch": 3}, d / "model-best.pth.tar")
    tb = TrainerBase()
    tb.register_model("prompt_learner", _Learner(18))
    tb.load_model(str(tmp_path / "run"))
    model = tb._models["prompt_learner"]
    assert torch.equal(model.ctx, saved.ctx) and model.token_prefix.shape == (18, 4)
    assert torch.all(model.token_prefix == 18.0) and tb.results_epoch == 3
    torch.save(
        {"state_dict": {"token_prefix": saved.token_prefix}, "epoch": 3}, d / "model-best.pth.tar"
    )
    with pytest.raises(RuntimeError, match="ctx"):  # everything else stays strict
        tb.load_model(str(tmp_path / "run"))


@DATASET_REGISTRY.register()
class EngineToyDomains(EngineToyData):
    """EngineToyData whose test images come from two domains (label parity), Dassl DG style."""

    def __init__(self, cfg):
        super().__init__(cfg)
        self._test = [
            Datum(impath=d.impath, label=d.label, domain=i % 2, classname=d.classname)
            for i, d in enumerate(self.test)
        ]


def test_per_domain_evaluation_through_the_one_loop(data_root, tmp_path):
    out = str(tmp_path)
    cfg = _cfg(
        data_root,
        out,
        "ToyCoOp",
        "DATASET.NAME",
        "EngineToyDomains",
        flags=("--target-domains", "sketch", "photo"),
    )
    trainer = build_trainer(cfg)
    trainer.train()
    res = json.load(open(os.path.join(out, "results.json")))
    assert set(res["domains"]) == {"sketch", "photo"}
    assert res["accuracy"] == pytest.approx(sum(res["domains"].values()) / 2, abs=1e-3)
    log = (
        open(os.path.join(out, "log.txt")).read()
        if os.path.exists(os.path.join(out, "log.txt"))
        else ""
    )
    del log
    per_domain = {s.name: len(s.items) for s in trainer_subsets(trainer)}
    assert per_domain == {"sketch": 4, "photo": 4}  # 8 test images, split by domain


def trainer_subsets(trainer):
    from dassl.engine.evaluation import eval_subsets

    return eval_subsets(trainer.dm.dataset, "domains", "all", trainer.cfg.DATASET.TARGET_DOMAINS)


def test_unknown_registry_name_lists_trainers():
    assert "VPT" in TRAINER_REGISTRY and "MaPLe" in TRAINER_REGISTRY


def test_bad_prompt_config_is_one_message_and_exit_2(toy_world, tmp_path, capsys):
    out = str(tmp_path / "vpt")
    argv = [*toy_world.flags, "--trainer", "VPT", "--output-dir", out, *toy_world.opts]
    assert train.main([*argv, "TRAINER.VPT.PROMPT_DEPTH_VISION", "0"]) == 2
    err = capsys.readouterr().err
    assert "TRAINER.VPT.PROMPT_DEPTH_VISION >= 1" in err and "Traceback" not in err
