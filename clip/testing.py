"""Tiny random CLIP checkpoints in the exact OpenAI format, for tests and toy pretraining.

Every function here builds a real :class:`clip.model.CLIP`, so the state dicts have exactly the
keys and shapes of an official checkpoint (ViT or ModifiedResNet image tower), plus the
``input_resolution`` / ``context_length`` / ``vocab_size`` entries that OpenAI's TorchScript
archives carry and that ``build_model`` drops. Unlike OpenAI's initialisation, LayerNorm and
BatchNorm parameters and biases are randomised too, so that a test cannot pass by accident
through an identity LayerNorm or a zero bias.

Typical use::

    from clip.testing import tiny_vit_state_dict, save_state_dict
    sd = tiny_vit_state_dict()                   # fp16, like the official .pt files
    path = save_state_dict(sd, tmp_path / "tiny.pt")
    model, preprocess = clip.load(str(path))     # fp32 on CPU

Widths of transformers must be multiples of 64: OpenAI infers heads = width // 64.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping, Sequence

import torch
from torch import nn

from clip.model import CLIP, META_KEYS, build_model

__all__ = [
    "tiny_vit_state_dict",
    "tiny_resnet_state_dict",
    "save_state_dict",
    "save_torchscript",
]


def _randomise_affine(model: nn.Module, generator: torch.Generator) -> None:
    """Give norms and biases non-trivial values (OpenAI's init leaves them at 1/0)."""
    for module in model.modules():
        if isinstance(module, (nn.LayerNorm, nn.BatchNorm2d)):
            with torch.no_grad():
                module.weight.copy_(1 + 0.1 * torch.randn(module.weight.shape, generator=generator))
                module.bias.copy_(0.1 * torch.randn(module.bias.shape, generator=generator))
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.copy_(
                    0.1 * torch.randn(module.running_mean.shape, generator=generator)
                )
                module.running_var.copy_(
                    1 + 0.2 * torch.rand(module.running_var.shape, generator=generator)
                )
        for name, param in module.named_parameters(recurse=False):
            if name.endswith("bias") and not isinstance(module, (nn.LayerNorm, nn.BatchNorm2d)):
                with torch.no_grad():
                    param.copy_(0.02 * torch.randn(param.shape, generator=generator))


def _state_dict_of(
    model: CLIP,
    seed: int,
    dtype: torch.dtype,
    image_resolution: int,
    context_length: int,
    vocab_size: int,
) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    _randomise_affine(model, generator)
    sd = {
        k: v.detach().clone().to(dtype) if v.is_floating_point() else v.detach().clone()
        for k, v in model.state_dict().items()
    }
    sd["input_resolution"] = torch.tensor(image_resolution)
    sd["context_length"] = torch.tensor(context_length)
    sd["vocab_size"] = torch.tensor(vocab_size)
    return sd


def tiny_vit_state_dict(
    embed_dim: int = 32,
    width: int = 64,
    layers: int = 2,
    patch: int = 4,
    image_resolution: int = 16,
    text_width: int = 64,
    text_layers: int = 2,
    context_length: int = 77,
    vocab_size: int = 49408,
    seed: int = 0,
    dtype: torch.dtype = torch.float16,
) -> dict[str, torch.Tensor]:
    """Random ViT CLIP state dict in OpenAI layout (fp16 by default, like the official files)."""
    if width % 64 or text_width % 64:
        raise ValueError("width and text_width must be multiples of 64 (heads = width // 64)")
    if image_resolution % patch:
        raise ValueError(f"image_resolution {image_resolution} is not a multiple of patch {patch}")
    torch.manual_seed(seed)
    model = CLIP(
        embed_dim,
        image_resolution,
        layers,
        width,
        patch,
        context_length,
        vocab_size,
        text_width,
        text_width // 64,
        text_layers,
    )
    return _state_dict_of(model, seed, dtype, image_resolution, context_length, vocab_size)


def tiny_resnet_state_dict(
    embed_dim: int = 32,
    layers: Sequence[int] = (1, 1, 1, 1),
    width: int = 8,
    image_resolution: int = 64,
    text_width: int = 64,
    text_layers: int = 2,
    context_length: int = 77,
    vocab_size: int = 49408,
    seed: int = 0,
    dtype: torch.dtype = torch.float16,
) -> dict[str, torch.Tensor]:
    """Random ModifiedResNet CLIP state dict in OpenAI layout.

    ``width`` is the stem width (64 for RN50); the pooled width is ``32 * width`` with
    ``width // 2`` heads of 64 channels, as OpenAI. ``image_resolution`` must be a multiple of 32.
    """
    if len(layers) != 4:
        raise ValueError(f"layers must have 4 entries, got {layers}")
    if image_resolution % 32 or width % 2 or text_width % 64:
        raise ValueError("need image_resolution % 32 == 0, even width, text_width % 64 == 0")
    torch.manual_seed(seed)
    model = CLIP(
        embed_dim,
        image_resolution,
        tuple(layers),
        width,
        None,
        context_length,
        vocab_size,
        text_width,
        text_width // 64,
        text_layers,
    )
    return _state_dict_of(model, seed, dtype, image_resolution, context_length, vocab_size)


def save_state_dict(state_dict: Mapping[str, torch.Tensor], path: str | os.PathLike) -> str:
    """Save a plain state dict with ``torch.save`` (loadable with ``weights_only=True``)."""
    path = os.fspath(path)
    torch.save(dict(state_dict), path)
    return path


def save_torchscript(state_dict: Mapping[str, torch.Tensor], path: str | os.PathLike) -> str:
    """Trace the model of ``state_dict`` and save it as a TorchScript archive (like OpenAI's .pt).

    The archive's ``state_dict()`` has the same keys and values as ``state_dict`` (metadata
    entries included, as buffers), so it exercises ``clip.load``'s TorchScript path.
    """
    path = os.fspath(path)
    model = build_model(state_dict)
    dtype = next(v for k, v in state_dict.items() if k == "text_projection").dtype
    model = model.to(dtype)
    # Restore the exact stored tensors (build_model keeps LayerNorms etc. in fp32).
    params = {k: v for k, v in state_dict.items() if k not in META_KEYS}
    model.load_state_dict(params)
    for key in META_KEYS:
        if key in state_dict:
            # Python int attributes of CLIP would shadow the buffers; the archive stores tensors.
            model.__dict__.pop(key, None)
            model.register_buffer(key, torch.as_tensor(state_dict[key]).clone())
    res = model.visual.input_resolution
    image = torch.zeros(1, 3, res, res, dtype=dtype)
    text = torch.zeros(1, model.context_length, dtype=torch.long)
    text[0, 0], text[0, 1] = 49406, model.vocab_size - 1
    with torch.no_grad(), warnings.catch_warnings():
        # Tracer and deprecation warnings are expected: the graph is fixed to these shapes.
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(model, (image, text), check_trace=False)
        torch.jit.save(traced, path)
    return path


def _randomise_all(model: nn.Module, seed: int) -> None:
    """Random norms/biases (as above) and LayerScale gammas, so every converted tensor matters."""
    generator = torch.Generator().manual_seed(seed)
    _randomise_affine(model, generator)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith("gamma"):
                param.copy_(0.5 + 0.2 * torch.randn(param.shape, generator=generator))


def tiny_hf_clip_snapshot(
    directory: str | os.PathLike,
    text_config: Mapping | None = None,
    vision_config: Mapping | None = None,
    projection_dim: int = 24,
    seed: int = 0,
    preprocessor: Mapping | None = None,
):
    """Save a tiny random Hugging Face ``CLIPModel`` with ``save_pretrained``; return the model.

    Needs ``transformers``. The sub-configs override small defaults (widths 48/64, 2 layers,
    heads of 16 channels, 16-pixel images with 8-pixel patches; OpenAI's vocabulary and context
    length, which :func:`clip.tokenize` feeds). ``preprocessor`` is written to
    ``preprocessor_config.json`` when given.
    """
    import json

    from transformers import CLIPConfig, CLIPModel

    text = {
        "hidden_size": 64,
        "intermediate_size": 96,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "vocab_size": 49408,
        "max_position_embeddings": 77,
        **(text_config or {}),
    }
    vision = {
        "hidden_size": 48,
        "intermediate_size": 80,
        "num_hidden_layers": 2,
        "num_attention_heads": 3,
        "image_size": 16,
        "patch_size": 8,
        **(vision_config or {}),
    }
    config = CLIPConfig(text_config=text, vision_config=vision, projection_dim=projection_dim)
    torch.manual_seed(seed)
    model = CLIPModel(config).eval()
    _randomise_all(model, seed)
    model.save_pretrained(os.fspath(directory))
    if preprocessor is not None:
        with open(os.path.join(directory, "preprocessor_config.json"), "w") as f:
            json.dump(dict(preprocessor), f)
    return model


def tiny_open_clip_model(config: Mapping, seed: int = 0):
    """A random OpenCLIP ``CLIP`` of a model config dict (needs ``open_clip_torch``), eval mode."""
    from open_clip.model import CLIP as OpenCLIP

    kwargs = {k: v for k, v in config.items() if k != "preprocess_cfg"}
    torch.manual_seed(seed)
    model = OpenCLIP(**kwargs).eval()
    _randomise_all(model, seed)
    return model


def fake_hf_cache(
    cache: str | os.PathLike,
    repo: str,
    files: str | os.PathLike,
    commit: str = "0123456789abcdef0123456789abcdef01234567",
) -> str:
    """Place the files of directory ``files`` in ``cache`` as huggingface_hub lays out ``repo``.

    ``models--ORG--NAME/refs/main`` holds ``commit``; the files go to ``snapshots/<commit>/``
    (real caches symlink them into ``blobs/``; copies resolve the same). Returns the snapshot.
    """
    import shutil

    base = os.path.join(os.fspath(cache), "models--" + repo.replace("/", "--"))
    os.makedirs(os.path.join(base, "refs"), exist_ok=True)
    with open(os.path.join(base, "refs", "main"), "w") as f:
        f.write(commit)
    snapshot = os.path.join(base, "snapshots", commit)
    shutil.copytree(os.fspath(files), snapshot)
    return snapshot
