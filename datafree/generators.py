"""Image generators: parameters -> images, one registry (``DATAFREE.GENERATOR.NAME``).

A generator (moved with ``.to(device)``) makes fresh, seeded parameters for a batch (:meth:`init_params`, one seed per image
so an image does not depend on its batch-mates) and renders them (:meth:`render`) to images
``[B, 3, S, S]`` that should lie in [0, 1]; the synthesis loop clamps them and penalises the
excess, so a generator may return values outside the range.

- ``fourier``: pixels parameterised by a Fourier spectrum scaled by 1/frequency in a
  decorrelated colour space, through a sigmoid (the feature-visualisation parameterisation:
  low frequencies dominate, no weights needed).
- ``vqgan``: the continuous latent of a taming VQGAN decoder, quantized with the
  straight-through estimator (the generator of VQGAN-CLIP and of the paper).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

from dassl.utils import InvalidInputError, Registry

from .vqgan import VQGANDecoder, VQGANError, load_vqgan

__all__ = [
    "GENERATOR_REGISTRY",
    "FourierGenerator",
    "VQGANGenerator",
    "build_generator",
    "load_vqgan",
    "VQGANError",
]

GENERATOR_REGISTRY = Registry("DATAFREE.GENERATOR.NAME")

# Square root of the RGB colour correlation of natural images (the constant used in
# feature-visualisation work), normalised by its largest column norm.
_COLOR_SQRT = torch.tensor([[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]])
_COLOR_SQRT = _COLOR_SQRT / _COLOR_SQRT.norm(dim=0).max()


def _seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(int(seed) % (2**63))


class FourierGenerator:
    """Decorrelated-colour Fourier parameterisation with a sigmoid."""

    def __init__(self, size: int, decay: float = 1.0, init_std: float = 0.01):
        if size < 2:
            raise InvalidInputError(f"image size must be >= 2, got {size}")
        self.size = int(size)
        self.init_std = float(init_std)
        fy = torch.fft.fftfreq(size)[:, None]
        fx = torch.fft.rfftfreq(size)[None, :]
        freq = torch.sqrt(fy**2 + fx**2).clamp_min(1.0 / size)
        # 1/f^decay amplitude, scaled so the rendered pixels have O(1) variance per unit of init
        self.scale = (1.0 / freq**decay) * math.sqrt(size * size)
        self.scale = self.scale / self.scale.mean()

    def to(self, device: torch.device | str) -> FourierGenerator:
        self.scale = self.scale.to(device)
        return self

    def init_params(self, seeds: Sequence[int]) -> list[torch.Tensor]:
        shape = (3, self.size, self.size // 2 + 1, 2)
        spec = torch.stack([torch.randn(shape, generator=_seeded(s)) for s in seeds])
        return [(spec * self.init_std).requires_grad_(True)]

    def render(self, params: Sequence[torch.Tensor]) -> torch.Tensor:
        (spec,) = params
        coeffs = torch.view_as_complex(spec) * self.scale.to(spec.device)
        x = torch.fft.irfft2(coeffs, s=(self.size, self.size), norm="ortho")
        x = torch.einsum("ij,bjhw->bihw", _COLOR_SQRT.to(x.device), x)
        return torch.sigmoid(x)


class VQGANGenerator:
    """Continuous VQGAN latents (initialised at random codebook entries) -> decoded images."""

    def __init__(self, decoder: VQGANDecoder):
        self.decoder = decoder
        self.size = decoder.resolution

    def to(self, device: torch.device | str) -> VQGANGenerator:
        self.decoder.to(device)
        return self

    def init_params(self, seeds: Sequence[int]) -> list[torch.Tensor]:
        dim, h, w = self.decoder.latent_shape
        book = self.decoder.codebook.detach()
        zs = []
        for s in seeds:
            idx = torch.randint(book.shape[0], (h * w,), generator=_seeded(s))
            zs.append(book.cpu()[idx].t().reshape(dim, h, w))
        return [torch.stack(zs).to(book.device).requires_grad_(True)]

    def render(self, params: Sequence[torch.Tensor]) -> torch.Tensor:
        (z,) = params
        return self.decoder.decode_latent(z, clamp=False)


@GENERATOR_REGISTRY.register()
def fourier(node: Any, size: int) -> FourierGenerator:
    return FourierGenerator(size, decay=node.FOURIER.DECAY, init_std=node.FOURIER.INIT_STD)


@GENERATOR_REGISTRY.register()
def vqgan(node: Any, size: int) -> VQGANGenerator:
    if not node.VQGAN.CONFIG or not node.VQGAN.CHECKPOINT:
        raise VQGANError(
            "the vqgan generator needs DATAFREE.GENERATOR.VQGAN.CONFIG (.yaml) and "
            "DATAFREE.GENERATOR.VQGAN.CHECKPOINT (.ckpt) of a taming VQGAN"
        )
    return VQGANGenerator(load_vqgan(node.VQGAN.CONFIG, node.VQGAN.CHECKPOINT))


def build_generator(node: Any, size: int):  # noqa: ANN201
    """The generator named ``node.NAME`` (``DATAFREE.GENERATOR``) for ``size``-pixel images."""
    try:
        builder = GENERATOR_REGISTRY.get(node.NAME)
    except KeyError as err:
        raise InvalidInputError(err.args[0]) from None
    return builder(node, size)
