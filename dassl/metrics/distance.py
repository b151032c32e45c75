"""Pairwise distance matrices between two sets of feature vectors."""

from __future__ import annotations

import torch
from torch.nn import functional as F

__all__ = ["compute_distance_matrix", "euclidean_squared_distance", "cosine_distance"]


def compute_distance_matrix(
    input1: torch.Tensor, input2: torch.Tensor, metric: str = "euclidean"
) -> torch.Tensor:
    """(m, d) x (n, d) -> (m, n) distances; ``metric`` is "euclidean" (squared) or "cosine"."""
    if not (isinstance(input1, torch.Tensor) and isinstance(input2, torch.Tensor)):
        raise TypeError("compute_distance_matrix expects two tensors")
    if input1.dim() != 2 or input2.dim() != 2:
        raise ValueError(f"Expected 2-D tensors, got {input1.dim()}-D and {input2.dim()}-D")
    if input1.size(1) != input2.size(1):
        raise ValueError(f"Feature sizes differ: {input1.size(1)} vs {input2.size(1)}")
    if metric == "euclidean":
        return euclidean_squared_distance(input1, input2)
    if metric == "cosine":
        return cosine_distance(input1, input2)
    raise ValueError(f"Unknown distance metric: {metric!r}; choose 'euclidean' or 'cosine'")


def euclidean_squared_distance(input1: torch.Tensor, input2: torch.Tensor) -> torch.Tensor:
    """||a||^2 + ||b||^2 - 2 a.b for every pair (clamped at 0 against rounding)."""
    sq1 = input1.pow(2).sum(dim=1, keepdim=True)
    sq2 = input2.pow(2).sum(dim=1, keepdim=True).t()
    return (sq1 + sq2 - 2.0 * input1 @ input2.t()).clamp_min(0.0)


def cosine_distance(input1: torch.Tensor, input2: torch.Tensor) -> torch.Tensor:
    """1 - cosine similarity for every pair."""
    return 1 - F.normalize(input1, p=2, dim=1) @ F.normalize(input2, p=2, dim=1).t()
