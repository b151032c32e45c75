"""Upstream-format teacher checkpoints: strict loading, dropped buffers, export == upstream features."""

import collections
import os

import pytest
import torch

import clip
from clip.testing import save_state_dict, tiny_vit_state_dict
from datasets.toy_render import CLASSNAMES
from datasets.toy_shapes import generate_toy_shapes
from tools.export_class_vectors import main as export_main
from trainers.class_vectors import load_class_vectors
from trainers.promptkd_student import build_teacher_visual, teacher_vision_design
from trainers.promptkd_teacher import (
    TeacherCLIP,
    load_teacher_state_dict,
    read_teacher_state_dict,
)

DESIGN = {
    "trainer": "IVLP",
    "vision_depth": 2,
    "language_depth": 2,
    "vision_ctx": 2,
    "language_ctx": 2,
}
UPSTREAM_KEYS = [
    "prompt_learner.ctx",
    "prompt_learner.token_prefix",
    "prompt_learner.token_suffix",
    "image_encoder.VPT",
    "image_encoder.transformer.resblocks.1.VPT_shallow",
    "image_encoder.conv1.weight",
    "text_encoder.transformer.resblocks.1.VPT_shallow",
    "text_encoder.positional_embedding",
    "text_encoder.ln_final.weight",
    "text_encoder.text_projection",
    "logit_scale",
]


class Scheduler:  # stands in for the pickled objects upstream Dassl puts in checkpoints
    def __init__(self):
        self.last_epoch = 20


@pytest.fixture(scope="module")
def upstream_ckpt(tmp_path_factory):
    base = tmp_path_factory.mktemp("upstream")
    path = save_state_dict(tiny_vit_state_dict(embed_dim=48, width=128, seed=3), base / "t.pt")
    model, _ = clip.load(path, design_details=DESIGN)
    teacher = TeacherCLIP(model, CLASSNAMES[:18], 2, "a photo of a")
    with torch.no_grad():  # "trained" prompts, different from a fresh init
        for n, p in teacher.named_parameters():
            if "VPT" in n or n.endswith("ctx"):
                p.add_(torch.randn_like(p))
    sd = collections.OrderedDict(
        ("module." + k if i == 0 else k, v) for i, (k, v) in enumerate(teacher.state_dict().items())
    )
    zs, _ = clip.load(path)
    for k, v in zs.visual.state_dict().items():  # upstream PromptSRC keeps a frozen ZS copy
        sd["prompt_learner.ZS_image_encoder." + k] = v
    sd["prompt_learner.token_prefix2"] = torch.zeros(1)
    d = base / "run" / "VLPromptLearner"
    d.mkdir(parents=True)
    ckpt = d / "model-best.pth.tar"
    torch.save({"state_dict": sd, "epoch": 20, "scheduler": Scheduler(), "val_result": 90.0}, ckpt)
    return {"base": base, "clip": path, "ckpt": str(ckpt), "teacher": teacher}


def test_upstream_key_names(upstream_ckpt):
    keys = set(upstream_ckpt["teacher"].state_dict())
    assert set(UPSTREAM_KEYS) <= keys
    assert "prompt_learner.tokenized_prompts" not in keys
    assert not any(k.startswith("text_encoder.token_embedding") for k in keys)


def test_strict_load_of_upstream_checkpoint(upstream_ckpt):
    sd, file, epoch = read_teacher_state_dict(str(upstream_ckpt["base"] / "run"))
    assert file == upstream_ckpt["ckpt"] and epoch == 20
    assert not any(
        k.startswith("prompt_learner.ZS_image_encoder") or "token_prefix" in k for k in sd
    )
    model, _ = clip.load(upstream_ckpt["clip"], design_details=DESIGN)
    fresh = TeacherCLIP(model, CLASSNAMES, 2, "a photo of a")  # all 36 classes: buffers differ
    load_teacher_state_dict(fresh, sd, file)
    src = upstream_ckpt["teacher"].state_dict()
    for k, v in fresh.state_dict().items():
        if "token_" not in k:
            assert torch.equal(v, src[k]), k

    broken = dict(sd)
    del broken["prompt_learner.ctx"]
    with pytest.raises(RuntimeError, match="missing keys.*prompt_learner.ctx"):
        load_teacher_state_dict(fresh, broken, file)
    shallower = dict(DESIGN, language_depth=1)  # config disagrees with the checkpoint's depth
    model1, _ = clip.load(upstream_ckpt["clip"], design_details=shallower)
    with pytest.raises(
        RuntimeError, match="unexpected keys.*text_encoder.transformer.resblocks.1.VPT_shallow"
    ):
        load_teacher_state_dict(TeacherCLIP(model1, CLASSNAMES, 2, "a photo of a"), sd, file)
    wide = dict(sd)
    wide["prompt_learner.ctx"] = torch.zeros(3, 64)
    with pytest.raises(RuntimeError, match="shape mismatches"):
        load_teacher_state_dict(fresh, wide, file)


def test_teacher_image_tower_strict(upstream_ckpt):
    sd, file, _ = read_teacher_state_dict(upstream_ckpt["ckpt"])
    visual = build_teacher_visual(sd, DESIGN, file)
    assert torch.equal(visual.VPT, upstream_ckpt["teacher"].image_encoder.VPT.to(visual.VPT.dtype))
    no_prompt = {
        k: v for k, v in sd.items() if k != "image_encoder.transformer.resblocks.1.VPT_shallow"
    }
    with pytest.raises(RuntimeError, match="lacks image-encoder keys.*VPT_shallow"):
        build_teacher_visual(no_prompt, DESIGN, file)
    with pytest.raises(RuntimeError, match="does not fit the teacher prompt settings"):
        build_teacher_visual(sd, dict(DESIGN, vision_depth=1), file)


def test_teacher_vision_design_read_off_the_checkpoint(upstream_ckpt):
    sd, file, _ = read_teacher_state_dict(upstream_ckpt["ckpt"])
    design = teacher_vision_design(sd, file)
    assert (design["vision_depth"], design["vision_ctx"]) == (
        DESIGN["vision_depth"],
        DESIGN["vision_ctx"],
    )
    # The tower built from the derived design equals the one built from the true settings.
    a, b = build_teacher_visual(sd, design, file), build_teacher_visual(sd, DESIGN, file)
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(a.float()(x), b.float()(x))
    # No vision prompts at all -> depth 0; a gap in the layers or a shape mismatch -> error.
    plain = {k: v for k, v in sd.items() if "VPT" not in k or not k.startswith("image_encoder")}
    assert teacher_vision_design(plain, file)["vision_depth"] == 0
    gap = dict(sd)
    gap["image_encoder.transformer.resblocks.3.VPT_shallow"] = sd["image_encoder.VPT"].clone()
    with pytest.raises(RuntimeError, match="not the contiguous layers"):
        teacher_vision_design(gap, file)
    bad = dict(sd)
    bad["image_encoder.transformer.resblocks.1.VPT_shallow"] = torch.zeros(5, 3)
    with pytest.raises(RuntimeError, match="layer-1 vision prompts have shape"):
        teacher_vision_design(bad, file)


def test_export_tool_matches_upstream_text_features(upstream_ckpt):
    base = upstream_ckpt["base"]
    root = str(base / "data")
    generate_toy_shapes(root, n_train=1, n_val=1, n_test=1)
    out = str(base / "cv.safetensors")
    rc = export_main(
        [
            "--root",
            root,
            "--teacher-weights",
            upstream_ckpt["ckpt"],
            "--output",
            out,
            "DATASET.NAME",
            "ToyShapes",
            "MODEL.BACKBONE.NAME",
            upstream_ckpt["clip"],
            "DATALOADER.NUM_WORKERS",
            "0",
            "INPUT.SIZE",
            "(16, 16)",
            "TRAINER.PROMPTSRC.PREC",
            "fp32",
            "TRAINER.PROMPTSRC.N_CTX_TEXT",
            "2",
            "TRAINER.PROMPTSRC.N_CTX_VISION",
            "2",
            "TRAINER.PROMPTSRC.PROMPT_DEPTH_TEXT",
            "2",
            "TRAINER.PROMPTSRC.PROMPT_DEPTH_VISION",
            "2",
        ]
    )
    assert rc == 0
    cv = load_class_vectors(out, classnames=CLASSNAMES, dim=48)
    # independent reference: upstream's prompt strings through CLIP's own text path
    model, _ = clip.load(upstream_ckpt["clip"], design_details=DESIGN)
    teacher = upstream_ckpt["teacher"]
    model.transformer.load_state_dict(teacher.text_encoder.transformer.state_dict())
    texts = [f"a photo of a {c.replace('_', ' ')}." for c in CLASSNAMES]
    tokens = clip.tokenize(texts)
    with torch.no_grad():
        emb = model.token_embedding(tokens)
        emb[:, 1:3] = teacher.prompt_learner.ctx
        ref = model.encode_text_embeddings(emb, tokens)
    ref = ref / ref.norm(dim=-1, keepdim=True)
    assert torch.allclose(cv.vectors, ref, atol=1e-5)
    assert os.path.basename(cv.path) == "cv.safetensors" and cv.logit_scale == pytest.approx(
        float(teacher.logit_scale.detach().exp())
    )
