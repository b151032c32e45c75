"""Memory knobs of a prompted-CLIP training step: activation checkpointing and class chunking.

The PromptSRC teacher runs its prompted text encoder over *all* training classes with
gradients every step; stored activations grow as ``C x 77 tokens x layers`` and exhaust GPU
memory on ImageNet upstream (official issues #3, #8, #10, #23). Two exact remedies:

- **activation checkpointing** of a tower (``Transformer.set_grad_checkpointing``): each
  residual block's input is kept, its internals are recomputed in backward;
- **class chunking** (``class_chunk = n``): the transformer blocks of the text encoder run on
  ``n`` classes at a time, each chunk under a checkpoint, so backward recomputes one chunk at a
  time and only the embedded prompts of all classes stay stored. Classes never interact inside
  the blocks; every operation that does mix classes (the reductions giving the ``ctx`` and
  deep-prompt gradients, the final projection GEMM whose rounding depends on its row count)
  runs once over all classes outside the chunks, with the unchunked pass's layout. Features
  and gradients are therefore bit-identical to the unchunked pass (tested for several chunk
  sizes, and through a PromptKDTeacher training epoch).

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
    """``text_encoder(prompts, tokenized)`` over ``chunk`` classes at a time (0: all at once).

    With gradients each chunk runs under a checkpoint (see the module doc for why the result
    is bit-identical to one pass).
    """
    n = prompts.shape[0]
    if chunk <= 0 or n <= chunk:
        return text_encoder(prompts, tokenized)
    grad = torch.is_grad_enabled()
    dtype = text_encoder.text_projection.dtype
    # Outside the chunks, exactly as in the unchunked pass: what mixes classes in backward (the
    # embedded prompts -> ctx gradient, the deep prompts expanded to all classes) and the final
    # projection (a GEMM over the class rows, whose rounding depends on the row count).
    x = (prompts.to(dtype) + text_encoder.positional_embedding.to(dtype)).permute(1, 0, 2)
    deep = [
        None if b.VPT_shallow is None else b.VPT_shallow.to(dtype).unsqueeze(1).expand(-1, n, -1)
        for b in text_encoder.transformer.resblocks
    ]
    out = []
    for i in range(0, n, chunk):
        sl = slice(i, i + chunk)
        slices = [None if d is None else d[:, sl] for d in deep]
        args = (text_encoder, x[:, sl], tokenized[sl], *slices)
        out.append(checkpoint(_encode, *args, use_reentrant=False) if grad else _encode(*args))
    return torch.cat(out) @ text_encoder.text_projection


def _encode(
    text_encoder: nn.Module, x: torch.Tensor, tokenized: torch.Tensor, *deep: torch.Tensor | None
) -> torch.Tensor:
    """``TextEncoder.forward`` between the positional embedding (``x``: LND) and the projection.

    Mirrors ``TextEncoder.forward`` and ``ResidualAttentionBlock.forward`` ("after_sot" text
    prompts, ``[n_ctx, N, D]`` per block); the equality with them is tested.
    """
    transformer = text_encoder.transformer
    for block, ctx in zip(transformer.resblocks, deep, strict=True):
        if transformer.grad_checkpointing:
            x = checkpoint(_block, block, x, ctx, use_reentrant=False)
        else:
            x = _block(block, x, ctx)
    x = text_encoder.ln_final(x.permute(1, 0, 2))
    eot = tokenized.argmax(dim=-1)
    return x[torch.arange(x.shape[0], device=x.device), eot]


def _block(block: nn.Module, x: torch.Tensor, ctx: torch.Tensor | None) -> torch.Tensor:
    if ctx is not None:
        x = torch.cat([x[:1], ctx.to(x.dtype), x[1 + ctx.shape[0] :]], dim=0)
    x = x + block.attention(block.ln_1(x))
    return x + block.mlp(block.ln_2(x))


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
