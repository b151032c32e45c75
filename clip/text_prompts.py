"""Encode tokenized prompts whose token embeddings are partly replaced by given vectors.

The one text forward for learnt or sampled context (prompt learners, data-free style prompts):
token ids are embedded with the model's table, the vectors are written over the embeddings at
the given positions, and :meth:`clip.model.CLIP.encode_text_embeddings` does the rest (EOT
feature, projection). Positions are per prompt, so prompts of different lengths can share a
batch.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["placeholder_positions", "splice_embeddings", "encode_spliced"]


def placeholder_positions(tokenized: torch.Tensor, placeholder_id: int, count: int) -> torch.Tensor:
    """Indices ``[N, count]`` of the first ``count`` occurrences of ``placeholder_id`` per row.

    Raises ValueError naming the row when a prompt has fewer placeholders.
    """
    hits = tokenized == placeholder_id
    counts = hits.sum(dim=1)
    short = (counts < count).nonzero()
    if len(short):
        row = int(short[0])
        raise ValueError(
            f"prompt {row} has {int(counts[row])} placeholder tokens (id {placeholder_id}), "
            f"{count} needed"
        )
    # stable sort puts the placeholder positions first, in order
    order = torch.sort((~hits).to(torch.int8), dim=1, stable=True).indices
    return order[:, :count]


def splice_embeddings(
    embedded: torch.Tensor, vectors: torch.Tensor, positions: torch.Tensor
) -> torch.Tensor:
    """``embedded`` ``[N, L, D]`` with ``vectors`` ``[N, K, D]`` written at ``positions`` ``[N, K]``.

    Differentiable in ``vectors`` (out of place: ``embedded`` is not modified).
    """
    if vectors.ndim != 3 or positions.shape != vectors.shape[:2]:
        raise ValueError(
            f"vectors must be [N, K, D] and positions [N, K]; got {tuple(vectors.shape)} and "
            f"{tuple(positions.shape)}"
        )
    if embedded.shape[0] != vectors.shape[0] or embedded.shape[2] != vectors.shape[2]:
        raise ValueError(
            f"embedded {tuple(embedded.shape)} and vectors {tuple(vectors.shape)} do not fit"
        )
    index = positions.unsqueeze(-1).expand(-1, -1, embedded.shape[2])
    return embedded.scatter(1, index, vectors.to(embedded.dtype))


def encode_spliced(
    model: nn.Module,
    tokenized: torch.Tensor,
    vectors: torch.Tensor | None = None,
    positions: torch.Tensor | None = None,
    deep_prompts: list[torch.Tensor] | None = None,
) -> torch.Tensor:
    """Unnormalised text features of ``tokenized`` with ``vectors`` spliced in at ``positions``.

    ``model`` is a :class:`clip.model.CLIP`. Without vectors this equals ``model.encode_text``.
    """
    embedded = model.token_embedding(tokenized).type(model.dtype)
    if vectors is not None:
        if positions is None:
            raise ValueError("positions are required with vectors")
        embedded = splice_embeddings(embedded, vectors, positions)
    return model.encode_text_embeddings(embedded, tokenized, deep_prompts)
