"""Zero-shot CLIP baseline (CoOp's ``ZeroshotCLIP``): one hand-written template per dataset."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

import clip
from dassl.engine import TRAINER_REGISTRY, TrainerX
from dassl.utils.logger import get_logger

from .imagenet_templates import IMAGENET_TEMPLATES_SELECT
from .results import EvalSubset, SubsetEvaluationMixin

__all__ = ["CUSTOM_TEMPLATES", "ZeroshotCLIP", "ZeroshotCLIP2", "template_for"]

logger = get_logger(__name__)

# CoOp's per-dataset templates (data), plus the embedded toy dataset.
CUSTOM_TEMPLATES = {
    "OxfordPets": "a photo of a {}, a type of pet.",
    "OxfordFlowers": "a photo of a {}, a type of flower.",
    "FGVCAircraft": "a photo of a {}, a type of aircraft.",
    "DescribableTextures": "{} texture.",
    "EuroSAT": "a centered satellite photo of {}.",
    "StanfordCars": "a photo of a {}.",
    "Food101": "a photo of {}, a type of food.",
    "SUN397": "a photo of a {}.",
    "Caltech101": "a photo of a {}.",
    "UCF101": "a photo of a person doing {}.",
    "ImageNet": "a photo of a {}.",
    "ImageNetSketch": "a photo of a {}.",
    "ImageNetV2": "a photo of a {}.",
    "ImageNetA": "a photo of a {}.",
    "ImageNetR": "a photo of a {}.",
    "ToyShapes": "a photo of a {}.",
    "ToyShapesDG": "a photo of a {}.",
    "PACS": "a photo of a {}.",
    "VLCS": "a photo of a {}.",
    "ImageCLEFDA": "a photo of a {}.",
    "VisDA17": "a photo of a {}.",
}


def template_for(dataset_name: str) -> str:
    """The dataset's template; unknown datasets fail with the list of known ones."""
    try:
        return CUSTOM_TEMPLATES[dataset_name]
    except KeyError:
        raise KeyError(
            f"ZeroshotCLIP has no prompt template for dataset {dataset_name!r}; known: "
            f"{sorted(CUSTOM_TEMPLATES)} (add one to trainers.zsclip.CUSTOM_TEMPLATES)"
        ) from None


@TRAINER_REGISTRY.register()
class ZeroshotCLIP(SubsetEvaluationMixin, TrainerX):
    """Frozen CLIP scored against ``template.format(class name)`` text features."""

    def templates(self) -> list[str]:
        return [template_for(self.cfg.DATASET.NAME)]

    def build_model(self) -> None:
        cfg = self.cfg
        logger.info(f"Loading CLIP (backbone: {cfg.MODEL.BACKBONE.NAME})")
        model, _ = clip.load(cfg.MODEL.BACKBONE.NAME, device="cpu")
        model.requires_grad_(False)
        self.clip_model = model.to(self.precision.frozen_dtype).to(self.device).eval()
        self.text_features = self.encode_classnames(self.dm.dataset.classnames)
        self.results_epoch = 0  # nothing is trained

    @torch.no_grad()
    def encode_classnames(self, classnames: Sequence[str]) -> torch.Tensor:
        """Normalised text features, averaged over the templates (one template: plain CoOp)."""
        templates = self.templates()
        total = 0
        for template in templates:
            prompts = [template.format(c.replace("_", " ")) for c in classnames]
            tokens = clip.tokenize(prompts).to(self.device)
            with self.precision.autocast():
                feats = self.clip_model.encode_text(tokens).float()
            total = total + feats / feats.norm(dim=-1, keepdim=True)
        mean = total / len(templates)
        return mean / mean.norm(dim=-1, keepdim=True)

    @torch.no_grad()
    def logits(self, images: torch.Tensor, text_features: torch.Tensor) -> torch.Tensor:
        with self.precision.autocast():
            feats = self.clip_model.encode_image(images).float()
        feats = feats / feats.norm(dim=-1, keepdim=True)
        return self.clip_model.logit_scale.exp().float() * feats @ text_features.t()

    def model_inference(self, images: torch.Tensor) -> torch.Tensor:
        return self.logits(images, self.text_features)

    def classifier_for(self, subset: EvalSubset) -> Callable[[torch.Tensor], torch.Tensor]:
        text = self.encode_classnames(subset.classnames)
        return lambda images: self.logits(images, text)

    def forward_backward(self, batch: Any) -> Any:
        raise RuntimeError("ZeroshotCLIP has nothing to train; run it with --eval-only")


@TRAINER_REGISTRY.register()
class ZeroshotCLIP2(ZeroshotCLIP):
    """Prompt ensembling: CoOp's 7 selected ImageNet templates (+ the dataset's own)."""

    def templates(self) -> list[str]:
        templates = list(IMAGENET_TEMPLATES_SELECT)
        if self.cfg.DATASET.NAME != "ImageNet":
            templates.append(template_for(self.cfg.DATASET.NAME))
        return templates
