"""Replayable augmented views: random resized crop + flip whose parameters are stored data.

A teacher-output cache (``trainers/teacher_cache.py``) stores the teacher's outputs for K
augmented views of every training image. The student must later see *exactly* those views, so
the augmentation is split in two: :meth:`ViewPipeline.sample` draws the parameters of view
``k`` of image ``i`` from a seed derived from ``(seed, i, k)`` (torchvision's own
``RandomResizedCrop.get_params`` and flip draw, so the distribution is the training
pipeline's), and :meth:`ViewPipeline.apply` renders an image from stored parameters with the
same torchvision functionals ``RandomResizedCrop``/``RandomHorizontalFlip`` use.

Only pipelines made of ``random_resized_crop``, ``random_flip`` and ``normalize`` can be
replayed (PromptKD's pipeline); anything else (colour jitter, RandAugment, ...) draws more
random state than a crop box and a flip bit and is refused with a clear message.

A view is five int32 numbers: ``top, left, height, width, flip`` (:data:`VIEW_FIELDS`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
import torchvision.transforms.functional as F
from torchvision.transforms import RandomResizedCrop

from dassl.utils.errors import InvalidInputError

from .transforms import INTERPOLATION_MODES

__all__ = ["VIEW_FIELDS", "REPLAYABLE_TRANSFORMS", "ViewPipeline", "view_seed"]

VIEW_FIELDS = ("top", "left", "height", "width", "flip")
REPLAYABLE_TRANSFORMS = ("random_resized_crop", "random_flip", "normalize")
# torchvision's RandomResizedCrop default aspect-ratio range (Dassl never sets another).
_RATIO = (3.0 / 4.0, 4.0 / 3.0)


def view_seed(seed: int, index: int, view: int) -> int:
    """A 63-bit seed for view ``view`` of item ``index``, independent across all three."""
    state = np.random.SeedSequence([int(seed) & 0xFFFFFFFF, int(index), int(view)])
    return int(state.generate_state(2, dtype=np.uint32).astype(np.uint64).dot([1, 1 << 31]))


@dataclass(frozen=True)
class ViewPipeline:
    """The training transform in replayable form (explicit arguments; see :meth:`from_cfg`)."""

    size: tuple[int, int]
    scale: tuple[float, float]
    interpolation: str = "bicubic"
    flip: bool = True
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    ratio: tuple[float, float] = _RATIO

    @classmethod
    def from_cfg(cls, cfg: Any) -> ViewPipeline:
        """From ``cfg.INPUT``; refuses pipelines whose randomness is not a crop box and a flip."""
        inp = cfg.INPUT
        choices = list(inp.TRANSFORMS)
        extra = [c for c in choices if c not in REPLAYABLE_TRANSFORMS]
        if extra or "random_resized_crop" not in choices or inp.NO_TRANSFORM:
            raise InvalidInputError(
                f"INPUT.TRANSFORMS {choices} cannot be replayed from stored views (extra: {extra}); "
                f"a teacher-output cache needs 'random_resized_crop' plus optionally 'random_flip' "
                f"and 'normalize' (set TRAINER.PROMPTKD.TEACHER_CACHE '' to train online)"
            )
        if inp.INTERPOLATION not in INTERPOLATION_MODES:
            raise InvalidInputError(f"INPUT.INTERPOLATION {inp.INTERPOLATION!r} is unknown")
        normalize = "normalize" in choices
        return cls(
            size=(int(inp.SIZE[0]), int(inp.SIZE[1])),
            scale=(float(inp.RRCROP_SCALE[0]), float(inp.RRCROP_SCALE[1])),
            interpolation=str(inp.INTERPOLATION),
            flip="random_flip" in choices,
            mean=tuple(float(v) for v in inp.PIXEL_MEAN) if normalize else None,
            std=tuple(float(v) for v in inp.PIXEL_STD) if normalize else None,
        )

    def fingerprint(self) -> str:
        """Canonical JSON of every parameter: two pipelines render alike iff these are equal."""
        return json.dumps(asdict(self), sort_keys=True)

    def sample(self, width: int, height: int, seed: int, index: int, view: int) -> np.ndarray:
        """Parameters (``VIEW_FIELDS``, int32) of view ``view`` of item ``index``.

        Draws with torchvision's ``RandomResizedCrop.get_params`` then the flip coin, in the
        order the training ``Compose`` draws them, from a private seed: the global RNG is left
        untouched.
        """
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(view_seed(seed, index, view))
            # get_params only reads the size: a stride-0 tensor of that shape allocates nothing
            probe = torch.empty(1).expand(3, int(height), int(width))
            top, left, h, w = RandomResizedCrop.get_params(
                probe, list(self.scale), list(self.ratio)
            )
            flip = bool(torch.rand(1) < 0.5) if self.flip else False
        return np.array([top, left, h, w, int(flip)], dtype=np.int32)

    def sample_views(
        self, width: int, height: int, seed: int, index: int, views: int
    ) -> np.ndarray:
        """``[views, 5]`` parameters of views ``0..views-1`` of item ``index``."""
        return np.stack([self.sample(width, height, seed, index, k) for k in range(views)])

    def apply(self, img: Any, params: Sequence[int] | np.ndarray) -> torch.Tensor:
        """Render one view of a PIL image from its stored parameters (a normalised tensor)."""
        top, left, h, w, flip = (int(v) for v in params)
        mode = INTERPOLATION_MODES[self.interpolation]
        out = F.resized_crop(img, top, left, h, w, list(self.size), mode, antialias=True)
        if flip:
            out = F.hflip(out)
        out = F.to_tensor(out)
        if self.mean is not None:
            out = F.normalize(out, list(self.mean), list(self.std))
        return out

    def transform_for(self, params: Sequence[int] | np.ndarray) -> Callable[[Any], torch.Tensor]:
        """A one-image transform rendering the view ``params`` (for loaders that take a tfm)."""
        return lambda img: self.apply(img, params)
