"""Student feature projector: maps the student image feature onto the teacher's class-vector space.

Dimensions come from the two models (student ``output_dim`` -> class-vector dim), never from
constants: upstream hard-codes ``512 -> 768`` and breaks for any other teacher/student pair.

Two forms:
- ``"mlp"`` (default, the paper's 2-layer MLP): ``Linear -> ReLU -> Linear`` (``num_layers``
  Linear layers, hidden width = output width as upstream).
- ``"conv_bn"`` (upstream parity): ``Conv1x1 -> BatchNorm -> ReLU -> Conv1x1`` on a 1x1 map,
  parameter names ``conv1.{0,1,3}.*`` as upstream's ``Feature_Trans_Module_two_layer`` so an
  upstream student checkpoint (``VPT_image_trans.conv1.*``) loads strictly. Note BatchNorm at
  batch size 8 is noisy; it is offered for parity only.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["MLPProjector", "ConvBNProjector", "build_projector", "PROJECTOR_TYPES"]

PROJECTOR_TYPES = ("mlp", "conv_bn")


class MLPProjector(nn.Module):
    """``num_layers`` Linear layers with ReLU in between (1 layer = a linear map)."""

    def __init__(
        self, in_dim: int, out_dim: int, num_layers: int = 2, hidden_dim: int | None = None
    ):
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"projector num_layers must be >= 1, got {num_layers}")
        hidden = hidden_dim or out_dim
        dims = [in_dim] + [hidden] * (num_layers - 1) + [out_dim]
        layers: list[nn.Module] = []
        for i in range(num_layers):
            layers.append(nn.Linear(dims[i], dims[i + 1]))
            if i < num_layers - 1:
                layers.append(nn.ReLU(inplace=True))
        self.layers = nn.Sequential(*layers)
        self.in_dim, self.out_dim = in_dim, out_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class ConvBNProjector(nn.Module):
    """Upstream ``Feature_Trans_Module_two_layer`` (same parameter names), for parity."""

    def __init__(self, in_dim: int, out_dim: int):
        super().__init__()
        self.conv1 = nn.Sequential(
            nn.Conv2d(in_dim, out_dim, 1),
            nn.BatchNorm2d(out_dim),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_dim, out_dim, 1),
        )
        self.in_dim, self.out_dim = in_dim, out_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv1(x[:, :, None, None]).flatten(1)


def build_projector(kind: str, in_dim: int, out_dim: int, num_layers: int = 2) -> nn.Module:
    """Build a projector by name (``TRAINER.PROMPTKD.PROJECTOR``; layers from ``PROJECT_LAYER``)."""
    if kind == "mlp":
        return MLPProjector(in_dim, out_dim, num_layers=num_layers)
    if kind == "conv_bn":
        if num_layers != 2:
            raise ValueError(
                f"TRAINER.PROMPTKD.PROJECTOR 'conv_bn' is the upstream 2-layer form; "
                f"TRAINER.PROMPTKD.PROJECT_LAYER must be 2 (got {num_layers})"
            )
        return ConvBNProjector(in_dim, out_dim)
    raise ValueError(
        f"Unknown TRAINER.PROMPTKD.PROJECTOR {kind!r}; choose one of {list(PROJECTOR_TYPES)}"
    )
