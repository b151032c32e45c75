"""The one template-ensemble builder behind every text classifier of this package.

``build_zero_shot_classifier(encode, classnames, templates)`` formats every (class, template)
pair, encodes the texts in batches and averages over templates: zero-shot CLIP (one template or
an ensemble), PromptSRC's frozen ensemble features, and a prompt trainer's class vectors (one
template ``"{}"``, ``encode`` = the prompted text tower) all come from it.

Template sets (``TRAINER.ZSCLIP.TEMPLATES``): ``single`` (the dataset's CoOp template),
``ensemble`` (CoOp's 7 selected ImageNet templates + the dataset's, as ZeroshotCLIP2) and
``imagenet`` (the 60-template ensemble PromptSRC uses).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from dassl.utils import InvalidInputError

from .imagenet_templates import IMAGENET_TEMPLATES, IMAGENET_TEMPLATES_SELECT

__all__ = [
    "CUSTOM_TEMPLATES",
    "TEMPLATE_SETS",
    "build_zero_shot_classifier",
    "template_for",
    "templates_for",
]

# CoOp's per-dataset templates (data), plus the embedded toy datasets.
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
TEMPLATE_SETS = ("single", "ensemble", "imagenet")


def template_for(dataset_name: str) -> str:
    """The dataset's template; unknown datasets fail with the list of known ones."""
    try:
        return CUSTOM_TEMPLATES[dataset_name]
    except KeyError:
        raise InvalidInputError(
            f"No prompt template for dataset {dataset_name!r}; known: {sorted(CUSTOM_TEMPLATES)} "
            "(add one to trainers.zero_shot.CUSTOM_TEMPLATES, or set TRAINER.ZSCLIP.TEMPLATES "
            "imagenet)"
        ) from None


def templates_for(template_set: str, dataset_name: str) -> list[str]:
    """The templates of ``template_set`` (one of :data:`TEMPLATE_SETS`) for a dataset."""
    if template_set == "single":
        return [template_for(dataset_name)]
    if template_set == "ensemble":
        extra = [] if dataset_name == "ImageNet" else [template_for(dataset_name)]
        return list(IMAGENET_TEMPLATES_SELECT) + extra
    if template_set == "imagenet":
        return list(IMAGENET_TEMPLATES)
    raise InvalidInputError(
        f"TRAINER.ZSCLIP.TEMPLATES must be one of {list(TEMPLATE_SETS)}, got {template_set!r}"
    )


@torch.no_grad()
def build_zero_shot_classifier(
    encode: Callable[[list[str]], torch.Tensor],
    classnames: Sequence[str],
    templates: Sequence[str] = ("{}",),
    normalize_each: bool = True,
    batch_size: int = 256,
) -> torch.Tensor:
    """``(C, D)`` L2-normalised class embeddings, float32.

    ``encode(texts)`` returns text features of a list of strings. The per-class mean over
    templates is of L2-normalised features (``normalize_each``, CoOp's ZeroshotCLIP2 and
    open_clip) or of raw features (upstream PromptSRC's frozen ensemble); then renormalised.
    Underscores in class names become spaces.
    """
    names = [c.replace("_", " ") for c in classnames]
    texts = [t.format(n) for n in names for t in templates]  # class-major
    feats = torch.cat(
        [encode(texts[i : i + batch_size]).float() for i in range(0, len(texts), batch_size)]
    )
    feats = feats.reshape(len(names), len(templates), -1)
    if normalize_each:
        feats = feats / feats.norm(dim=-1, keepdim=True)
    mean = feats.mean(dim=1)
    return mean / mean.norm(dim=-1, keepdim=True)
