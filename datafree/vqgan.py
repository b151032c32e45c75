"""A taming-transformers VQGAN (``.yaml`` + Lightning ``.ckpt``) as a diffusers ``VQModel``.

The public VQGAN-CLIP generators (e.g. ``vqgan_imagenet_f16_16384``) are stored in taming's
layout. We rebuild them with the maintained diffusers ``VQModel`` (same GroupNorm-32/eps 1e-6,
swish, single-head attention, nearest-neighbour upsampling and straight-through quantizer) and a
key conversion, strictly: every converted key must exist in the model and vice versa; the
training-only ``loss.*`` tensors are dropped. The checkpoint is read with the restricted legacy
unpickler (Lightning files of that era pickle non-tensor objects), never a plain one.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from dassl.utils import InputFileNotFoundError, InvalidInputError

__all__ = ["VQGANError", "VQGANDecoder", "load_vqgan", "taming_to_diffusers", "vqmodel_kwargs"]

_TARGET = "taming.models.vqgan.VQModel"


class VQGANError(InvalidInputError):
    """The VQGAN config or checkpoint is missing, malformed or does not fit."""


def _read_config(path: str) -> dict[str, Any]:
    import yaml

    if not os.path.isfile(path):
        raise InputFileNotFoundError(
            f"VQGAN config not found: {path} (DATAFREE.GENERATOR.VQGAN.CONFIG: a taming "
            "model .yaml such as vqgan_imagenet_f16_16384.yaml)"
        )
    with open(path, encoding="utf-8") as f:
        doc = yaml.safe_load(f)
    try:
        model = doc["model"]
        params = model["params"]
        dd = params["ddconfig"]
        _ = params["embed_dim"], params["n_embed"]
    except (KeyError, TypeError) as err:
        raise VQGANError(
            f"{path}: not a taming VQGAN config (needs model.params.embed_dim, n_embed, "
            f"ddconfig; missing {err})"
        ) from err
    target = model.get("target", _TARGET)
    if target != _TARGET:
        raise VQGANError(f"{path}: model.target is {target!r}; only {_TARGET} is supported")
    if dd.get("double_z", False):
        raise VQGANError(f"{path}: ddconfig.double_z must be false for a VQGAN")
    if params.get("remap"):
        raise VQGANError(f"{path}: codebook remapping (model.params.remap) is not supported")
    if list(dd["ch_mult"])[0] != 1:
        raise VQGANError(f"{path}: ddconfig.ch_mult must start with 1 (taming's conv_in width)")
    return params


def vqmodel_kwargs(params: Mapping[str, Any]) -> dict[str, Any]:
    """diffusers ``VQModel`` arguments equivalent to taming's ``model.params``."""
    dd = params["ddconfig"]
    ch, mult, res = int(dd["ch"]), [int(m) for m in dd["ch_mult"]], int(dd["resolution"])
    attn = {int(r) for r in dd.get("attn_resolutions", [])}
    has_attn = [res // 2**i in attn for i in range(len(mult))]  # level i works at res / 2^i
    return {
        "in_channels": int(dd["in_channels"]),
        "out_channels": int(dd["out_ch"]),
        "down_block_types": tuple(
            "AttnDownEncoderBlock2D" if a else "DownEncoderBlock2D" for a in has_attn
        ),
        "up_block_types": tuple(
            "AttnUpDecoderBlock2D" if a else "UpDecoderBlock2D" for a in reversed(has_attn)
        ),
        "block_out_channels": tuple(ch * m for m in mult),
        "layers_per_block": int(dd["num_res_blocks"]),
        "latent_channels": int(dd["z_channels"]),
        "sample_size": res,
        "num_vq_embeddings": int(params["n_embed"]),
        "vq_embed_dim": int(params["embed_dim"]),
        "norm_num_groups": 32,
    }


_RESNET = {"nin_shortcut": "conv_shortcut"}
_ATTN = {"norm": "group_norm", "q": "to_q", "k": "to_k", "v": "to_v", "proj_out": "to_out.0"}


def _convert_key(key: str, n_levels: int) -> str:
    """One taming key -> its diffusers name (unchanged when the names agree)."""
    part, _, rest = key.partition(".")
    if part not in ("encoder", "decoder"):
        return key
    m = re.fullmatch(r"(down|up)\.(\d+)\.(block|attn)\.(\d+)\.(\w+)\.(weight|bias)", rest)
    if m:
        kind, level, sub, j, name, leaf = m.groups()
        block = int(level) if kind == "down" else n_levels - 1 - int(level)
        if sub == "block":
            return f"{part}.{kind}_blocks.{block}.resnets.{j}.{_RESNET.get(name, name)}.{leaf}"
        return f"{part}.{kind}_blocks.{block}.attentions.{j}.{_ATTN[name]}.{leaf}"
    m = re.fullmatch(r"(down|up)\.(\d+)\.(downsample|upsample)\.conv\.(weight|bias)", rest)
    if m:
        kind, level, sampler, leaf = m.groups()
        block = int(level) if kind == "down" else n_levels - 1 - int(level)
        return f"{part}.{kind}_blocks.{block}.{sampler}rs.0.conv.{leaf}"
    m = re.fullmatch(r"mid\.(block_1|block_2|attn_1)\.(\w+)\.(weight|bias)", rest)
    if m:
        name, sub, leaf = m.groups()
        if name == "attn_1":
            return f"{part}.mid_block.attentions.0.{_ATTN[sub]}.{leaf}"
        idx = 0 if name == "block_1" else 1
        return f"{part}.mid_block.resnets.{idx}.{_RESNET.get(sub, sub)}.{leaf}"
    if rest.startswith("norm_out."):
        return f"{part}.conv_norm_out.{rest[len('norm_out.') :]}"
    return key


def taming_to_diffusers(
    state_dict: Mapping[str, torch.Tensor], n_levels: int
) -> dict[str, torch.Tensor]:
    """Rename taming keys to diffusers' (``loss.*`` dropped; 1x1 attention convs -> linears)."""
    out = {}
    for key, value in state_dict.items():
        if key.startswith("loss."):
            continue
        new = _convert_key(key, n_levels)
        if ".attentions." in new and new.endswith(".weight") and value.ndim == 4:
            value = value[:, :, 0, 0]
        out[new] = value
    return out


class VQGANDecoder(nn.Module):
    """A VQGAN whose :meth:`decode_latent` maps a continuous latent to images in [0, 1]."""

    def __init__(self, vqmodel: nn.Module, resolution: int):
        super().__init__()
        self.vq = vqmodel
        self.resolution = resolution
        self.n_levels = len(vqmodel.config.block_out_channels)

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        """``(embed_dim, side, side)`` of a latent decoding to ``resolution`` pixels."""
        side = self.resolution // 2 ** (self.n_levels - 1)
        return (int(self.vq.config.vq_embed_dim), side, side)

    @property
    def codebook(self) -> torch.Tensor:
        return self.vq.quantize.embedding.weight

    def decode_latent(self, z: torch.Tensor, clamp: bool = True) -> torch.Tensor:
        """``decode(quantize(z))`` with the straight-through estimator, as ``(x + 1) / 2``."""
        z_q, _, _ = self.vq.quantize(z)
        x = (self.vq.decoder(self.vq.post_quant_conv(z_q)) + 1) / 2
        return x.clamp(0, 1) if clamp else x


def load_vqgan(config_path: str, checkpoint_path: str) -> VQGANDecoder:
    """Load a taming VQGAN strictly; frozen, eval mode, float32 on CPU."""
    from diffusers import VQModel

    from dassl.utils import load_checkpoint

    params = _read_config(config_path)
    if not os.path.isfile(checkpoint_path):
        raise InputFileNotFoundError(
            f"VQGAN checkpoint not found: {checkpoint_path} (DATAFREE.GENERATOR.VQGAN.CHECKPOINT: "
            "the taming .ckpt that belongs to the config)"
        )
    ckpt = load_checkpoint(checkpoint_path, legacy=True)
    sd = ckpt.get("state_dict") if isinstance(ckpt, Mapping) else None
    if not isinstance(sd, Mapping):
        raise VQGANError(f"{checkpoint_path}: no 'state_dict' (expected a Lightning .ckpt)")
    kwargs = vqmodel_kwargs(params)
    model = VQModel(**kwargs)
    converted = taming_to_diffusers(sd, len(kwargs["block_out_channels"]))
    expected = model.state_dict()
    missing = sorted(set(expected) - set(converted))
    unexpected = sorted(set(converted) - set(expected))
    shapes = [
        f"{k}: {tuple(v.shape)} vs {tuple(expected[k].shape)}"
        for k, v in converted.items()
        if k in expected and v.shape != expected[k].shape
    ]
    if missing or unexpected or shapes:
        raise VQGANError(
            f"{checkpoint_path} does not fit {config_path}: missing {missing[:8]}, unexpected "
            f"{unexpected[:8]}, shape mismatches {shapes[:8]}"
        )
    model.load_state_dict({k: v.float() for k, v in converted.items()}, strict=True)
    model.eval().requires_grad_(False)
    return VQGANDecoder(model, int(params["ddconfig"]["resolution"]))
