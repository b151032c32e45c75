"""The frozen teacher of a synthesis: CLIP text tower (for prompts) + image tower + class vectors.

Either a CLIP name/path alone (class vectors = its ``PLAIN_TEMPLATE`` prompt features), or a
PromptKD teacher run on top of that CLIP: its image tower carries the run's trained vision
prompts and the class vectors are the run's ``class_vectors.safetensors``. Style prompts always
go through the CLIP's plain (frozen, unprompted) text tower.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

import clip
from clip.clip import CLIP_MEAN, CLIP_STD
from dassl.utils import InputFileNotFoundError
from dassl.utils.logger import get_logger

from .classnames import check_same_classes

__all__ = ["Teacher", "load_teacher"]

logger = get_logger(__name__)


class Teacher(nn.Module):
    """Frozen teacher; :meth:`image_features` is differentiable in the pixels.

    Pixels in [0, 1] are normalised with the model's own mean/std (``model.preprocess_cfg``).
    """

    def __init__(
        self,
        clip_model: nn.Module,
        visual: nn.Module,
        class_vectors: torch.Tensor,
        logit_scale: float,
        name: str,
        run: str = "",
        mean: Sequence[float] = CLIP_MEAN,
        std: Sequence[float] = CLIP_STD,
    ):
        super().__init__()
        self.clip_model = clip_model.float().eval().requires_grad_(False)
        self.visual = visual.float().eval().requires_grad_(False)
        cv = class_vectors.detach().float()
        self.register_buffer("class_vectors", cv / cv.norm(dim=-1, keepdim=True))
        self.register_buffer("mean", torch.tensor(tuple(mean)).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(tuple(std)).view(1, 3, 1, 1))
        self.logit_scale = float(logit_scale)
        self.name = name
        self.run = run

    def train(self, mode: bool = True) -> Teacher:
        return super().train(False)

    @property
    def resolution(self) -> int:
        return int(self.visual.input_resolution)

    def image_features(self, images: torch.Tensor) -> torch.Tensor:
        """L2-normalised features of images in [0, 1] (resized to the input resolution)."""
        if images.shape[-1] != self.resolution or images.shape[-2] != self.resolution:
            images = F.interpolate(
                images, size=(self.resolution,) * 2, mode="bilinear", antialias=True
            )
        feats = self.visual((images - self.mean) / self.std).float()
        return feats / feats.norm(dim=-1, keepdim=True)

    def logits(self, features: torch.Tensor) -> torch.Tensor:
        return self.logit_scale * features @ self.class_vectors.t()


def _plain_class_vectors(
    model: nn.Module, classnames: Sequence[str], template: str
) -> torch.Tensor:
    from clip.text_prompts import encode_spliced

    tokens = clip.tokenize([template.format(classname=c) for c in classnames])
    with torch.no_grad():
        return encode_spliced(model, tokens).float()


def load_teacher(
    name: str,
    classnames: Sequence[str],
    plain_template: str = "a photo of a {classname}.",
    run: str = "",
    class_vectors: str = "",
    dataset: str = "",
    device: str | torch.device = "cpu",
) -> Teacher:
    """Build the teacher; class vectors from a run or file must list exactly ``classnames``.

    Vision prompts come from the run's checkpoint, or else from a class-vector file that
    embeds them (``tools/export_class_vectors.py``).
    """
    from trainers.teacher_io import build_teacher_visual, teacher_vision_design

    model, _ = clip.load(name, device="cpu")
    model = model.float()
    visual = model.visual
    if run:
        from dassl.engine.checkpointer import run_dir_of
        from trainers.teacher_io import DEFAULT_MODEL_NAMES, read_teacher_state_dict

        if not os.path.exists(run):
            raise InputFileNotFoundError(
                f"PromptKD teacher run not found: {run} (DATAFREE.TEACHER_RUN: a teacher run dir "
                "or checkpoint)"
            )
        sd, file, _ = read_teacher_state_dict(run)
        visual = build_teacher_visual(sd, teacher_vision_design(sd, file), file, base_clip=name)
        if not class_vectors:
            run_dir = next(
                (run_dir_of(file, m) for m in DEFAULT_MODEL_NAMES if f"/{m}/" in file), run
            )
            class_vectors = os.path.join(run_dir, "class_vectors.safetensors")
    if class_vectors:
        from trainers.class_vectors import load_class_vectors

        cv = load_class_vectors(class_vectors, dim=int(model.text_projection.shape[1]))
        check_same_classes(classnames, cv.classnames, f"class vectors {class_vectors}", dataset)
        if not run and cv.vision_prompts is not None:
            prompts = cv.vision_prompts
            design = teacher_vision_design(prompts, cv.path)
            visual = build_teacher_visual(prompts, design, cv.path, base_clip=name)
        vectors, scale = cv.vectors, cv.logit_scale
    else:
        vectors = _plain_class_vectors(model, classnames, plain_template)
        scale = float(model.logit_scale.detach().exp())
    logger.info(
        "Teacher %s%s: %d classes, %d-d, %d px",
        name,
        f" + run {run}" if run else "",
        len(classnames),
        vectors.shape[1],
        visual.input_resolution,
    )
    pre = getattr(model, "preprocess_cfg", None)  # the pixel statistics the model was trained with
    mean, std = (pre.mean, pre.std) if pre is not None else (CLIP_MEAN, CLIP_STD)
    return Teacher(model, visual, vectors, scale, name, run, mean, std).to(device)
