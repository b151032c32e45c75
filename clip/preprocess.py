"""Test-time image preprocessing of a CLIP model: the recipe (size, mean/std, interpolation).

OpenAI's recipe is the default; converted checkpoints take theirs from their own config
(Hugging Face ``preprocessor_config.json``, OpenCLIP ``preprocess_cfg``), so the values a model
was trained with travel with the model (``model.preprocess_cfg``) and into the run's log.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from PIL import Image
from torchvision.transforms import (
    CenterCrop,
    Compose,
    InterpolationMode,
    Normalize,
    Resize,
    ToTensor,
)

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
INTERPOLATIONS = {
    "bicubic": InterpolationMode.BICUBIC,
    "bilinear": InterpolationMode.BILINEAR,
    "nearest": InterpolationMode.NEAREST,
}


@dataclass(frozen=True)
class PreprocessCfg:
    """Resize the shorter side to ``resize`` (default ``size``), center-crop ``size``, normalise."""

    size: int = 224
    mean: tuple[float, float, float] = CLIP_MEAN
    std: tuple[float, float, float] = CLIP_STD
    interpolation: str = "bicubic"
    resize: int | None = None

    def __post_init__(self) -> None:
        if self.interpolation not in INTERPOLATIONS:
            raise ValueError(
                f"interpolation {self.interpolation!r} is not supported; "
                f"expected one of {sorted(INTERPOLATIONS)}"
            )
        if len(self.mean) != 3 or len(self.std) != 3:
            raise ValueError(f"mean/std need 3 channels, got {self.mean} / {self.std}")

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["resize"] = self.resize or self.size
        return out


def _convert_image_to_rgb(image: Image.Image) -> Image.Image:
    return image.convert("RGB")


def build_preprocess(cfg: PreprocessCfg) -> Compose:
    """The torchvision pipeline of ``cfg`` (OpenAI's ``_transform`` for the default recipe)."""
    return Compose(
        [
            Resize(cfg.resize or cfg.size, interpolation=INTERPOLATIONS[cfg.interpolation]),
            CenterCrop(cfg.size),
            _convert_image_to_rgb,
            ToTensor(),
            Normalize(cfg.mean, cfg.std),
        ]
    )


def input_mismatches(input_cfg: Any, preprocess: PreprocessCfg) -> list[str]:
    """How a run's ``INPUT`` node (mean/std/interpolation) differs from the model's recipe.

    The training and test pipelines are built from ``INPUT``; a model trained with other
    statistics silently sees shifted inputs, so trainers log these differences as warnings.
    """
    out = []
    for key, theirs in (("PIXEL_MEAN", preprocess.mean), ("PIXEL_STD", preprocess.std)):
        ours = [float(v) for v in input_cfg[key]]
        if len(ours) != len(theirs) or any(abs(a - b) > 1e-6 for a, b in zip(ours, theirs)):
            out.append(f"INPUT.{key} {ours} differs from the model's {list(theirs)}")
    if input_cfg.INTERPOLATION != preprocess.interpolation:
        out.append(
            f"INPUT.INTERPOLATION {input_cfg.INTERPOLATION!r} differs from the model's "
            f"{preprocess.interpolation!r}"
        )
    return out
