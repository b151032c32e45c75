"""OpenCLIP checkpoints through clip.load("open_clip:ARCH@WEIGHTS"), checked against open_clip."""

import json
import re
import shutil

import pytest
import torch
from safetensors.torch import save_file

import clip
from clip.errors import InvalidModelError, ModelNotFoundError
from clip.model import build_visual
from clip.open_clip_convert import model_config, preprocess_cfg, tower_cfgs
from clip.preprocess import input_mismatches
from clip.testing import fake_hf_cache, tiny_open_clip_model
from dassl.utils.errors import UserInputError

TEXT = {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 4, "layers": 2}
VISION = {"image_size": 16, "layers": 2, "width": 48, "head_width": 16, "patch_size": 8}
CONFIGS = {
    # GELU, LayerScale, average pooling with LayerNorm after it, no ln_pre, eps and MLP ratio.
    "gelu-ls-avg": {
        "embed_dim": 24,
        "vision_cfg": {
            **VISION,
            "mlp_ratio": 2.5,
            "ls_init_value": 0.5,
            "pool_type": "avg",
            "final_ln_after_pool": True,
            "no_ln_pre": True,
            "norm_kwargs": {"eps": 1e-6},
            "patch_dropout": 0.5,  # training-time only: no effect on features
        },
        "text_cfg": {**TEXT, "ls_init_value": 0.3, "mlp_ratio": 3.0},
        "preprocess_cfg": {"mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]},
    },
    # QuickGELU (the -quickgelu configs), class-token pooling, EOS text pooling, no causal mask.
    "quickgelu-eos": {
        "embed_dim": 24,
        "quick_gelu": True,
        "vision_cfg": {**VISION, "pool_type": "avg"},
        "text_cfg": {**TEXT, "pool_type": "eos", "eos_id": 49407, "no_causal_mask": True},
    },
    # Plain ViT-H/14-style defaults (GELU, tok, argmax).
    "defaults": {"embed_dim": 24, "vision_cfg": VISION, "text_cfg": TEXT},
    # ModifiedResNet image tower (OpenCLIP's RN50 family): heads = 32 * width // head_width.
    "resnet": {
        "embed_dim": 24,
        "vision_cfg": {"image_size": 32, "layers": [1, 1, 1, 1], "width": 8, "head_width": 32},
        "text_cfg": TEXT,
    },
}
IVLP = {"trainer": "IVLP", "vision_depth": 2, "language_depth": 2}
IVLP |= {"vision_ctx": 2, "language_ctx": 2}


def _rel(a, b):
    return float((a - b).abs().max() / b.abs().max())


@pytest.fixture(scope="module")
def inputs():
    torch.manual_seed(0)
    return torch.randn(3, 3, 16, 16), clip.tokenize(["a photo of a dog.", "x", "two words"])


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """Each config as a JSON file with its OpenCLIP model, in three checkpoint flavours."""
    root = tmp_path_factory.mktemp("open_clip")
    out = {}
    for i, (name, config) in enumerate(CONFIGS.items()):
        cfg_path = root / f"{name}.json"
        cfg_path.write_text(json.dumps(config))
        model = tiny_open_clip_model(config, seed=i)
        sd = model.state_dict()
        flavours = {
            "plain": root / f"{name}.pt",
            "wrapped": root / f"{name}-ddp.pt",
            "safetensors": root / f"{name}.safetensors",
        }
        torch.save(sd, flavours["plain"])
        wrapped = {"state_dict": {"module." + k: v for k, v in sd.items()}, "epoch": 3}
        torch.save(wrapped, flavours["wrapped"])
        save_file({k: v.contiguous() for k, v in sd.items()}, flavours["safetensors"])
        out[name] = (str(cfg_path), model, {k: str(v) for k, v in flavours.items()})
    return out


def _assert_equal_features(ours, theirs, images, ids):
    size = ours.visual.input_resolution
    images = torch.nn.functional.interpolate(images, size=(size, size)) if size != 16 else images
    with torch.no_grad():
        assert _rel(ours.encode_image(images), theirs.encode_image(images)) <= 1e-5
        assert _rel(ours.encode_text(ids), theirs.encode_text(ids)) <= 1e-5


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_features_equal_open_clip(saved, inputs, name):
    cfg_path, reference, files = saved[name]
    for flavour in ("plain", "wrapped", "safetensors"):
        model, _ = clip.load(f"open_clip:{cfg_path}@{files[flavour]}")
        _assert_equal_features(model, reference, *inputs)
    assert torch.equal(model.logit_scale, reference.logit_scale)


def test_options_reach_the_towers(saved):
    model, preprocess = clip.load(
        "open_clip:{}@{}".format(saved["gelu-ls-avg"][0], saved["gelu-ls-avg"][2]["plain"])
    )
    block = model.visual.transformer.resblocks[0]
    assert isinstance(block.mlp.gelu, torch.nn.GELU) and block.mlp.c_fc.out_features == 120
    assert block.ls_1.gamma.shape == (48,) and block.attn.num_heads == 3
    assert isinstance(model.visual.ln_pre, torch.nn.Identity) and model.visual.ln_post.eps == 1e-6
    assert model.preprocess_cfg.mean == (0.5, 0.5, 0.5) and preprocess.transforms[-1].mean == (
        0.5,
        0.5,
        0.5,
    )
    quick, _ = clip.load(
        "open_clip:{}@{}".format(saved["quickgelu-eos"][0], saved["quickgelu-eos"][2]["plain"])
    )
    assert type(quick.transformer.resblocks[0].mlp.gelu).__name__ == "QuickGELU"
    assert quick.transformer.resblocks[0].attn_mask is None and quick.text_cfg.pool == "eos"


def test_preprocess_equals_open_clip_transform(saved):
    from open_clip.transform import image_transform
    from PIL import Image

    model, preprocess = clip.load(
        "open_clip:{}@{}".format(saved["gelu-ls-avg"][0], saved["gelu-ls-avg"][2]["plain"])
    )
    theirs = image_transform(16, is_train=False, mean=(0.5,) * 3, std=(0.5,) * 3)
    image = Image.fromarray((torch.rand(23, 31, 3) * 255).byte().numpy())
    assert torch.allclose(preprocess(image), theirs(image), atol=1e-6)
    from yacs.config import CfgNode

    node = CfgNode({"PIXEL_MEAN": [0.5] * 3, "PIXEL_STD": [0.5] * 3, "INTERPOLATION": "bicubic"})
    assert input_mismatches(node, model.preprocess_cfg) == []
    node.PIXEL_STD, node.INTERPOLATION = [0.5, 0.5, 0.25], "bilinear"
    assert [m.split(" ")[0] for m in input_mismatches(node, model.preprocess_cfg)] == [
        "INPUT.PIXEL_STD",
        "INPUT.INTERPOLATION",
    ]


def test_prompts_at_depth_zero_equal_and_prompted_variant_trains_prompts_only(saved, inputs):
    cfg_path, reference, files = saved["gelu-ls-avg"]
    name = f"open_clip:{cfg_path}@{files['plain']}"
    for trainer in ("IVLP", "VPT"):
        details = {**IVLP, "trainer": trainer, "vision_depth": 0, "language_depth": 0}
        _assert_equal_features(clip.load(name, design_details=details)[0], reference, *inputs)
    model, _ = clip.load(name, design_details=IVLP)
    prompts = {n for n, _ in model.named_parameters() if "VPT" in n}
    assert prompts == {
        "visual.VPT",
        "visual.transformer.resblocks.1.VPT_shallow",
        "transformer.resblocks.1.VPT_shallow",
    }
    for n, p in model.named_parameters():
        p.requires_grad_(n in prompts)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    images, ids = inputs
    with torch.no_grad():
        plain = reference.encode_image(images)
    loss = (model.encode_image(images) - plain).square().sum() + model.encode_text(ids).sum()
    loss.backward()
    torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1.0).step()
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert changed == prompts
    # MaPLe's outside prompts run on a converted tower too.
    maple, _ = clip.load(name, design_details={"trainer": "MaPLe", "maple_length": 2})
    ctx = torch.zeros(2, 48)
    out = maple.encode_image(images, shared_ctx=ctx, deep_prompts=[torch.zeros(2, 48)])
    assert out.shape == (3, 24) and not torch.allclose(out, plain)


def test_teacher_tower_takes_the_architecture_from_the_name(saved, inputs):
    cfg_path, reference, files = saved["gelu-ls-avg"]
    name = f"open_clip:{cfg_path}@{files['plain']}"
    src = clip.clip.resolve_clip(name, weights=False)
    assert src.state_dict is None and src.vision_cfg.pool == "avg"
    sd = clip.clip.resolve_clip(name).state_dict
    visual = build_visual(sd, None, src.vision_cfg)
    with torch.no_grad():
        assert _rel(visual(inputs[0]), reference.encode_image(inputs[0])) <= 1e-5


def test_installed_config_names():
    vision, text = tower_cfgs(*model_config("ViT-H-14"))
    assert (vision.width, vision.layers, vision.heads, vision.patch_size) == (1280, 32, 16, 14)
    assert vision.mlp_width == 5120 and vision.act == "gelu" and vision.output_dim == 1024
    assert (text.width, text.heads, text.layers, text.act) == (1024, 16, 24, "gelu")
    vision, _ = tower_cfgs(*model_config("ViT-g-14"))
    assert (vision.width, vision.heads, vision.mlp_width) == (1408, 16, 6144)
    vision, text = tower_cfgs(*model_config("ViT-B-32-quickgelu"))
    assert vision.act == text.act == "quick_gelu" and vision.heads == 12
    vision, _ = tower_cfgs(*model_config("RN50"))
    assert vision.layers == (3, 4, 6, 3) and not vision.is_vit
    with pytest.raises(RuntimeError, match="no model config 'ViT-Q-99'"):
        model_config("ViT-Q-99")


@pytest.mark.parametrize(
    ("arch", "option"),
    [
        ("convnext_base", "vision_cfg.timm_model_name"),
        ("ViT-B-16-SigLIP", "init_logit_bias = -10, custom_text = True"),
        ("coca_ViT-B-32", "multimodal_cfg"),
        ("roberta-ViT-B-32", "text_cfg.hf_model_name = 'roberta-base'"),
    ],
)
def test_refuses_unsupported_installed_architectures(arch, option):
    with pytest.raises(RuntimeError, match=re.escape(option)):
        tower_cfgs(*model_config(arch))


@pytest.mark.parametrize(
    ("edit", "option"),
    [
        ({"vision_cfg": {**VISION, "attentional_pool": True}}, "vision_cfg.attentional_pool"),
        ({"vision_cfg": {**VISION, "qk_norm": True}}, "vision_cfg.qk_norm"),
        ({"text_cfg": {**TEXT, "hf_model_name": "roberta-base"}}, "text_cfg.hf_model_name"),
        ({"text_cfg": {**TEXT, "embed_cls": True}}, "text_cfg.embed_cls"),
        ({"text_cfg": {**TEXT, "pool_type": "last"}}, "text_cfg.pool_type"),
        ({"init_logit_bias": -10}, "init_logit_bias"),
        ({"vision_cfg": {**VISION, "wibble": 1}}, "vision_cfg.wibble = 1 (unknown OpenCLIP option"),
        ({"preprocess_cfg": {"resize_mode": "squash"}}, "preprocess_cfg.resize_mode"),
    ],
)
def test_refusals_name_the_option(saved, tmp_path, edit, option):
    cfg_path = tmp_path / "bad.json"
    cfg_path.write_text(json.dumps({**CONFIGS["defaults"], **edit}))
    weights = saved["defaults"][2]["plain"]
    with pytest.raises(InvalidModelError, match=re.escape(option)) as err:
        clip.load(f"open_clip:{cfg_path}@{weights}")
    assert isinstance(err.value, UserInputError)  # train.py: one line, exit status 2


def test_bad_names_and_checkpoints(saved, tmp_path):
    cfg_path, _, files = saved["defaults"]
    with pytest.raises(RuntimeError, match="expected open_clip:ARCH@WEIGHTS"):
        clip.load(f"open_clip:{cfg_path}")
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        clip.load(f"open_clip:{cfg_path}@{tmp_path / 'missing.pt'}")
    layer_scale = tmp_path / "ls.json"  # LayerScale gammas that the checkpoint lacks
    layer_scale.write_text(
        json.dumps({**CONFIGS["defaults"], "text_cfg": {**TEXT, "ls_init_value": 1}})
    )
    with pytest.raises(RuntimeError, match="missing keys .*transformer.resblocks.0.ls_1.gamma"):
        clip.load(f"open_clip:{layer_scale}@{files['plain']}")
    other = saved["gelu-ls-avg"][2]["plain"]
    with pytest.raises(RuntimeError, match="(?s)does not fit the architecture: .*size mismatch"):
        clip.load(f"open_clip:{cfg_path}@{other}")
    text_layout = tmp_path / "custom_text.pt"
    torch.save({"text.token_embedding.weight": torch.zeros(2)}, text_layout)
    with pytest.raises(RuntimeError, match="CustomTextCLIP"):
        clip.load(f"open_clip:{cfg_path}@{text_layout}")


def test_open_clip_hub_repos_from_the_local_cache(saved, inputs, tmp_path, monkeypatch):
    cfg_path, reference, files = saved["gelu-ls-avg"]
    config = json.load(open(cfg_path))
    repo = tmp_path / "repo"
    repo.mkdir()
    preprocess = config.pop("preprocess_cfg")
    (repo / "open_clip_config.json").write_text(
        json.dumps({"model_cfg": config, "preprocess_cfg": preprocess})
    )
    shutil.copy(files["safetensors"], repo / "open_clip_model.safetensors")
    fake_hf_cache(tmp_path / "hub", "org/tiny-open-clip", repo)
    (repo / "open_clip_model.safetensors").unlink()
    fake_hf_cache(tmp_path / "hub", "org/no-weights", repo)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    model, _ = clip.load("open_clip:hf-hub:org/tiny-open-clip")
    _assert_equal_features(model, reference, *inputs)
    assert model.preprocess_cfg.mean == (0.5, 0.5, 0.5) and model.vision_cfg.pool == "avg"
    model, _ = clip.load(f"open_clip:{cfg_path}@hf-hub:org/tiny-open-clip")
    _assert_equal_features(model, reference, *inputs)
    with pytest.raises(RuntimeError, match="has none of .*open_clip_pytorch_model.bin"):
        clip.load("open_clip:hf-hub:org/no-weights")
    with pytest.raises(RuntimeError, match="not in the local Hugging Face cache"):
        clip.load("open_clip:hf-hub:org/missing")


def test_every_installed_config_converts_or_is_refused_by_name():
    import open_clip

    converted = []
    for name in open_clip.list_models():
        config, where = model_config(name)
        try:
            vision, _ = tower_cfgs(config, where)
        except InvalidModelError as err:
            assert "unsupported: " in str(err)  # the message names the options
            continue
        preprocess_cfg(config, vision.image_size, where)
        converted.append(name)
    standard = {"ViT-B-32", "ViT-B-16", "ViT-L-14", "ViT-L-14-336", "ViT-H-14", "ViT-g-14"}
    assert standard | {"ViT-bigG-14", "ViT-H-14-378-quickgelu", "RN50"} <= set(converted)
