"""Hugging Face CLIPModel snapshots through clip.load, checked against transformers itself."""

import json
import os
import shutil
import sys

import pytest
import torch

import clip
from clip.errors import ModelNotFoundError
from clip.simple_tokenizer import SimpleTokenizer
from clip.testing import fake_hf_cache, tiny_hf_clip_snapshot

TEXTS = [
    "a photo of a cat.",
    "Hello, World!  it's 2024 - naive cafe",
    "a_b c-d 3.5%  x",
    "  multiple   spaces\tand\nnewlines ",
    "ÀÉÎ café naïve",
]
IVLP = {"trainer": "IVLP", "vision_depth": 2, "language_depth": 2, "vision_ctx": 2}
IVLP["language_ctx"] = 2


def _rel(a, b):
    return float((a - b).abs().max() / b.abs().max())


def _features(out):
    """transformers 5 returns a model output with the projected ``pooler_output``."""
    return out.pooler_output if hasattr(out, "pooler_output") else out


@pytest.fixture(scope="module")
def snapshot(tmp_path_factory):
    # Text: exact GELU, eps 1e-6, MLP 96 (not 4x), 4 heads of 16; vision: QuickGELU, 3 heads.
    path = tmp_path_factory.mktemp("hf") / "tiny-clip"
    model = tiny_hf_clip_snapshot(
        path,
        text_config={"hidden_act": "gelu", "layer_norm_eps": 1e-6},
        preprocessor={
            "crop_size": {"height": 16, "width": 16},
            "size": {"shortest_edge": 18},
            "image_mean": [0.5, 0.4, 0.3],
            "image_std": [0.2, 0.25, 0.3],
            "resample": 2,
        },
    )
    return str(path), model


@pytest.fixture(scope="module")
def inputs():
    torch.manual_seed(0)
    return torch.randn(3, 3, 16, 16), clip.tokenize(TEXTS)


def _assert_equal_features(ours, hf_model, images, ids, hf_ids=None):
    with torch.no_grad():
        ref_img = _features(hf_model.get_image_features(pixel_values=images))
        ref_txt = _features(hf_model.get_text_features(input_ids=ids if hf_ids is None else hf_ids))
        assert _rel(ours.encode_image(images), ref_img) <= 1e-5
        assert _rel(ours.encode_text(ids), ref_txt) <= 1e-5


def test_snapshot_features_equal_transformers(snapshot, inputs):
    path, hf_model = snapshot
    model, _ = clip.load(path)
    assert model.vision_cfg.act == "quick_gelu" and model.text_cfg.act == "gelu"
    assert (
        model.text_cfg.ln_eps == 1e-6 and model.visual.transformer.resblocks[0].attn.num_heads == 3
    )
    assert model.text_cfg.pool == "eos" and model.text_cfg.eos_id == 49407
    assert torch.equal(model.logit_scale, hf_model.logit_scale)
    _assert_equal_features(model, hf_model, *inputs)


def test_depth_zero_prompts_equal_and_prompted_variant_trains_prompts_only(snapshot, inputs):
    path, hf_model = snapshot
    images, ids = inputs
    for trainer in ("IVLP", "VPT", "MaPLe"):
        details = {**IVLP, "trainer": trainer, "vision_depth": 0, "language_depth": 0}
        details["maple_length"] = 2
        _assert_equal_features(clip.load(path, design_details=details)[0], hf_model, images, ids)
    model, _ = clip.load(path, design_details=IVLP)
    names = sorted(n for n, _ in model.named_parameters() if "VPT" in n)
    assert names == [
        "transformer.resblocks.1.VPT_shallow",
        "visual.VPT",
        "visual.transformer.resblocks.1.VPT_shallow",
    ]
    for n, p in model.named_parameters():
        p.requires_grad_("VPT" in n)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    optim = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1.0)
    img, txt = model.encode_image(images), model.encode_text(ids)
    (img.square().sum() + txt.square().sum()).backward()
    optim.step()
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert changed == set(names)


def test_hf_tokenizer_from_our_vocabulary_gives_our_ids(snapshot, inputs, tmp_path):
    from transformers import CLIPTokenizer

    tok = SimpleTokenizer()
    with open(tmp_path / "vocab.json", "w") as f:
        json.dump(tok.encoder, f)
    merges = sorted(tok.bpe_ranks, key=tok.bpe_ranks.get)
    with open(tmp_path / "merges.txt", "w", encoding="utf-8") as f:
        f.write("#version: 0.2\n" + "\n".join(" ".join(m) for m in merges) + "\n")
    hf_tok = CLIPTokenizer(str(tmp_path / "vocab.json"), str(tmp_path / "merges.txt"))
    hf_ids = hf_tok(TEXTS, padding="max_length", max_length=77, return_tensors="pt").input_ids
    ids = inputs[1]
    for ours, theirs in zip(ids, hf_ids):
        n = int((ours != 0).sum())
        assert ours[:n].tolist() == theirs[:n].tolist()
        assert (theirs[n:] == hf_tok.pad_token_id).all()  # HF pads with EOT, we with 0
    # ...and features agree although the padding differs (pooling takes the first EOT).
    path, hf_model = snapshot
    _assert_equal_features(clip.load(path)[0], hf_model, inputs[0], ids, hf_ids)


def test_preprocessing_from_preprocessor_config(snapshot):
    model, preprocess = clip.load(snapshot[0])
    cfg = model.preprocess_cfg
    assert (cfg.size, cfg.resize, cfg.interpolation) == (16, 18, "bilinear")
    assert cfg.mean == (0.5, 0.4, 0.3) and cfg.std == (0.2, 0.25, 0.3)
    resize, crop = preprocess.transforms[0], preprocess.transforms[1]
    assert resize.size == 18 and crop.size == (16, 16)


def test_pytorch_model_bin_and_legacy_eos(snapshot, inputs, tmp_path):
    path, hf_model = snapshot
    legacy = tmp_path / "bin"
    legacy.mkdir()
    torch.save(hf_model.state_dict(), legacy / "pytorch_model.bin")
    config = json.load(open(os.path.join(path, "config.json")))
    config["text_config"]["eos_token_id"] = 2  # pre-2023 configs: HF pools at argmax(ids)
    json.dump(config, open(legacy / "config.json", "w"))
    model, _ = clip.load(str(legacy))
    assert model.text_cfg.pool == "argmax" and model.preprocess_cfg.size == 16
    _assert_equal_features(model, hf_model, *inputs)


def test_hf_hub_names_resolve_offline_through_the_cache(snapshot, inputs, tmp_path, monkeypatch):
    path, hf_model = snapshot
    fake_hf_cache(tmp_path / "hub", "tiny-org/tiny-clip", path)
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    model, _ = clip.load("hf-hub:tiny-org/tiny-clip")
    _assert_equal_features(model, hf_model, *inputs)
    assert clip.clip.resolve_clip("hf-hub:tiny-org/tiny-clip@main", weights=False).path.endswith(
        "snapshots/0123456789abcdef0123456789abcdef01234567"
    )
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "elsewhere"))
    with pytest.raises(ModelNotFoundError, match="not in the local Hugging Face cache .*elsewhere"):
        clip.load("hf-hub:tiny-org/tiny-clip")
    with pytest.raises(RuntimeError, match="expected hf-hub:ORG/NAME"):
        clip.load("hf-hub:no-slash")


def test_refuses_other_models_and_foreign_weights(snapshot, tmp_path):
    path, hf_model = snapshot
    other = tmp_path / "siglip"
    other.mkdir()
    json.dump({"model_type": "siglip"}, open(other / "config.json", "w"))
    with pytest.raises(RuntimeError, match="model_type is 'siglip'"):
        clip.load(str(other))
    extra = tmp_path / "extra"
    shutil.copytree(path, extra)
    sd = dict(hf_model.state_dict())
    sd["vision_model.head.weight"] = torch.zeros(2)
    (extra / "model.safetensors").unlink()
    torch.save(sd, extra / "pytorch_model.bin")
    with pytest.raises(RuntimeError, match="vision_model.head.weight"):
        clip.load(str(extra))
    with pytest.raises(RuntimeError, match="pass its snapshot directory"):
        clip.load(os.path.join(path, "model.safetensors"))
    empty = tmp_path / "empty"
    shutil.copytree(path, empty)
    (empty / "model.safetensors").unlink()
    with pytest.raises(RuntimeError, match="has no weights"):
        clip.load(str(empty))
    small = tmp_path / "small_vocab"
    shutil.copytree(path, small)
    config = json.load(open(small / "config.json"))
    config["text_config"]["vocab_size"] = 1000
    json.dump(config, open(small / "config.json", "w"))
    with pytest.raises(RuntimeError, match="vocab_size 1000"):
        clip.load(str(small))


def test_vit_h14_teacher_config_is_the_vit_l14_recipe_on_the_laion_snapshot(tmp_path, monkeypatch):
    import yaml

    import train

    folder = "configs/trainers/PromptSRC/"
    config_file = folder + "vit_h14_openclip_c2_ep20_batch8_4+4ctx.yaml"
    vit_h = yaml.safe_load(open(config_file))
    vit_l = yaml.safe_load(open(folder + "vit_l14_c2_ep20_batch8_4+4ctx.yaml"))
    name = vit_h["MODEL"]["BACKBONE"].pop("NAME")
    vit_l["MODEL"]["BACKBONE"].pop("NAME")
    assert name == "hf-hub:laion/CLIP-ViT-H-14-laion2B-s32B-b79K" and vit_h == vit_l
    argv = [
        "--trainer",
        "PromptKDTeacher",
        "--config-file",
        config_file,
        "--output-dir",
        str(tmp_path),
    ]
    cfg = train.setup_cfg(train.build_parser().parse_args(argv))
    assert cfg.MODEL.BACKBONE.NAME == name
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    with pytest.raises(RuntimeError, match="huggingface-cli download laion/CLIP-ViT-H-14"):
        clip.load(name)


def test_missing_optional_packages_are_named(snapshot, monkeypatch):
    from clip.errors import OptionalDependencyError

    monkeypatch.setitem(sys.modules, "transformers", None)  # import fails as if not installed
    with pytest.raises(OptionalDependencyError, match="pip install transformers"):
        clip.load(snapshot[0])
    monkeypatch.setitem(sys.modules, "open_clip", None)
    with pytest.raises(OptionalDependencyError, match="open_clip_torch"):
        clip.load("open_clip:ViT-B-32@weights.pt")
