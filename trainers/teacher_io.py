"""Reading a PromptKD teacher: checkpoints of any prompt trainer, plain CLIPs, image towers.

A teacher reaches the student in one of three forms (``TRAINER.PROMPTKD.TEACHER_WEIGHTS``):
- a CLIP name or CLIP checkpoint path: its image tower, prompt-free;
- a run whose class-vector file embeds the teacher's frozen vision prompts (written by
  ``tools/export_class_vectors.py`` and by ``PromptKDTeacher``): the base CLIP of the file's
  ``teacher_backbone`` plus those prompts;
- an IVLP-layout checkpoint (ours or upstream's released PromptKD teachers): its
  ``image_encoder.*`` keys, strictly.
"""

from __future__ import annotations

import os
import re
from typing import Any

import torch
from torch import nn

from clip.model import build_visual
from dassl.engine.checkpointer import CheckpointMismatchError, find_checkpoint
from dassl.engine.trainer import CLASSNAME_BUFFERS
from dassl.utils import InputFileNotFoundError, InvalidInputError, load_checkpoint

__all__ = [
    "ZS_PREFIX",
    "is_clip_reference",
    "clip_state_dict",
    "resolve_teacher_checkpoint",
    "read_teacher_state_dict",
    "load_teacher_state_dict",
    "build_teacher_visual",
    "teacher_vision_design",
    "vision_prompts_of",
]

ZS_PREFIX = "prompt_learner.ZS_image_encoder."
DEFAULT_MODEL_NAMES = ("VLPromptLearner", "MultiModalPromptLearner", "prompt_learner")


def is_clip_reference(name: str) -> bool:
    """Whether ``name`` is a CLIP model name or a CLIP checkpoint file (not a trainer run)."""
    from clip.clip import _MODELS, read_state_dict, source_kind

    if name in _MODELS or source_kind(name) != "openai":  # + hf-hub:, open_clip:, HF snapshots
        return True
    if not os.path.isfile(name):
        return False
    try:
        sd, _ = read_state_dict(name)
    except RuntimeError:
        return False
    return "visual.conv1.weight" in sd and "token_embedding.weight" in sd


def clip_state_dict(name: str) -> dict[str, torch.Tensor]:
    """The state dict (OpenAI key layout) of a CLIP given by any name or path ``clip.load`` takes."""
    from clip.clip import resolve_clip

    return resolve_clip(name).state_dict


def resolve_teacher_checkpoint(
    path: str, model_names: tuple[str, ...] = DEFAULT_MODEL_NAMES
) -> str:
    """A checkpoint file from a file path or a run dir (``<dir>/<model name>/...``).

    The engine's one rule (:func:`dassl.engine.checkpointer.find_checkpoint`, "final"): in a
    directory ``model-best.pth.tar`` (the deployed weights of a ``best_val`` run), else the
    latest save named by the ``checkpoint`` pointer, else the highest ``model.pth.tar-N``.
    """
    if not os.path.exists(path):
        raise InputFileNotFoundError(
            f"Teacher weights not found: {path} (TRAINER.PROMPTKD.TEACHER_WEIGHTS / "
            f"--teacher-weights must be a run dir, a checkpoint file or a CLIP name)"
        )
    model_name = next((n for n in model_names if os.path.isdir(os.path.join(path, n))), "")
    return find_checkpoint(path, model_name, purpose="final")


def _is_classname_buffer(key: str) -> bool:
    return key.rsplit(".", 1)[-1] in CLASSNAME_BUFFERS


def read_teacher_state_dict(
    path: str, model_names: tuple[str, ...] = DEFAULT_MODEL_NAMES
) -> tuple[dict[str, torch.Tensor], str, int | None]:
    """Read a (possibly upstream, pickled) checkpoint: ``(state_dict, file, epoch)``.

    Drops a leading ``module.``, the class-name-dependent token buffers and upstream
    PromptSRC's frozen ``prompt_learner.ZS_image_encoder.*`` copy; the rest is kept for a strict
    load.
    """
    file = resolve_teacher_checkpoint(path, model_names)
    ckpt = load_checkpoint(file, legacy="auto")
    sd = ckpt.get("state_dict", ckpt) if isinstance(ckpt, dict) else None
    if not isinstance(sd, dict):
        raise InvalidInputError(f"{file} holds no state dict (expected a Dassl checkpoint)")
    out = {}
    for k, v in sd.items():
        k = k[len("module.") :] if k.startswith("module.") else k
        if _is_classname_buffer(k) or k.startswith(ZS_PREFIX):
            continue
        out[k] = v
    epoch = ckpt.get("epoch") if isinstance(ckpt, dict) else None
    return out, file, epoch


def load_teacher_state_dict(
    model: nn.Module, state_dict: dict[str, torch.Tensor], source: str
) -> None:
    """Strict load except the class-name buffers; missing prompts or shape mismatches are errors."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state_dict and not _is_classname_buffer(k)]
    unexpected = [k for k in state_dict if k not in expected]
    shapes = [
        f"{k}: checkpoint {tuple(v.shape)} vs model {tuple(expected[k].shape)}"
        for k, v in state_dict.items()
        if k in expected and tuple(v.shape) != tuple(expected[k].shape)
    ]
    if missing or unexpected or shapes:
        raise CheckpointMismatchError(
            f"Teacher checkpoint {source} does not match the model built from the config "
            f"(prompt lengths/depths, MODEL.BACKBONE.NAME): missing keys "
            f"{missing[:10]}{' ...' if len(missing) > 10 else ''}, unexpected keys "
            f"{unexpected[:10]}{' ...' if len(unexpected) > 10 else ''}, shape mismatches {shapes[:10]}"
        )
    model.load_state_dict(state_dict, strict=False)


def build_teacher_visual(
    state_dict: dict[str, torch.Tensor],
    design_details: dict[str, Any],
    source: str,
    base_clip: str | None = None,
) -> nn.Module:
    """The teacher's image tower from ``image_encoder.*`` keys, strictly.

    Every parameter of the tower (prompts included) must be in ``state_dict``; when it holds
    prompts only, the frozen weights come from ``base_clip`` (a CLIP name or path). The text
    tower is never built.
    """
    prefix = "image_encoder."
    visual_sd = {
        "visual." + k[len(prefix) :]: v for k, v in state_dict.items() if k.startswith(prefix)
    }
    if not visual_sd and not base_clip:
        raise CheckpointMismatchError(f"Teacher checkpoint {source} has no image_encoder.* keys")
    from clip.clip import resolve_clip, source_kind

    prompts_only = "visual.conv1.weight" not in visual_sd
    if prompts_only and not base_clip:
        raise CheckpointMismatchError(
            f"Teacher checkpoint {source} holds only prompt weights; set "
            "TRAINER.PROMPTKD.TEACHER_NAME to the teacher's CLIP to take frozen weights from"
        )
    # A converted (Hugging Face / OpenCLIP) base also gives the tower's architecture, which
    # tensor shapes cannot tell (heads, activation, pooling, ...).
    base = None
    if prompts_only or (base_clip and source_kind(base_clip) != "openai"):
        base = resolve_clip(base_clip, weights=prompts_only)
    if prompts_only:
        merged = {k: v for k, v in base.state_dict.items() if k.startswith("visual.")}
        merged.update(visual_sd)
        visual_sd = merged
    try:
        visual = build_visual(visual_sd, design_details, base.vision_cfg if base else None)
    except ValueError as err:
        raise CheckpointMismatchError(
            f"Teacher checkpoint {source} does not fit the teacher prompt settings "
            f"{design_details}: {err}"
        ) from err
    missing = [k for k in visual.state_dict() if "visual." + k not in visual_sd]
    if missing:
        raise CheckpointMismatchError(
            f"Teacher checkpoint {source} lacks image-encoder keys {missing} required by the "
            f"teacher prompt settings {design_details}; a missing prompt would silently stay random"
        )
    return visual


_VISION_PROMPT_KEY = re.compile(r"image_encoder\.transformer\.resblocks\.(\d+)\.VPT_shallow")


def teacher_vision_design(state_dict: dict[str, torch.Tensor], source: str) -> dict[str, Any]:
    """IVLP vision-prompt settings of a teacher, read off its ``image_encoder`` prompt keys.

    ``image_encoder.VPT`` gives the context length, the ``VPT_shallow`` layers 1..d-1 the depth.
    The student thus needs no copy of the teacher's prompt config (upstream hard-codes depth 9,
    defect 7); gaps in the layers or differing shapes are errors, never silently random prompts.
    """
    design = {"trainer": "IVLP", "language_depth": 0, "language_ctx": 0}
    vpt = state_dict.get("image_encoder.VPT")
    if vpt is None:
        return {**design, "vision_depth": 0, "vision_ctx": 0}
    layers = sorted(
        int(m.group(1)) for k in state_dict if (m := _VISION_PROMPT_KEY.fullmatch(k)) is not None
    )
    depth = 1 + len(layers)
    if layers != list(range(1, depth)):
        raise CheckpointMismatchError(
            f"Teacher checkpoint {source}: deep vision prompts exist for layers {layers}, which "
            f"are not the contiguous layers 1..{depth - 1} an IVLP teacher has"
        )
    for n in layers:
        shape = tuple(state_dict[f"image_encoder.transformer.resblocks.{n}.VPT_shallow"].shape)
        if shape != tuple(vpt.shape):
            raise CheckpointMismatchError(
                f"Teacher checkpoint {source}: layer-{n} vision prompts have shape {shape}, "
                f"image_encoder.VPT has {tuple(vpt.shape)}"
            )
    return {**design, "vision_depth": depth, "vision_ctx": int(vpt.shape[0])}


def vision_prompts_of(image_encoder: nn.Module) -> dict[str, torch.Tensor]:
    """The IVLP/VPT vision prompts of an image tower as ``image_encoder.*`` tensors (float32)."""
    return {
        "image_encoder." + k: v.detach().float().cpu().clone()
        for k, v in image_encoder.named_parameters()
        if k.rsplit(".", 1)[-1] in ("VPT", "VPT_shallow")
    }
