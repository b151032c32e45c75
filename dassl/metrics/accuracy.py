"""Top-k accuracy in percent, as the prompt trainers log it."""

from __future__ import annotations

from collections.abc import Sequence

import torch

__all__ = ["compute_accuracy"]


def compute_accuracy(
    output: torch.Tensor | Sequence[torch.Tensor], target: torch.Tensor, topk: Sequence[int] = (1,)
) -> list[torch.Tensor]:
    """Return, for each k, a 1-element float tensor with the top-k accuracy (0..100).

    Args:
        output: logits (batch, num_classes), or a tuple/list whose first item is the logits.
        target: ground-truth labels (batch,).
        topk: the k values.
    """
    if isinstance(output, (tuple, list)):
        output = output[0]
    if output.dim() != 2 or target.dim() != 1 or output.size(0) != target.size(0):
        raise ValueError(
            "compute_accuracy expects logits of shape (batch, classes) and labels of shape "
            f"(batch,), got {tuple(output.shape)} and {tuple(target.shape)}"
        )
    maxk = max(topk)
    if maxk > output.size(1):
        raise ValueError(f"top-{maxk} accuracy needs at least {maxk} classes, got {output.size(1)}")
    batch_size = target.size(0)
    _, pred = output.topk(maxk, 1, True, True)
    correct = pred.t().eq(target.view(1, -1).expand_as(pred.t()))
    res = []
    for k in topk:
        correct_k = correct[:k].reshape(-1).float().sum(0, keepdim=True)
        res.append(correct_k.mul_(100.0 / batch_size))
    return res
