"""Files written for the upstream code bases dropped in next to ours: a plain registration takes
the name of a built-in trainer or dataset (ours stays defined and keeps declaring its config
node), and ``from .coop import load_clip_to_cpu`` resolves to our CoOp module."""

import importlib.util
import json
import os

import pytest
import torch

import clip
import train
import trainers
from dassl.data.datasets import DATASET_REGISTRY
from dassl.engine import TRAINER_REGISTRY
from dassl.utils import Registry
from trainers.coop import load_clip_to_cpu
from trainers.zsclip import ZeroshotCLIP2 as BuiltinZeroshotCLIP2

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _classes(*names):
    return [type(n, (), {}) for n in names]


def test_registry_plain_registration_takes_a_builtin_name_in_either_order():
    reg = Registry("THING")
    ours, theirs = _classes("Alpha", "Alpha")
    reg.register(ours, builtin=True)
    reg.register(theirs)
    assert reg.get("Alpha") is theirs
    reg.register(ours, builtin=True)  # a built-in imported later does not take it back
    assert reg.get("Alpha") is theirs
    with pytest.raises(KeyError, match="already registered"):
        reg.register(_classes("Alpha")[0])  # two plain ones clash as in upstream Dassl
    reg2 = Registry("THING")
    reg2.register(ours, builtin=True)
    with pytest.raises(KeyError, match="already registered"):
        reg2.register(_classes("Alpha")[0], builtin=True)  # two built-ins: a bug of ours


UPSTREAM_TRAINERS = ["CoOp", "CoCoOp", "ZeroshotCLIP", "ZeroshotCLIP2", "MaPLe", "IVLP", "VPT"]
UPSTREAM_TRAINERS += ["PromptSRC", "PromptKD"]
UPSTREAM_DATASETS = ["OxfordPets", "OxfordFlowers", "FGVCAircraft", "DescribableTextures"]
UPSTREAM_DATASETS += ["EuroSAT", "StanfordCars", "Food101", "SUN397", "Caltech101", "UCF101"]
UPSTREAM_DATASETS += ["ImageNet", "ImageNetSketch", "ImageNetV2", "ImageNetA", "ImageNetR"]


def test_our_classes_of_upstream_names_are_builtin():
    """Every name an upstream file registers is held by a built-in of ours, so the file can take it."""
    for reg, names in (
        (TRAINER_REGISTRY, UPSTREAM_TRAINERS),
        (DATASET_REGISTRY, UPSTREAM_DATASETS),
    ):
        for name in names:
            assert name in reg and name in reg._builtin, name


def test_load_clip_to_cpu_is_upstream_coops():
    """An OpenAI checkpoint comes back as ``clip.build_model`` gives it: fp16, eval, on CPU."""
    cfg = train.setup_cfg(train.build_parser().parse_args(["MODEL.BACKBONE.NAME", "toy-teacher"]))
    model = load_clip_to_cpu(cfg)
    ref, _ = clip.load("toy-teacher", device="cpu")  # fp32 on CPU
    assert model.dtype == torch.float16 and not model.training
    assert next(model.parameters()).device.type == "cpu"
    tokens = clip.tokenize(["a photo of a red circle.", "a photo of a blue ring."])
    with torch.no_grad():
        ours, want = model.encode_text(tokens).float(), ref.encode_text(tokens)
    torch.testing.assert_close(ours, want, atol=2e-2, rtol=2e-2)


@pytest.fixture
def dropin():
    """tests/upstream_trainers/zsclip_dropin.py imported as ``trainers.<name>`` (as if copied into
    trainers/); the registry is restored afterwards."""
    path = os.path.join(ROOT, "tests", "upstream_trainers", "zsclip_dropin.py")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(TRAINER_REGISTRY, "_obj_map", dict(TRAINER_REGISTRY._obj_map))
        mp.setattr(TRAINER_REGISTRY, "_builtin", set(TRAINER_REGISTRY._builtin))
        spec = importlib.util.spec_from_file_location("trainers.zsclip_dropin", path)
        module = importlib.util.module_from_spec(spec)
        mp.setitem(__import__("sys").modules, spec.name, module)
        spec.loader.exec_module(module)
        yield module


def test_dropin_file_takes_the_builtin_name_and_runs(dropin, toy_world, tmp_path):
    assert TRAINER_REGISTRY.get("ZeroshotCLIP2") is dropin.ZeroshotCLIP2
    assert dropin.ZeroshotCLIP2 is not BuiltinZeroshotCLIP2
    assert trainers.extend_cfg(train.get_cfg_default()).TRAINER.ZSCLIP  # ours still declares it
    out = str(tmp_path / "zs")
    argv = [*toy_world.flags, "--trainer", "ZeroshotCLIP2", "--output-dir", out, "--eval-only"]
    argv += [*toy_world.opts, "MODEL.BACKBONE.NAME", "toy-teacher"]
    assert train.main(argv) == 0
    res = json.load(open(os.path.join(out, "results.json")))
    assert res["trainer"] == "ZeroshotCLIP2" and 0 <= res["accuracy"] <= 100


def test_dropin_dataset_takes_the_builtin_name_and_uses_our_helpers(tmp_path):
    """tests/upstream_trainers/textures_dropin.py imported as ``datasets.<name>``: it builds the
    split with our DTD/OxfordPets static helpers, which a second build reads back."""
    from dassl.data.datasets import build_dataset
    from datasets.dtd import DescribableTextures as BuiltinDTD
    from tests.fake_datasets import make_cfg, make_dtd

    fake = make_dtd(str(tmp_path))
    path = os.path.join(ROOT, "tests", "upstream_trainers", "textures_dropin.py")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(DATASET_REGISTRY, "_obj_map", dict(DATASET_REGISTRY._obj_map))
        mp.setattr(DATASET_REGISTRY, "_builtin", set(DATASET_REGISTRY._builtin))
        spec = importlib.util.spec_from_file_location("datasets.textures_dropin", path)
        module = importlib.util.module_from_spec(spec)
        mp.setitem(__import__("sys").modules, spec.name, module)
        spec.loader.exec_module(module)
        assert DATASET_REGISTRY.get("DescribableTextures") is module.DescribableTextures
        assert module.DescribableTextures is not BuiltinDTD
        cfg = make_cfg(str(tmp_path), "DescribableTextures", num_shots=1, subsample="base")
        first = build_dataset(cfg)
        assert isinstance(first, module.DescribableTextures) and os.path.exists(fake.split_file)
        again = build_dataset(cfg)  # now read back from the written split file
    assert first.classnames == again.classnames == fake.classnames[:2]  # base of 3: first 2
    assert [d.impath for d in first.test] == [d.impath for d in again.test]
    assert len(first.train_x) == 2 and all(d.label < 2 for d in first.test)


@pytest.mark.parametrize(
    "yaml",
    [
        "CoOp/vit_b16_ep50.yaml",
        "CoCoOp/vit_b16_c4_ep10_batch1_ctxv1.yaml",
        "MaPLe/vit_b16_c2_ep5_batch4_2ctx.yaml",
        "VPT/vit_b16_c2_ep5_batch4_4.yaml",
        "PromptSRC/vit_b16_c2_ep20_batch4_4+4ctx.yaml",
    ],
)
def test_upstream_nodes_do_not_need_our_module_of_that_file_name(yaml):
    """An upstream ``coop.py``/``cocoop.py``/``maple.py``/``vpt.py``/``promptsrc.py`` copied over
    ours removes our class; its YAML must still merge (the node comes from compat_config)."""
    from dassl.config import get_cfg_default, merge_cfg_file
    from trainers.compat_config import add_compat_config

    cfg = add_compat_config(get_cfg_default())  # no trainer class's config_defaults
    merge_cfg_file(cfg, os.path.join(ROOT, "configs", "trainers", yaml))
    assert cfg.TRAINER[yaml.split("/")[0].upper()].PREC in ("fp16", "fp32", "amp")
