"""Toy PromptKD chain on converted CLIPs: an OpenCLIP-format teacher, a Hugging Face student."""

import dataclasses
import json
import os

import pytest
import torch

import clip
import train
from clip.testing import tiny_hf_clip_snapshot, tiny_open_clip_model
from dassl.engine import build_trainer
from dassl.utils import set_random_seed
from datasets.toy_render import CLASSNAMES
from datasets.toy_shapes import generate_toy_shapes
from trainers.class_vectors import load_class_vectors
from trainers.promptkd_teacher import (
    TeacherCLIP,
    ivlp_design_details,
    load_teacher_state_dict,
    read_teacher_state_dict,
)

# A ViT-H/14-shaped teacher in miniature: GELU, heads of 32 channels, LayerScale.
TEACHER = {
    "embed_dim": 48,
    "vision_cfg": {
        "image_size": 16,
        "layers": 3,
        "width": 64,
        "head_width": 32,
        "patch_size": 4,
        "ls_init_value": 0.5,
    },
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}
PROMPTS = ["N_CTX_TEXT", "2", "N_CTX_VISION", "2", "PROMPT_DEPTH_TEXT", "2"]
PROMPTS += ["PROMPT_DEPTH_VISION", "2"]


def _node(name, kv):
    return [x if i % 2 else f"TRAINER.{name}.{x}" for i, x in enumerate(kv)]


def test_openclip_teacher_exports_class_vectors_and_hf_student_distils(tmp_path):
    root = str(tmp_path / "data")
    generate_toy_shapes(root, n_train=2, n_val=1, n_test=1)
    cfg_path = tmp_path / "toy-vit-h.json"
    cfg_path.write_text(json.dumps(TEACHER))
    weights = tmp_path / "toy-vit-h.pt"
    torch.save({"state_dict": tiny_open_clip_model(TEACHER, seed=3).state_dict()}, weights)
    teacher = f"open_clip:{cfg_path}@{weights}"
    student = str(tmp_path / "hf-student")
    tiny_hf_clip_snapshot(student, vision_config={"image_size": 16, "patch_size": 4})
    common = ["--root", root, "--seed", "1", "DATASET.NAME", "ToyShapes", "INPUT.SIZE", "(16, 16)"]
    common += ["INPUT.TRANSFORMS", "['random_flip', 'normalize']", "DATALOADER.NUM_WORKERS", "0"]
    common += ["DATALOADER.TRAIN_X.BATCH_SIZE", "8", "DATALOADER.TEST.BATCH_SIZE", "64"]
    common += ["OPTIM.NAME", "sgd", "OPTIM.LR", "0.01", "OPTIM.MAX_EPOCH", "1"]
    common += ["TRAIN.PRINT_FREQ", "100", *_node("PROMPTSRC", PROMPTS)]

    tdir = str(tmp_path / "teacher_run")
    teacher_args = ["--trainer", "PromptKDTeacher", "--output-dir", tdir, *common]
    teacher_args += ["MODEL.BACKBONE.NAME", teacher, "DATASET.NUM_SHOTS", "2"]
    teacher_args += ["DATASET.SUBSAMPLE_CLASSES", "base", "TRAINER.PROMPTSRC.PREC", "fp32"]
    teacher_args += ["TRAINER.PROMPTSRC.GPA_MEAN", "1"]
    assert train.main(teacher_args) == 0
    vectors = load_class_vectors(
        os.path.join(tdir, "class_vectors.safetensors"), classnames=CLASSNAMES, dim=48
    )
    assert vectors.teacher_backbone == teacher
    log = open(os.path.join(tdir, "log.txt")).read()
    assert f"CLIP {teacher}: preprocessing" in log  # the recipe is recorded in the run
    # ...and the run's INPUT (Dassl's ImageNet statistics here) is compared with it.
    assert "INPUT.PIXEL_MEAN [0.485, 0.456, 0.406] differs from the model's" in log

    student_args = [*common, "MODEL.BACKBONE.NAME", student, "DATASET.NUM_SHOTS", "0"]
    student_args += ["TRAINER.PROMPTKD.TEACHER_WEIGHTS", tdir]
    student_args += ["TRAINER.PROMPTKD.TEACHER_NAME", teacher]
    student_args += _node("PROMPTKD", ["N_CTX_VISION", "2", "PROMPT_DEPTH_VISION", "2"])
    student_args += ["TRAINER.PROMPTKD.PREC", "fp32", "TRAINER.MODAL", "base2novel"]
    out = str(tmp_path / "student_run")
    assert train.main(["--trainer", "PromptKD", "--output-dir", out, *student_args]) == 0
    res = json.load(open(os.path.join(out, "results.json")))
    assert {"base", "new", "hm"} <= set(res)

    # The student's frozen teacher tower is the trained OpenCLIP teacher, prompts included:
    # from the prompts embedded in the class vectors (the tower's architecture comes from the
    # backbone recorded there, even under a wrong TEACHER_NAME) or from the teacher checkpoint
    # (architecture from TEACHER_NAME, which must then name the recorded backbone).
    sd, _, _ = read_teacher_state_dict(tdir)
    argv = ["--trainer", "PromptKDStudent", "--output-dir", str(tmp_path / "x"), *student_args]
    cfg = train.setup_cfg(train.build_parser().parse_args(argv))
    model, _ = clip.load(teacher, design_details=ivlp_design_details(cfg.TRAINER.PROMPTSRC))
    reference = TeacherCLIP(model, CLASSNAMES, 2, "a photo of a")
    load_teacher_state_dict(reference, sd, tdir)
    images = torch.randn(4, 3, 16, 16)
    with torch.no_grad():
        expected = reference.image_encoder(images)
        expected = expected / expected.norm(dim=-1, keepdim=True)

    def student(teacher_name, embedded_prompts):
        argv_name = [*argv, "TRAINER.PROMPTKD.TEACHER_NAME", teacher_name]
        trainer = build_trainer(train.setup_cfg(train.build_parser().parse_args(argv_name)))
        assert trainer.class_vectors.vision_prompts is not None
        if not embedded_prompts:
            trainer.class_vectors = dataclasses.replace(trainer.class_vectors, vision_prompts=None)
        return trainer

    set_random_seed(1)
    for name, embedded in ((teacher, True), ("toy-teacher", True), (teacher, False)):
        distiller = student(name, embedded).build_distiller()
        with torch.no_grad():
            assert torch.allclose(distiller.teacher_features(images), expected, atol=1e-5)
    with pytest.raises(RuntimeError, match="TRAINER.PROMPTKD.TEACHER_NAME is 'toy-teacher'"):
        student("toy-teacher", False).build_distiller()

    # A plain (zero-shot) converted CLIP as the teacher: exported template vectors, its tower.
    from tools.export_class_vectors import main as export

    zs_file = str(tmp_path / "zs_vectors.safetensors")
    zs_args = ["--trainer", "ZeroshotCLIP", "--teacher-weights", teacher, "--output", zs_file]
    assert export([*zs_args, *common]) == 0
    zs_argv = [*argv, "TRAINER.PROMPTKD.TEACHER_WEIGHTS", teacher]
    zs_argv += ["TRAINER.PROMPTKD.CLASS_VECTORS", zs_file]
    trainer = build_trainer(train.setup_cfg(train.build_parser().parse_args(zs_argv)))
    plain, _ = clip.load(teacher)
    with torch.no_grad():
        expected = plain.encode_image(images)
        expected = expected / expected.norm(dim=-1, keepdim=True)
        assert torch.allclose(
            trainer.build_distiller().teacher_features(images), expected, atol=1e-5
        )
