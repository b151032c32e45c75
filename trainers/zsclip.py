"""Zero-shot CLIP baselines (CoOp's ``ZeroshotCLIP`` / ``ZeroshotCLIP2``), also a PromptKD teacher.

Class embeddings come from :func:`trainers.zero_shot.build_zero_shot_classifier` with the
template set ``TRAINER.ZSCLIP.TEMPLATES`` (``single``: the dataset's CoOp template; ``ensemble``:
ZeroshotCLIP2's; ``imagenet``: the 60 ImageNet templates). As a teacher (``tools/
export_class_vectors.py --trainer ZeroshotCLIP --teacher-weights <CLIP name or path>``) it
exports those embeddings of all classes, and its image tower is the plain CLIP's.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

import clip
from dassl.engine import TRAINER_REGISTRY, TrainerX
from dassl.engine.evaluation import EvalSubset
from dassl.utils.logger import get_logger

from .zero_shot import CUSTOM_TEMPLATES, build_zero_shot_classifier, template_for, templates_for

__all__ = ["CUSTOM_TEMPLATES", "ZeroshotCLIP", "ZeroshotCLIP2", "template_for"]

logger = get_logger(__name__)


@TRAINER_REGISTRY.register(builtin=True)
class ZeroshotCLIP(TrainerX):
    """Frozen CLIP scored against template-ensemble text features of the class names."""

    config_defaults = {"TRAINER.ZSCLIP": {"TEMPLATES": "single", "PREC": "fp32"}}
    default_templates = "single"

    def get_precision_name(self, cfg: Any) -> str:
        return cfg.TRAINER.ZSCLIP.PREC

    def templates(self) -> list[str]:
        name = self.cfg.TRAINER.ZSCLIP.TEMPLATES
        if type(self) is not ZeroshotCLIP and name == "single":
            name = self.default_templates
        return templates_for(name, self.cfg.DATASET.NAME)

    def build_model(self) -> None:
        cfg = self.cfg
        logger.info(f"Loading CLIP (backbone: {cfg.MODEL.BACKBONE.NAME})")
        model, _ = clip.load(cfg.MODEL.BACKBONE.NAME, device="cpu")
        model.requires_grad_(False)
        self.clip_model = model.to(self.precision.frozen_dtype).to(self.device).eval()
        self.text_features = self.teacher_class_vectors(self.dm.dataset.classnames).to(self.device)
        self.results_epoch = 0  # nothing is trained

    @torch.no_grad()
    def teacher_class_vectors(self, classnames: Sequence[str]) -> torch.Tensor:
        def encode(texts: list[str]) -> torch.Tensor:
            with self.precision.autocast():
                return self.clip_model.encode_text(clip.tokenize(texts).to(self.device))

        return build_zero_shot_classifier(encode, classnames, self.templates()).cpu()

    def teacher_vision_prompts(self) -> dict[str, torch.Tensor]:
        return {}

    def teacher_logit_scale(self) -> float:
        return float(self.clip_model.logit_scale.detach().float().exp())

    def prompt_settings(self) -> dict[str, Any]:
        return {"templates": self.templates()}

    def load_weights(self, path: str) -> str:
        """Nothing to load: the teacher is ``MODEL.BACKBONE.NAME`` itself."""
        return ""

    @torch.no_grad()
    def logits(self, images: torch.Tensor, text_features: torch.Tensor) -> torch.Tensor:
        with self.precision.autocast():
            feats = self.clip_model.encode_image(images).float()
        feats = feats / feats.norm(dim=-1, keepdim=True)
        return self.clip_model.logit_scale.exp().float() * feats @ text_features.t()

    def model_inference(self, images: torch.Tensor) -> torch.Tensor:
        return self.logits(images, self.text_features)

    def classifier_for(self, subset: EvalSubset) -> Callable[[torch.Tensor], torch.Tensor]:
        text = self.teacher_class_vectors(subset.classnames).to(self.device)
        return lambda images: self.logits(images, text)

    def forward_backward(self, batch: Any) -> Any:
        raise RuntimeError("ZeroshotCLIP has nothing to train; run it with --eval-only")


@TRAINER_REGISTRY.register(builtin=True)
class ZeroshotCLIP2(ZeroshotCLIP):
    """Prompt ensembling: CoOp's 7 selected ImageNet templates (+ the dataset's own)."""

    default_templates = "ensemble"
