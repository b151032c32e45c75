"""The upstream trainers train from their upstream config files on the toy world, export class
vectors as PromptKD teachers (the teacher protocol), and a PromptKDStudent distils from each."""

import json
import os

import pytest
import torch
from PIL import Image

import clip
import train
from dassl.engine import build_trainer
from datasets.toy_render import CLASSNAMES
from tools.export_class_vectors import load_teacher
from tools.export_class_vectors import main as export_main
from trainers.class_vectors import load_class_vectors
from trainers.teacher_io import build_teacher_visual, teacher_vision_design
from trainers.zero_shot import build_zero_shot_classifier, templates_for

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

TRAINERS = {  # name: (upstream config file, config node)
    "CoOp": ("CoOp/vit_b16_ep50.yaml", "COOP"),
    "CoCoOp": ("CoCoOp/vit_b16_c4_ep10_batch1_ctxv1.yaml", "COCOOP"),
    "IVLP": ("IVLP/vit_b16_c2_ep5_batch4_2+2ctx.yaml", "IVLP"),
    "VPT": ("VPT/vit_b16_c2_ep5_batch4_4.yaml", "VPT"),
    "MaPLe": ("MaPLe/vit_b16_c2_ep5_batch4_2ctx.yaml", "MAPLE"),
    "PromptSRC": ("PromptSRC/vit_b16_c2_ep20_batch4_4+4ctx.yaml", "PROMPTSRC"),
}
PROMPT_FREE = {"CoOp", "CoCoOp"}  # their image tower is CLIP's own


@pytest.fixture(scope="module")
def toy(toy_world, tmp_path_factory):
    return tmp_path_factory.mktemp("teachers"), [*toy_world.flags, *toy_world.opts]


def _teacher_args(repo_root, name, *flags):
    yaml, node = TRAINERS[name]
    return [
        "--trainer",
        name,
        "--config-file",
        os.path.join(repo_root, "configs/trainers", yaml),
        *flags,
        "MODEL.BACKBONE.NAME",
        "toy-teacher",
        f"TRAINER.{node}.PREC",
        "fp32",
        "DATASET.NUM_SHOTS",
        "1",
        "DATASET.SUBSAMPLE_CLASSES",
        "base",
    ]


def _student(repo_root, toy, out, *extra):
    base, common = toy
    argv = [
        "--trainer",
        "PromptKDStudent",
        "--config-file",
        os.path.join(repo_root, "configs/trainers/PromptKDStudent/toy.yaml"),
        "--output-dir",
        out,
        *common,
        "DATASET.NUM_SHOTS",
        "0",
        *extra,
    ]
    assert train.main(argv) == 0
    res = json.load(open(os.path.join(out, "results.json")))
    assert {"base", "new", "hm"} <= set(res) and res["epoch"] == 1
    return open(os.path.join(out, "log.txt")).read()


@pytest.mark.parametrize("name", list(TRAINERS))
def test_trainer_trains_exports_and_teaches(repo_root, toy, name):
    base, common = toy
    run = str(base / name)
    flags, opts = common[:6], common[6:]
    args = _teacher_args(repo_root, name, *flags)
    assert train.main([*_teacher_args(repo_root, name, "--output-dir", run, *flags), *opts]) == 0
    res = json.load(open(os.path.join(run, "results.json")))
    assert {"base", "new", "hm"} <= set(res) and res["epoch"] == 1 and res["trainer"] == name
    log = open(os.path.join(run, "log.txt")).read()
    assert "base classes (18 classes" in log and "new classes (18 classes" in log

    assert (
        export_main([*_teacher_args(repo_root, name, "--teacher-weights", run, *flags), *opts]) == 0
    )
    cv = load_class_vectors(os.path.join(run, "class_vectors.safetensors"), CLASSNAMES)
    assert cv.teacher_trainer == name and cv.vision_prompts is not None
    assert bool(cv.vision_prompts) == (name not in PROMPT_FREE)

    # The teacher protocol, checked against the trained model itself.
    cfg = train.setup_cfg(train.build_parser().parse_args([*args, *opts]))
    trainer, _ = load_teacher(cfg, run)
    model = trainer.model.eval()
    images = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        tower = build_teacher_visual(
            cv.vision_prompts, teacher_vision_design(cv.vision_prompts, "cv"), "cv", "toy-teacher"
        ).float()
        feats = tower(images)
        feats = feats / feats.norm(dim=-1, keepdim=True)
        assert torch.allclose(feats, model.image_features(images), atol=1e-5)
        if name == "CoCoOp":  # the documented rule: the prompt at the mean training image
            tfm = trainer.dm.tfm_test
            train_images = torch.stack(
                [tfm(Image.open(d.impath).convert("RGB")) for d in trainer.dm.dataset.train_x]
            )
            anchor = model.image_features(train_images)
            ref = model.text_features_at(CLASSNAMES, anchor.mean(0))
        else:
            ref = model.text_features(CLASSNAMES)
    assert torch.allclose(cv.vectors, ref, atol=1e-5)
    assert cv.logit_scale == pytest.approx(float(model.logit_scale.exp()))

    log = _student(
        repo_root, toy, str(base / f"{name}_student"), "TRAINER.PROMPTKD.TEACHER_WEIGHTS", run
    )
    assert f"teacher {name}" in log


def test_zero_shot_clip_by_name_is_a_teacher(repo_root, toy):
    base, common = toy
    out = str(base / "zs_cv.safetensors")
    argv = ["--trainer", "ZeroshotCLIP", "--teacher-weights", "toy-teacher", "--output", out]
    assert export_main([*argv, *common]) == 0
    cv = load_class_vectors(out, CLASSNAMES)
    assert cv.teacher_backbone == "toy-teacher" and cv.vision_prompts == {}
    model, _ = clip.load("toy-teacher")  # independent reference: CLIP's own text path
    with torch.no_grad():
        ref = model.encode_text(
            clip.tokenize([f"a photo of a {c.replace('_', ' ')}." for c in CLASSNAMES])
        )
    assert torch.allclose(cv.vectors, ref / ref.norm(dim=-1, keepdim=True), atol=1e-5)
    log = _student(
        repo_root,
        toy,
        str(base / "zs_student"),
        "TRAINER.PROMPTKD.TEACHER_WEIGHTS",
        "toy-teacher",
        "TRAINER.PROMPTKD.CLASS_VECTORS",
        out,
    )
    assert "Loading teacher image encoder: CLIP toy-teacher (no prompts)" in log


def test_zero_shot_builder_averages_templates_in_either_order():
    feats = {"a x": [3.0, 4.0], "b x": [1.0, 0.0], "a y z": [0.0, 2.0], "b y z": [1.0, 1.0]}
    seen = []

    def encode(texts):
        seen.append(len(texts))
        return torch.tensor([feats[t] for t in texts])

    names, templates = ["x", "y_z"], ["a {}", "b {}"]  # underscores become spaces
    each = build_zero_shot_classifier(encode, names, templates, batch_size=3)
    raw = build_zero_shot_classifier(encode, names, templates, normalize_each=False, batch_size=3)

    def unit(v):
        v = torch.tensor(v)
        return v / v.norm()

    r = 2**-0.5  # hand-computed: mean of unit vectors (or of raw ones), then renormalised
    assert torch.allclose(each, torch.stack([unit([1.6, 0.8]), unit([r, 1 + r])]), atol=1e-6)
    assert torch.allclose(raw, torch.stack([unit([4.0, 4.0]), unit([1.0, 3.0])]), atol=1e-6)
    assert seen[:2] == [3, 1]  # batched over texts, across class boundaries
    assert templates_for("single", "ToyShapes") == ["a photo of a {}."]
    assert len(templates_for("ensemble", "ToyShapes")) == 8
    assert len(templates_for("imagenet", "ToyShapes")) == 60
    with pytest.raises(ValueError, match="TRAINER.ZSCLIP.TEMPLATES"):
        templates_for("all", "ToyShapes")


@pytest.mark.parametrize("name", ["CoCoOp", "MaPLe", "VPT"])
def test_bf16_step_keeps_fp32_master_prompts(repo_root, toy, name):
    """The precision helper drives the new trainers too: bf16 frozen weights, fp32 prompts."""
    base, common = toy
    flags, opts = common[:6], common[6:]
    yaml, node = TRAINERS[name]
    argv = [*_teacher_args(repo_root, name, "--output-dir", str(base / f"bf16_{name}"), *flags)]
    cfg = train.setup_cfg(
        train.build_parser().parse_args([*argv, *opts, f"TRAINER.{node}.PREC", "bf16"])
    )
    trainer = build_trainer(cfg)
    trainer.set_model_mode("train")
    trainer.batch_idx, trainer.num_batches = 0, 1
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if p.requires_grad}
    summary = trainer.forward_backward(next(iter(trainer.train_loader_x)))
    assert all(torch.isfinite(torch.tensor(v)) for v in summary.values())
    trained = dict(trainer.model.named_parameters())
    assert before and all(trained[n].dtype == torch.float32 for n in before)
    assert any(not torch.equal(trained[n], v) for n, v in before.items())
    frozen = [p for p in trainer.model.parameters() if not p.requires_grad]
    assert frozen and all(p.dtype == torch.bfloat16 for p in frozen)


def test_zeroshot_clip2_ensemble_evaluates(toy, tmp_path):
    base, common = toy
    out = str(tmp_path / "zs2")
    argv = ["--trainer", "ZeroshotCLIP2", "--output-dir", out, "--eval-only", *common]
    assert train.main([*argv, "MODEL.BACKBONE.NAME", "toy-teacher"]) == 0
    res = json.load(open(os.path.join(out, "results.json")))
    assert res["trainer"] == "ZeroshotCLIP2" and res["epoch"] == 0 and "accuracy" in res


def test_every_registered_trainer_runs_somewhere_in_the_suite():
    """Every trainer the ``trainers`` package registers is trained by some test (test files may
    register throwaway trainers of their own; those are not the package's)."""
    from dassl.engine import TRAINER_REGISTRY

    shipped = {
        name
        for name in TRAINER_REGISTRY.registered_names()
        if TRAINER_REGISTRY.get(name).__module__.startswith("trainers.")
    }
    covered = set(TRAINERS) | {
        "ZeroshotCLIP",
        "ZeroshotCLIP2",
        "ExampleIVLP",
    }  # this file, extending
    covered |= {"PromptKDTeacher", "PromptKDStudent", "PromptKD"}  # test_promptkd_chain.py
    covered |= {"KDStudent"}  # test_datafree_student.py
    assert shipped and shipped <= covered, sorted(shipped - covered)
