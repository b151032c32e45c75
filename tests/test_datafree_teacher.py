"""The teacher of a synthesis: a CLIP alone, or a PromptKD teacher run on top of it."""

from __future__ import annotations

import os

import pytest
import torch

import clip
from clip.clip import _MODELS, read_state_dict
from clip.model import build_visual
from datafree.classnames import ClassListError
from datafree.teacher import load_teacher
from datasets.toy_render import CLASSNAMES
from trainers.class_vectors import save_class_vectors


@pytest.fixture(scope="module")
def teacher_run(tmp_path_factory):
    """A run dir in PromptKDTeacher's layout: vision prompts (depth 2, 2 tokens) + class vectors."""
    run = tmp_path_factory.mktemp("teacher_run")
    sd, _ = read_state_dict(_MODELS["toy-teacher"])
    g = torch.Generator().manual_seed(0)
    ckpt_sd = {
        "image_encoder." + k[len("visual.") :]: v for k, v in sd.items() if k.startswith("visual.")
    }
    ckpt_sd["image_encoder.VPT"] = 0.5 * torch.randn(2, 128, generator=g)
    ckpt_sd["image_encoder.transformer.resblocks.1.VPT_shallow"] = 0.5 * torch.randn(
        2, 128, generator=g
    )
    ckpt_sd["prompt_learner.ctx"] = torch.zeros(2, 128)  # text prompts: not used here
    os.makedirs(run / "VLPromptLearner")
    torch.save({"state_dict": ckpt_sd, "epoch": 1}, run / "VLPromptLearner" / "model.pth.tar-1")
    vectors = torch.randn(len(CLASSNAMES), 128, generator=g)
    n = len(CLASSNAMES)
    save_class_vectors(
        str(run / "class_vectors.safetensors"),
        vectors,
        CLASSNAMES,
        base_classes=range(n // 2),
        new_classes=range(n // 2, n),
        logit_scale=50.0,
    )
    return str(run), ckpt_sd, vectors


def test_clip_alone_uses_plain_prompts():
    t = load_teacher("toy-teacher", CLASSNAMES[:3])
    model, _ = clip.load("toy-teacher")
    text = model.encode_text(clip.tokenize([f"a photo of a {c}." for c in CLASSNAMES[:3]])).float()
    torch.testing.assert_close(t.class_vectors, text / text.norm(dim=-1, keepdim=True))
    assert t.resolution == 32 and not any(p.requires_grad for p in t.parameters())


def test_teacher_run_brings_vision_prompts_and_class_vectors(teacher_run):
    run, ckpt_sd, vectors = teacher_run
    t = load_teacher("toy-teacher", CLASSNAMES, run=run)
    design = {
        "trainer": "IVLP",
        "vision_depth": 2,
        "vision_ctx": 2,
        "language_depth": 0,
        "language_ctx": 0,
    }
    ref = build_visual(
        {
            "visual." + k[len("image_encoder.") :]: v
            for k, v in ckpt_sd.items()
            if k.startswith("image_encoder.")
        },
        design,
    ).float()
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        expected = ref((x - t.mean) / t.std)
        plain = load_teacher("toy-teacher", CLASSNAMES).image_features(x)
        got = t.image_features(x)
    torch.testing.assert_close(
        got, expected / expected.norm(dim=-1, keepdim=True), rtol=1e-4, atol=1e-5
    )
    assert (got - plain).abs().max() > 1e-3  # the prompts matter
    torch.testing.assert_close(t.class_vectors, vectors / vectors.norm(dim=-1, keepdim=True))
    assert t.logit_scale == 50.0


def test_teacher_run_of_another_class_list_fails(teacher_run):
    run, _, _ = teacher_run
    with pytest.raises(ClassListError, match="not that of dataset Pets.*index 0"):
        load_teacher("toy-teacher", ["abyssinian", "beagle"], run=run, dataset="Pets")
