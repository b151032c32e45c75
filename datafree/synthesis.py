"""Surrogate-image synthesis: optimise generator parameters until the teacher sees the prompt.

For a batch of (class, style) prompts: render images, take ``AUG.CUTOUTS`` augmented cutouts of
each (kornia: random resized crop, flip, small affine, noise), and minimise per image

    mean_cutouts d(f(cutout), g(prompt)) + TV_WEIGHT * tv + RANGE_WEIGHT * range
        + CE_WEIGHT * CE(logit_scale * f(cutout) @ class_vectors^T, class)

with Adam, where d is the spherical distance ``2 * arcsin(|a - b| / 2)^2`` (or ``1 - cos``).
The batch loss is the SUM over images, so an image's gradient does not depend on its batch.

Work plan: image ``i = n * C + c`` (sample n of class c) has a seed derived from
``(DATAFREE.SEED, i)``; images are cut into batches of ``BATCH_SIZE`` in that order and batch b
runs on rank ``b % world_size``. Its augmentations draw from the torch RNG seeded by
``(SEED, b)``, so results are fixed by the plan, not by the process or the resume point.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from dassl.utils import InvalidInputError, atomic_write
from dassl.utils.logger import get_logger

from .teacher import Teacher

__all__ = [
    "Item",
    "plan_items",
    "plan_batches",
    "shard",
    "image_seed",
    "Cutouts",
    "Synthesizer",
    "BatchResult",
    "match_distance",
    "total_variation",
    "range_penalty",
]

logger = get_logger(__name__)


def image_seed(seed: int, index: int, stream: int = 0) -> int:
    """A 63-bit seed for image ``index`` (``stream`` separates independent uses)."""
    state = np.random.SeedSequence([int(seed), int(index), int(stream)]).generate_state(2)
    return int((int(state[0]) << 31) ^ int(state[1])) % (2**63)


@dataclass(frozen=True)
class Item:
    index: int
    label: int
    n: int  # sample number within the class

    def relpath(self, class_dirs: Sequence[str]) -> str:
        return f"{class_dirs[self.label]}/{self.n:05d}.png"


def plan_items(num_classes: int, n_per_class: int) -> list[Item]:
    """Sample-major order, so every batch mixes classes."""
    return [Item(n * num_classes + c, c, n) for n in range(n_per_class) for c in range(num_classes)]


def plan_batches(items: Sequence[Item], batch_size: int) -> list[list[Item]]:
    if batch_size < 1:
        raise InvalidInputError(f"DATAFREE.BATCH_SIZE must be >= 1, got {batch_size}")
    return [list(items[i : i + batch_size]) for i in range(0, len(items), batch_size)]


def shard(num_batches: int, rank: int, world_size: int) -> list[int]:
    """Batch ids of ``rank``: round robin, so ranks get equal shares of every class."""
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} outside world size {world_size}")
    return list(range(rank, num_batches, world_size))


# ------------------------------------------------------------------------------------ losses


def match_distance(image_feats: torch.Tensor, text_feats: torch.Tensor, kind: str) -> torch.Tensor:
    """Row-wise distance between unit vectors: ``spherical`` or ``cosine``."""
    if kind == "spherical":
        chord = (image_feats - text_feats).norm(dim=-1)
        return 2 * torch.arcsin((chord / 2).clamp(max=1)) ** 2
    if kind == "cosine":
        return 1 - (image_feats * text_feats).sum(dim=-1)
    raise InvalidInputError(f"DATAFREE.LOSS.MATCH must be 'spherical' or 'cosine', got {kind!r}")


def total_variation(x: torch.Tensor) -> torch.Tensor:
    """Per-image mean squared difference of neighbouring pixels."""
    dh = (x[:, :, 1:, :] - x[:, :, :-1, :]).pow(2).mean(dim=(1, 2, 3))
    dw = (x[:, :, :, 1:] - x[:, :, :, :-1]).pow(2).mean(dim=(1, 2, 3))
    return dh + dw


def range_penalty(x: torch.Tensor) -> torch.Tensor:
    """Per-image mean squared excess outside [0, 1]."""
    return (F.relu(x - 1) ** 2 + F.relu(-x) ** 2).mean(dim=(1, 2, 3))


class Cutouts(nn.Module):
    """``n`` augmented views of every image (kornia), image-major: view j of image b at j*B+b."""

    def __init__(
        self,
        n: int,
        size: int,
        scale: Sequence[float] = (0.6, 1.0),
        flip: bool = True,
        degrees: float = 10.0,
        translate: float = 0.1,
        noise_std: float = 0.02,
    ):
        super().__init__()
        import kornia.augmentation as K

        if n < 1:
            raise InvalidInputError(f"DATAFREE.AUG.CUTOUTS must be >= 1, got {n}")
        self.n = n
        augs: list[nn.Module] = [
            K.RandomResizedCrop((size, size), scale=tuple(scale), ratio=(3 / 4, 4 / 3))
        ]
        if flip:
            augs.append(K.RandomHorizontalFlip())
        if degrees > 0 or translate > 0:
            augs.append(
                K.RandomAffine(
                    degrees=degrees, translate=(translate, translate), padding_mode="border"
                )
            )
        if noise_std > 0:
            augs.append(K.RandomGaussianNoise(std=noise_std, p=1.0))
        self.augment = nn.Sequential(*augs)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.augment(images.repeat(self.n, 1, 1, 1))


@dataclass
class BatchResult:
    images: np.ndarray  # uint8 [B, S, S, 3]
    losses: list[float]  # final per-image loss (last step)
    probs: list[float]  # teacher probability of the intended class on the saved image
    preds: list[int]


class Synthesizer:
    """Runs the optimisation of one batch; knows nothing of files or strategies."""

    def __init__(
        self,
        teacher: Teacher,
        generator: Any,
        cutouts: Cutouts,
        steps: int,
        lr: float,
        match: str = "spherical",
        tv_weight: float = 0.0,
        range_weight: float = 0.0,
        ce_weight: float = 0.0,
    ):
        if steps < 1 or lr <= 0:
            raise InvalidInputError("DATAFREE.OPTIM.STEPS must be >= 1 and OPTIM.LR > 0")
        match_distance(torch.zeros(1, 2), torch.zeros(1, 2), match)  # validates the name
        self.teacher, self.generator, self.cutouts = teacher, generator, cutouts
        self.steps, self.lr, self.match = int(steps), float(lr), match
        self.tv_weight, self.range_weight, self.ce_weight = tv_weight, range_weight, ce_weight

    @property
    def device(self) -> torch.device:
        return self.teacher.class_vectors.device

    def loss_per_image(
        self, raw: torch.Tensor, text_feats: torch.Tensor, labels: torch.Tensor
    ) -> torch.Tensor:
        b = raw.shape[0]
        # clamp with a straight-through gradient; the range penalty pulls the raw values back
        images = raw + (raw.clamp(0, 1) - raw).detach()
        feats = self.teacher.image_features(self.cutouts(images))  # [n*B, D], image-major
        n = feats.shape[0] // b
        text = text_feats.repeat(n, 1)
        loss = match_distance(feats, text, self.match).view(n, b).mean(dim=0)
        if self.ce_weight:
            ce = F.cross_entropy(self.teacher.logits(feats), labels.repeat(n), reduction="none")
            loss = loss + self.ce_weight * ce.view(n, b).mean(dim=0)
        if self.tv_weight:
            loss = loss + self.tv_weight * total_variation(images)
        if self.range_weight:
            loss = loss + self.range_weight * range_penalty(raw)
        return loss

    def run(
        self,
        text_feats: torch.Tensor,
        labels: torch.Tensor,
        seeds: Sequence[int],
        batch_seed: int,
    ) -> BatchResult:
        """Optimise one batch from fresh parameters (deterministic given the arguments)."""
        device = self.device
        text_feats, labels = text_feats.to(device), labels.to(device)
        devices = [device] if device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(batch_seed)
            params = [
                p.to(device).detach().requires_grad_(True)
                for p in self.generator.init_params(seeds)
            ]
            opt = torch.optim.Adam(params, lr=self.lr)
            for _ in range(self.steps):
                loss = self.loss_per_image(self.generator.render(params), text_feats, labels)
                opt.zero_grad(set_to_none=True)
                loss.sum().backward()
                opt.step()
            with torch.no_grad():
                final = self.generator.render(params).clamp(0, 1)
                # score exactly what is saved: the 8-bit image
                pixels = (final * 255).round().to(torch.uint8)
                feats = self.teacher.image_features(pixels.float() / 255)
                probs = self.teacher.logits(feats).softmax(dim=-1)
        return BatchResult(
            images=pixels.permute(0, 2, 3, 1).cpu().numpy(),
            losses=[float(x) for x in loss.detach().cpu()],
            probs=[float(p) for p in probs[torch.arange(len(labels)), labels].cpu()],
            preds=[int(p) for p in probs.argmax(dim=-1).cpu()],
        )


def save_png(path: str, image: np.ndarray) -> None:
    """Write an 8-bit RGB image atomically."""
    with atomic_write(path, "wb") as f:
        Image.fromarray(image, mode="RGB").save(f, format="PNG")


def write_json_atomic(path: str, obj: Any) -> None:
    with atomic_write(path) as f:
        json.dump(obj, f, indent=1)


class Progress:
    """Images/s and ETA on rank 0 (tqdm), plus a log line per ``log_every`` batches."""

    def __init__(self, total: int, enabled: bool):
        from tqdm import tqdm

        self.bar = tqdm(total=total, unit="img", disable=not enabled, dynamic_ncols=True)
        self.start, self.done, self.total = time.time(), 0, total

    def update(self, n: int) -> None:
        self.bar.update(n)
        self.done += n

    def rate(self) -> float:
        return self.done / max(time.time() - self.start, 1e-9)

    def eta(self) -> float:
        r = self.rate()
        return (self.total - self.done) / r if r > 0 else math.inf

    def close(self) -> None:
        self.bar.close()
