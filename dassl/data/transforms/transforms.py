"""Image transform pipelines built from ``cfg.INPUT`` (Dassl's names, fixed order, same prints).

Semantics kept from upstream for result parity (spec P13): the *order* of ``INPUT.TRANSFORMS``
is ignored, training steps are applied in the fixed order below; ``center_crop`` is accepted but
adds nothing to training; without a crop, training resizes to exactly ``INPUT.SIZE`` (aspect
ratio not kept) while testing resizes the shorter side and center-crops.

Augmentation policies use torchvision implementations (documented differences):
* ``imagenet_policy``/``cifar10_policy``/``svhn_policy``: torchvision ``AutoAugment`` with the
  matching policy (the same 25 published sub-policies) and fill (128, 128, 128).
* ``randaugment``: torchvision ``RandAugment(num_ops=N, magnitude=M, num_magnitude_bins=31)``,
  i.e. N ops drawn with replacement at magnitude M/30 of each op's range. torchvision's op set
  is the 14-op RandAugment paper set (upstream Dassl adds Invert/SolarizeAdd/Cutout).
* ``randaugment_fixmatch``: same op set, N ops each with a uniformly random magnitude bin.
* ``randaugment2``: same op set, N ops each applied with p=0.6 at a random magnitude.
All randomness comes from torch's RNG, so seeded loaders (and their workers) are reproducible.
"""

from __future__ import annotations

from typing import Any

import torch
import torchvision.transforms.functional as F
from torchvision.transforms import (
    AutoAugment,
    AutoAugmentPolicy,
    CenterCrop,
    ColorJitter,
    Compose,
    GaussianBlur,
    InterpolationMode,
    Normalize,
    RandAugment,
    RandomApply,
    RandomCrop,
    RandomGrayscale,
    RandomHorizontalFlip,
    RandomResizedCrop,
    Resize,
    ToTensor,
)
from torchvision.transforms.autoaugment import _apply_op

from dassl.utils.logger import get_logger

__all__ = [
    "AVAI_CHOICES",
    "INTERPOLATION_MODES",
    "build_transform",
    "Random2DTranslation",
    "Cutout",
    "GaussianNoise",
    "InstanceNormalization",
    "RandAugmentFixMatch",
    "RandAugment2",
]

logger = get_logger(__name__)

AVAI_CHOICES = [
    "random_flip",
    "random_resized_crop",
    "normalize",
    "instance_norm",
    "random_crop",
    "random_translation",
    "center_crop",  # a default operation of the test pipeline; no-op for training
    "cutout",
    "imagenet_policy",
    "cifar10_policy",
    "svhn_policy",
    "randaugment",
    "randaugment_fixmatch",
    "randaugment2",
    "gaussian_noise",
    "colorjitter",
    "randomgrayscale",
    "gaussian_blur",
]

INTERPOLATION_MODES = {
    "bilinear": InterpolationMode.BILINEAR,
    "bicubic": InterpolationMode.BICUBIC,
    "nearest": InterpolationMode.NEAREST,
}

_FILL = [128, 128, 128]


def _rand() -> float:
    return torch.rand(1).item()


class Random2DTranslation:
    """With probability ``p`` enlarge to 1.125x (h, w) and random-crop back; else resize."""

    def __init__(
        self,
        height: int,
        width: int,
        p: float = 0.5,
        interpolation: InterpolationMode = InterpolationMode.BILINEAR,
    ):
        self.height = height
        self.width = width
        self.p = p
        self.interpolation = interpolation

    def __call__(self, img: Any) -> Any:
        if _rand() > self.p:
            return F.resize(img, [self.height, self.width], interpolation=self.interpolation)
        new_h = int(round(self.height * 1.125))
        new_w = int(round(self.width * 1.125))
        resized = F.resize(img, [new_h, new_w], interpolation=self.interpolation)
        top = int(torch.randint(0, new_h - self.height + 1, (1,)).item())
        left = int(torch.randint(0, new_w - self.width + 1, (1,)).item())
        return F.crop(resized, top, left, self.height, self.width)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(height={self.height}, width={self.width}, p={self.p})"


class Cutout:
    """Zero ``n_holes`` squares of side ``length`` (uniform centre, clipped) on a CHW tensor."""

    def __init__(self, n_holes: int = 1, length: int = 16):
        self.n_holes = n_holes
        self.length = length

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        h, w = img.shape[-2:]
        mask = torch.ones(h, w, dtype=img.dtype)
        for _ in range(self.n_holes):
            y = int(torch.randint(0, h, (1,)).item())
            x = int(torch.randint(0, w, (1,)).item())
            y1, y2 = max(0, y - self.length // 2), min(h, y + self.length // 2)
            x1, x2 = max(0, x - self.length // 2), min(w, x + self.length // 2)
            mask[y1:y2, x1:x2] = 0
        return img * mask

    def __repr__(self) -> str:
        return f"{type(self).__name__}(n_holes={self.n_holes}, length={self.length})"


class GaussianNoise:
    """With probability ``p`` add N(mean, std) noise to a tensor."""

    def __init__(self, mean: float = 0.0, std: float = 0.15, p: float = 0.5):
        self.mean = mean
        self.std = std
        self.p = p

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        if _rand() > self.p:
            return img
        return img + torch.randn(img.size()) * self.std + self.mean

    def __repr__(self) -> str:
        return f"{type(self).__name__}(mean={self.mean}, std={self.std}, p={self.p})"


class InstanceNormalization:
    """Standardise each channel of one image (eps 1e-8)."""

    def __init__(self, eps: float = 1e-8):
        self.eps = eps

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        c = img.shape[0]
        flat = img.reshape(c, -1)
        mean = flat.mean(1).view(c, 1, 1)
        std = flat.std(1).view(c, 1, 1)
        return (img - mean) / (std + self.eps)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(eps={self.eps})"


class _RandomMagnitudeRandAugment(RandAugment):
    """RandAugment op set with a random magnitude per op and an optional per-op probability."""

    def __init__(self, num_ops: int = 2, p: float = 1.0):
        super().__init__(num_ops=num_ops, num_magnitude_bins=31, fill=_FILL)
        self.p = p

    def forward(self, img: Any) -> Any:
        channels, height, width = F.get_dimensions(img)
        fill = [float(f) for f in self.fill] if self.fill is not None else None
        space = self._augmentation_space(self.num_magnitude_bins, (height, width))
        names = list(space.keys())
        for _ in range(self.num_ops):
            name = names[int(torch.randint(len(names), (1,)).item())]
            if self.p < 1.0 and _rand() > self.p:
                continue
            magnitudes, signed = space[name]
            magnitude = 0.0
            if magnitudes.ndim > 0:
                magnitude = float(magnitudes[int(torch.randint(len(magnitudes), (1,)).item())])
            if signed and torch.randint(2, (1,)).item():
                magnitude *= -1.0
            img = _apply_op(img, name, magnitude, interpolation=self.interpolation, fill=fill)
        return img


class RandAugmentFixMatch(_RandomMagnitudeRandAugment):
    """FixMatch-style RandAugment: ``n`` ops, each at a uniformly random magnitude."""

    def __init__(self, n: int = 2):
        super().__init__(num_ops=n, p=1.0)


class RandAugment2(_RandomMagnitudeRandAugment):
    """RandAugment with each of the ``n`` drawn ops applied with probability ``p``."""

    def __init__(self, n: int = 2, p: float = 0.6):
        super().__init__(num_ops=n, p=p)


def build_transform(cfg: Any, is_train: bool = True, choices: Any = None) -> Compose | None:
    """Build the train or test pipeline from ``cfg.INPUT``; None with ``INPUT.NO_TRANSFORM``."""
    if cfg.INPUT.NO_TRANSFORM:
        logger.info("Note: no transform is applied!")
        return None

    if choices is None:
        choices = cfg.INPUT.TRANSFORMS

    for choice in choices:
        if choice not in AVAI_CHOICES:
            raise AssertionError(
                f'Invalid transform "{choice}" in INPUT.TRANSFORMS; choose from {AVAI_CHOICES}'
            )
    if cfg.INPUT.INTERPOLATION not in INTERPOLATION_MODES:
        raise ValueError(
            f'INPUT.INTERPOLATION "{cfg.INPUT.INTERPOLATION}" is not one of '
            f"{sorted(INTERPOLATION_MODES)}"
        )

    target_size = f"{cfg.INPUT.SIZE[0]}x{cfg.INPUT.SIZE[1]}"
    normalize = Normalize(mean=cfg.INPUT.PIXEL_MEAN, std=cfg.INPUT.PIXEL_STD)

    if is_train:
        return _build_transform_train(cfg, choices, target_size, normalize)
    return _build_transform_test(cfg, choices, target_size, normalize)


def _add(tfms: list, line: str, tfm: Any) -> None:
    logger.info(line)
    tfms.append(tfm)


def _build_transform_train(cfg: Any, choices: Any, target_size: str, normalize: Any) -> Compose:
    logger.info("Building transform_train")
    tfm: list = []
    inp = cfg.INPUT
    interp_mode = INTERPOLATION_MODES[inp.INTERPOLATION]
    input_size = list(inp.SIZE)

    if "random_crop" not in choices and "random_resized_crop" not in choices:
        _add(tfm, f"+ resize to {target_size}", Resize(input_size, interpolation=interp_mode))
    if "random_translation" in choices:
        _add(tfm, "+ random translation", Random2DTranslation(input_size[0], input_size[1]))
    if "random_crop" in choices:
        pad = inp.CROP_PADDING
        _add(tfm, f"+ random crop (padding = {pad})", RandomCrop(input_size, padding=pad))
    if "random_resized_crop" in choices:
        s_ = inp.RRCROP_SCALE
        _add(
            tfm,
            f"+ random resized crop (size={inp.SIZE}, scale={s_})",
            RandomResizedCrop(input_size, scale=tuple(s_), interpolation=interp_mode),
        )
    if "random_flip" in choices:
        _add(tfm, "+ random flip", RandomHorizontalFlip())
    if "imagenet_policy" in choices:
        _add(tfm, "+ imagenet policy", AutoAugment(AutoAugmentPolicy.IMAGENET, fill=_FILL))
    if "cifar10_policy" in choices:
        _add(tfm, "+ cifar10 policy", AutoAugment(AutoAugmentPolicy.CIFAR10, fill=_FILL))
    if "svhn_policy" in choices:
        _add(tfm, "+ svhn policy", AutoAugment(AutoAugmentPolicy.SVHN, fill=_FILL))
    if "randaugment" in choices:
        n_, m_ = inp.RANDAUGMENT_N, inp.RANDAUGMENT_M
        _add(
            tfm,
            f"+ randaugment (n={n_}, m={m_})",
            RandAugment(num_ops=n_, magnitude=m_, num_magnitude_bins=31, fill=_FILL),
        )
    if "randaugment_fixmatch" in choices:
        n_ = inp.RANDAUGMENT_N
        _add(tfm, f"+ randaugment_fixmatch (n={n_})", RandAugmentFixMatch(n_))
    if "randaugment2" in choices:
        n_ = inp.RANDAUGMENT_N
        _add(tfm, f"+ randaugment2 (n={n_})", RandAugment2(n_))
    if "colorjitter" in choices:
        b_, c_, s_, h_ = inp.COLORJITTER_B, inp.COLORJITTER_C, inp.COLORJITTER_S, inp.COLORJITTER_H
        _add(
            tfm,
            f"+ color jitter (brightness={b_}, contrast={c_}, saturation={s_}, hue={h_})",
            ColorJitter(brightness=b_, contrast=c_, saturation=s_, hue=h_),
        )
    if "randomgrayscale" in choices:
        _add(tfm, "+ random gray scale", RandomGrayscale(p=inp.RGS_P))
    if "gaussian_blur" in choices:
        gb_k, gb_p = inp.GB_K, inp.GB_P
        _add(
            tfm,
            f"+ gaussian blur (kernel={gb_k})",
            RandomApply([GaussianBlur(gb_k)], p=gb_p),
        )

    _add(tfm, "+ to torch tensor of range [0, 1]", ToTensor())

    if "cutout" in choices:
        n_, len_ = inp.CUTOUT_N, inp.CUTOUT_LEN
        _add(tfm, f"+ cutout (n_holes={n_}, length={len_})", Cutout(n_, len_))
    if "normalize" in choices:
        _add(
            tfm,
            f"+ normalization (mean={inp.PIXEL_MEAN}, std={inp.PIXEL_STD})",
            normalize,
        )
    if "gaussian_noise" in choices:
        _add(
            tfm,
            f"+ gaussian noise (mean={inp.GN_MEAN}, std={inp.GN_STD})",
            GaussianNoise(inp.GN_MEAN, inp.GN_STD),
        )
    if "instance_norm" in choices:
        _add(tfm, "+ instance normalization", InstanceNormalization())

    return Compose(tfm)


def _build_transform_test(cfg: Any, choices: Any, target_size: str, normalize: Any) -> Compose:
    logger.info("Building transform_test")
    tfm: list = []
    inp = cfg.INPUT
    interp_mode = INTERPOLATION_MODES[inp.INTERPOLATION]
    input_size = list(inp.SIZE)

    _add(
        tfm,
        f"+ resize the smaller edge to {max(input_size)}",
        Resize(max(input_size), interpolation=interp_mode),
    )
    _add(tfm, f"+ {target_size} center crop", CenterCrop(input_size))
    _add(tfm, "+ to torch tensor of range [0, 1]", ToTensor())
    if "normalize" in choices:
        _add(
            tfm,
            f"+ normalization (mean={inp.PIXEL_MEAN}, std={inp.PIXEL_STD})",
            normalize,
        )
    if "instance_norm" in choices:
        _add(tfm, "+ instance normalization", InstanceNormalization())

    return Compose(tfm)
