"""Activation checkpointing and class chunking leave the teacher step's results unchanged."""

from __future__ import annotations

import os

import pytest
import torch
import torch.nn.functional as F

from tools.bench_distill import MemoryMeter, Shapes, Tower, build_teacher, teacher_step_memory
from trainers.activation_memory import configure_teacher_memory, encode_text_chunked

TINY = Shapes(
    "tiny",
    teacher=Tower(16, 4, 64, 2, 32, text_width=64, text_layers=2),
    student=Tower(16, 4, 64, 1, 32),
    depth=2,
)


def _teacher_step(teacher, images, labels):
    teacher.zero_grad(set_to_none=True)
    text = teacher.text_features()
    logits = teacher.logits(images, text)
    F.cross_entropy(logits, labels).backward()
    grads = {n: p.grad.clone() for n, p in teacher.named_parameters() if p.grad is not None}
    return text.detach(), logits.detach(), grads


@pytest.mark.parametrize(
    ("ckpt", "chunk"), [(True, 0), (False, 1), (False, 3), (False, 8), (True, 5), (True, 4)]
)
def test_checkpointing_and_chunking_give_identical_step(ckpt, chunk):
    teacher = build_teacher(TINY, 32)
    for name, p in teacher.named_parameters():
        p.requires_grad_(name.startswith("prompt_learner.") or "VPT" in name)
    images = torch.randn(4, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    labels = torch.tensor([0, 5, 17, 31])
    ref = _teacher_step(teacher, images, labels)
    configure_teacher_memory(teacher, ckpt, ckpt, chunk)
    got = _teacher_step(teacher, images, labels)
    assert torch.equal(ref[0], got[0]) and torch.equal(ref[1], got[1])
    assert ref[2].keys() == got[2].keys() and len(ref[2]) > 3
    for name in ref[2]:
        assert torch.equal(ref[2][name], got[2][name]), name


def test_chunking_without_grad_equals_one_pass():
    teacher = build_teacher(TINY, 20)
    prompts, tok = teacher.prompt_learner(), teacher.prompt_learner.tokenized_prompts
    with torch.no_grad():
        whole = teacher.text_encoder(prompts, tok)
        for chunk in (1, 3, 8):
            chunked = encode_text_chunked(teacher.text_encoder, prompts, tok, chunk)
            assert torch.equal(chunked, whole), chunk
    with pytest.raises(ValueError, match=">= 0"):
        configure_teacher_memory(teacher, False, False, -1)


def test_memory_meter_sees_a_known_allocation():
    meter = MemoryMeter(torch.device("cpu"))
    assert meter.cpu_peak_ok
    with meter:
        x = torch.ones(16 * 2**20 // 4)  # 16 MB, touched
        del x
    assert 15 * 2**20 <= meter.peak <= 40 * 2**20


def test_checkpointing_lowers_the_teacher_step_peak():
    shapes = Shapes(
        "tiny",
        teacher=Tower(16, 4, 64, 1, 32, text_width=128, text_layers=6),
        student=TINY.student,
        depth=2,
    )
    settings = [("plain", False, 0), ("ckpt", True, 0), ("ckpt+chunk", True, 8)]
    # CPU peaks are RSS-based: other work in the process can only add to one reading, so each
    # setting keeps the lower of two measurements.
    runs = [teacher_step_memory(shapes, [48], 1, torch.device("cpu"), settings) for _ in range(2)]
    out = {label: {48: min(r[label][48] for r in runs)} for label, _, _ in settings}
    assert out["ckpt"][48] < 0.85 * out["plain"][48]
    assert out["ckpt+chunk"][48] < 0.85 * out["ckpt"][48]
    assert out["ckpt+chunk"][48] < 0.6 * out["plain"][48]


def test_teacher_training_with_memory_keys_is_identical(tmp_path):
    """A PromptKDTeacher epoch with checkpointing + class chunking saves the same prompts."""
    import train
    from clip.testing import save_state_dict, tiny_vit_state_dict
    from datasets.toy_shapes import generate_toy_shapes

    root = str(tmp_path / "data")
    generate_toy_shapes(root, n_train=1, n_val=1, n_test=1)
    weights = save_state_dict(
        tiny_vit_state_dict(embed_dim=48, width=64, seed=1), tmp_path / "t.pt"
    )
    common = [
        "--trainer", "PromptKDTeacher", "--root", root, "--seed", "1",
        "DATASET.NAME", "ToyShapes", "DATASET.NUM_SHOTS", "1", "DATASET.SUBSAMPLE_CLASSES", "base",
        "MODEL.BACKBONE.NAME", weights, "INPUT.SIZE", "(16, 16)",
        "INPUT.TRANSFORMS", "['random_flip', 'normalize']",
        "DATALOADER.NUM_WORKERS", "0", "DATALOADER.TRAIN_X.BATCH_SIZE", "6",
        "OPTIM.NAME", "sgd", "OPTIM.LR", "0.05", "OPTIM.MAX_EPOCH", "1",
        "TRAINER.PROMPTSRC.PREC", "fp32", "TRAINER.PROMPTSRC.GPA_MEAN", "1",
        "TRAINER.PROMPTSRC.N_CTX_TEXT", "2", "TRAINER.PROMPTSRC.N_CTX_VISION", "2",
        "TRAINER.PROMPTSRC.PROMPT_DEPTH_TEXT", "2", "TRAINER.PROMPTSRC.PROMPT_DEPTH_VISION", "2",
        "TEST.NO_TEST", "True",
    ]  # fmt: skip
    memory = [
        "TRAINER.PROMPTSRC.GRAD_CHECKPOINT_TEXT", "True",
        "TRAINER.PROMPTSRC.GRAD_CHECKPOINT_IMAGE", "True",
        "TRAINER.PROMPTSRC.CLASS_CHUNK", "4",
    ]  # fmt: skip
    states = []
    for name, extra in (("plain", []), ("memory", memory)):
        out = str(tmp_path / name)
        assert train.main(["--output-dir", out, *common, *extra]) == 0
        ckpt = os.path.join(out, "VLPromptLearner", "model.pth.tar-1")
        states.append(torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"])
    assert states[0].keys() == states[1].keys()
    for key in states[0]:
        assert torch.equal(states[0][key], states[1][key]), key
