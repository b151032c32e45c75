"""Memory knobs of a prompted-CLIP training step: activation checkpointing and class chunking.

The PromptSRC teacher runs its prompted text encoder over *all* training classes with
gradients every step; stored activations grow as ``C x 77 tokens x layers`` and exhaust GPU
memory on ImageNet upstream (official issues #3, #8, #10, #23). Two exact remedies:

- **activation checkpointing** of a tower (``Transformer.set_grad_checkpointing``): each
  residual block's input is kept, its internals are recomputed in backward;
- **class chunking** (``class_chunk = n``): the text encoder runs on ``n`` classes at a time,
  each chunk under a checkpoint, so backward recomputes one chunk at a time and only the
  prompt embeddings of all classes stay stored. Classes never interact in the text encoder, so
  the features and gradients are those of the unchunked pass (equality is tested; CPU kernels
  give bit-identical results for the chunk sizes tested, other sizes may differ in the last bit).

Without gradients (evaluation, class-vector export) chunking only bounds the working set.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

__all__ = ["encode_text_chunked", "set_tower_checkpointing", "configure_teacher_memory"]


def encode_text_chunked(
    text_encoder: nn.Module, prompts: torch.Tensor, tokenized: torch.Tensor, chunk: int = 0
) -> torch.Tensor:
    """``text_encoder(prompts, tokenized)`` over ``chunk`` classes at a time (0: all at once)."""
    n = prompts.shape[0]
    if chunk <= 0 or n <= chunk:
        return text_encoder(prompts, tokenized)
    grad = torch.is_grad_enabled()
    out = []
    for i in range(0, n, chunk):
        p, t = prompts[i : i + chunk], tokenized[i : i + chunk]
        out.append(
            checkpoint(text_encoder, p, t, use_reentrant=False) if grad else text_encoder(p, t)
        )
    return torch.cat(out)


def set_tower_checkpointing(model: nn.Module, text: bool, image: bool) -> None:
    """Checkpoint the blocks of ``model.text_encoder`` / ``model.image_encoder`` transformers."""
    model.text_encoder.transformer.set_grad_checkpointing(text)
    tower = getattr(model.image_encoder, "transformer", None)
    if tower is None:
        if image:
            raise ValueError(
                "activation checkpointing of the image tower needs a ViT (this backbone is a ResNet)"
            )
        return
    tower.set_grad_checkpointing(image)


def configure_teacher_memory(model: nn.Module, text: bool, image: bool, class_chunk: int) -> None:
    """Apply both knobs to a ``PromptedCLIP`` (reads ``class_chunk`` in ``text_features``)."""
    if class_chunk < 0:
        raise ValueError(f"the class chunk must be >= 0 (0 = off), got {class_chunk}")
    set_tower_checkpointing(model, text, image)
    model.class_chunk = int(class_chunk)
