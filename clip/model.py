"""OpenAI-compatible CLIP (ViT and ModifiedResNet image towers, causal text tower) with deep prompts.

The module layout and parameter names follow OpenAI's ``clip/model.py`` exactly, so every official
checkpoint (RN50, RN101, RN50x4, RN50x16, RN50x64, ViT-B/32, ViT-B/16, ViT-L/14,
ViT-L/14@336px) loads with a strict key check, and upstream trainer files (CoOp, CoCoOp, MaPLe,
PromptSRC, PromptKD) that poke at ``clip_model.transformer``, ``positional_embedding``,
``ln_final``, ``text_projection``, ``token_embedding``, ``dtype``, ``visual.conv1`` ... work
unchanged.

Towers
------
:class:`VisionCfg` and :class:`TextCfg` describe the two towers; :func:`build_vision_tower` and
:func:`build_text_tower` are the only places that construct them (used by :class:`CLIP`,
:func:`build_model`, :func:`build_visual` and the Hugging Face / OpenCLIP converters in
``clip/hf.py`` and ``clip/open_clip_convert.py``). OpenAI's checkpoints get OpenAI's options
(heads = width // 64, QuickGELU, eps 1e-5, class-token pooling); converted checkpoints pass theirs
(heads, MLP width, activation, LayerNorm eps, LayerScale, ``ln_pre`` off, average pooling, EOS
pooling) without changing any parameter name.

Deep prompts (``design_details``)
---------------------------------
``design_details`` is the dict upstream trainers pass to ``build_model``::

    {"trainer": "IVLP", "vision_depth": 9, "language_depth": 9,
     "vision_ctx": 4, "language_ctx": 4, "maple_length": 2}

``trainer`` is one of ``CoOp``, ``CoCoOp`` (no deep prompts), ``IVLP`` (PromptSRC/PromptKD),
``VPT`` (the IVLP mechanism on the image tower only: ``language_depth`` is forced to 0, as
upstream VPT configs set it) and ``MaPLe``
(prompts supplied by the caller). ``None`` means the plain OpenAI model.

IVLP / VPT semantics (as in muzairkhattak/PromptSRC and zhengli97/PromptKD ``clip/model.py``):

* Vision, ``vision_depth > 0``: the image tower owns ``visual.VPT`` ``[vision_ctx, width]``
  (normal, std 0.02). It is appended *after* the class and patch tokens, after the positional
  embedding is added and before ``ln_pre``. Residual blocks ``1 .. vision_depth-1`` own
  ``visual.transformer.resblocks.N.VPT_shallow`` ``[vision_ctx, width]`` and *replace* the last
  ``vision_ctx`` tokens of their input with it; later blocks leave those tokens alone. The output
  is ``ln_post`` of the class token times ``proj``.
* Text, ``language_depth > 0``: blocks ``1 .. language_depth-1`` own
  ``transformer.resblocks.N.VPT_shallow`` ``[language_ctx, width]`` and replace tokens
  ``1 .. language_ctx`` (right after SOT) of their input. The first-layer text prompts belong to
  the caller's prompt learner, which splices them into the token embeddings and calls
  :meth:`CLIP.encode_text_embeddings` (equivalent to upstream's ``TextEncoder``).
* Inside a PromptSRC/PromptKD ``CustomCLIP`` these parameters appear as ``image_encoder.VPT``,
  ``image_encoder.transformer.resblocks.N.VPT_shallow`` and
  ``text_encoder.transformer.resblocks.N.VPT_shallow``.

MaPLe semantics: blocks own no prompts. ``Transformer.forward`` accepts either a tensor or
upstream's list ``[x, compound_prompts_deeper, counter]``; with the list, block ``i >= 1`` replaces
its prompt tokens with ``compound_prompts_deeper[counter]`` (and increments ``counter``) while
prompts remain. ``VisionTransformer.forward(x, shared_ctx, compound_deeper_prompts)`` appends
``shared_ctx`` as the first-layer prompt, as MaPLe's ``VisionTransformer_MaPLe`` does.
:meth:`CLIP.encode_image` and :meth:`CLIP.encode_text_embeddings` expose the same through
keyword arguments.

Differences from upstream, on purpose: prompts are cast to the dtype of the activations instead
of a hard ``.half()`` (so fp32, bf16 and autocast work); one residual block implements every
variant; ``build_model`` loads strictly (only prompt parameters may be missing) and does not
mutate the caller's state dict; deep vision prompts on a ResNet tower raise instead of being
ignored.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from clip.errors import InvalidModelError

logger = logging.getLogger(__name__)

TRAINERS = ("CoOp", "CoCoOp", "IVLP", "VPT", "MaPLe")
# Non-tensor metadata stored in OpenAI's TorchScript archives; not module parameters.
META_KEYS = ("input_resolution", "context_length", "vocab_size")
PROMPT_PARAM_SUFFIXES = ("VPT", "VPT_shallow")
ACTIVATIONS = ("quick_gelu", "gelu", "gelu_tanh")
VISION_POOLS = ("tok", "avg")
TEXT_POOLS = ("argmax", "eos")


class StateDictError(ValueError):
    """A state dict that is not a (complete) OpenAI CLIP state dict."""


def resolve_design_details(design_details: Mapping[str, Any] | None) -> dict[str, Any]:
    """Validate ``design_details`` and fill absent depths/lengths with 0 (``None`` = plain CLIP)."""
    if design_details is None:
        return {
            "trainer": "CoOp",
            "vision_depth": 0,
            "language_depth": 0,
            "vision_ctx": 0,
            "language_ctx": 0,
            "maple_length": 0,
        }
    trainer = design_details.get("trainer")
    if trainer not in TRAINERS:
        raise ValueError(f"design_details['trainer'] = {trainer!r}; expected one of {TRAINERS}")
    out: dict[str, Any] = {"trainer": trainer}
    for key in ("vision_depth", "language_depth", "vision_ctx", "language_ctx", "maple_length"):
        value = design_details.get(key, 0)
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
            raise ValueError(f"design_details[{key!r}] must be a non-negative int, got {value!r}")
        out[key] = int(value)
    if trainer in ("CoOp", "CoCoOp"):
        # No deep prompts for these trainers, whatever the dict says (upstream behaviour).
        out.update(vision_depth=0, language_depth=0)
    if trainer == "VPT":
        out["language_depth"] = 0  # VPT prompts the image tower only
    if trainer == "MaPLe" and out["maple_length"] == 0 and "maple_length" not in design_details:
        raise ValueError("design_details for MaPLe needs 'maple_length'")
    return out


class LayerNorm(nn.LayerNorm):
    """LayerNorm computed in fp32 (fp16 statistics are inaccurate), cast back to the input dtype."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.weight.float() if self.weight is not None else None
        bias = self.bias.float() if self.bias is not None else None
        out = F.layer_norm(x.float(), self.normalized_shape, weight, bias, self.eps)
        return out.to(x.dtype)


class QuickGELU(nn.Module):
    """The sigmoid approximation of GELU that OpenAI's CLIP weights were trained with."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


def make_activation(name: str) -> nn.Module:
    """The MLP activation named by a tower config (OpenAI's weights use ``quick_gelu``)."""
    if name == "quick_gelu":
        return QuickGELU()
    if name == "gelu":
        return nn.GELU()
    if name == "gelu_tanh":
        return nn.GELU(approximate="tanh")
    raise ValueError(f"activation {name!r} is not supported; expected one of {ACTIVATIONS}")


class LayerScale(nn.Module):
    """Per-channel residual scale (OpenCLIP's ``ls_init_value``; parameter name ``gamma``)."""

    def __init__(self, dim: int, init_value: float) -> None:
        super().__init__()
        self.gamma = nn.Parameter(init_value * torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma.to(x.dtype)


def square_size(value: Any, what: str) -> int:
    """An image or patch size given as an int or a square pair (non-square ones are refused)."""
    if isinstance(value, (list, tuple)):
        if len(set(value)) != 1:
            raise InvalidModelError(
                f"{what} = {list(value)} is not square; only square is supported"
            )
        value = value[0]
    return int(value)


@dataclass(frozen=True)
class VisionCfg:
    """Hyper-parameters of an image tower (ViT when ``patch_size`` is set, else ModifiedResNet).

    The defaults are OpenAI's; converted checkpoints (Hugging Face, OpenCLIP) set the rest.
    ``pool`` is ``"tok"`` (class token) or ``"avg"`` (mean of the patch tokens, never of prompt
    tokens); ``final_ln_after_pool`` applies ``ln_post`` after pooling (it only matters for avg).
    """

    width: int
    layers: int | tuple[int, ...]
    heads: int
    output_dim: int
    image_size: int
    patch_size: int | None
    mlp_width: int | None = None  # None: 4 * width
    act: str = "quick_gelu"
    ln_eps: float = 1e-5
    ls_init_value: float | None = None
    pool: str = "tok"
    final_ln_after_pool: bool = False
    ln_pre: bool = True

    @property
    def is_vit(self) -> bool:
        return self.patch_size is not None


@dataclass(frozen=True)
class TextCfg:
    """Hyper-parameters of the causal text tower; defaults are OpenAI's.

    ``pool`` is ``"argmax"`` (the token with the largest id, OpenAI's EOT) or ``"eos"`` (the first
    ``eos_id``); both select the EOT token of :func:`clip.tokenize` ids.
    """

    width: int
    layers: int
    heads: int
    output_dim: int
    context_length: int = 77
    vocab_size: int = 49408
    mlp_width: int | None = None
    act: str = "quick_gelu"
    ln_eps: float = 1e-5
    ls_init_value: float | None = None
    pool: str = "argmax"
    eos_id: int | None = None
    causal: bool = True

    def __post_init__(self) -> None:
        if self.pool not in TEXT_POOLS:
            raise ValueError(f"text pool {self.pool!r} is not supported; expected {TEXT_POOLS}")
        if self.pool == "eos" and self.eos_id is None:
            raise ValueError("text pool 'eos' needs eos_id")


class Bottleneck(nn.Module):
    """ResNet bottleneck with anti-aliased striding: avgpool after the 3x3 conv, not a strided conv."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu2 = nn.ReLU(inplace=True)
        self.avgpool = nn.AvgPool2d(stride) if stride > 1 else nn.Identity()
        self.conv3 = nn.Conv2d(planes, planes * self.expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu3 = nn.ReLU(inplace=True)
        self.downsample: nn.Module | None = None
        if stride > 1 or inplanes != planes * self.expansion:
            self.downsample = nn.Sequential(
                OrderedDict(
                    [
                        ("-1", nn.AvgPool2d(stride)),
                        ("0", nn.Conv2d(inplanes, planes * self.expansion, 1, bias=False)),
                        ("1", nn.BatchNorm2d(planes * self.expansion)),
                    ]
                )
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.relu2(self.bn2(self.conv2(out)))
        out = self.avgpool(out)
        out = self.bn3(self.conv3(out))
        return self.relu3(out + identity)


class AttentionPool2d(nn.Module):
    """Attention pooling: the mean token (plus positional embedding) attends over the feature map."""

    def __init__(
        self, spacial_dim: int, embed_dim: int, num_heads: int, output_dim: int | None = None
    ) -> None:
        super().__init__()
        self.positional_embedding = nn.Parameter(
            torch.randn(spacial_dim**2 + 1, embed_dim) / embed_dim**0.5
        )
        self.k_proj = nn.Linear(embed_dim, embed_dim)
        self.q_proj = nn.Linear(embed_dim, embed_dim)
        self.v_proj = nn.Linear(embed_dim, embed_dim)
        self.c_proj = nn.Linear(embed_dim, output_dim or embed_dim)
        self.num_heads = num_heads

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(start_dim=2).permute(2, 0, 1)  # NCHW -> (HW)NC
        x = torch.cat([x.mean(dim=0, keepdim=True), x], dim=0)
        x = x + self.positional_embedding[:, None, :].to(x.dtype)
        out, _ = F.multi_head_attention_forward(
            query=x[:1],
            key=x,
            value=x,
            embed_dim_to_check=x.shape[-1],
            num_heads=self.num_heads,
            q_proj_weight=self.q_proj.weight,
            k_proj_weight=self.k_proj.weight,
            v_proj_weight=self.v_proj.weight,
            in_proj_weight=None,
            in_proj_bias=torch.cat([self.q_proj.bias, self.k_proj.bias, self.v_proj.bias]),
            bias_k=None,
            bias_v=None,
            add_zero_attn=False,
            dropout_p=0.0,
            out_proj_weight=self.c_proj.weight,
            out_proj_bias=self.c_proj.bias,
            use_separate_proj_weight=True,
            training=self.training,
            need_weights=False,
        )
        return out.squeeze(0)


class ModifiedResNet(nn.Module):
    """OpenAI's ResNet: 3-conv stem + avgpool, anti-aliased strided blocks, attention pooling."""

    def __init__(
        self,
        layers: tuple[int, int, int, int] | list[int],
        output_dim: int,
        heads: int,
        input_resolution: int = 224,
        width: int = 64,
    ) -> None:
        super().__init__()
        self.output_dim = output_dim
        self.input_resolution = input_resolution
        self.conv1 = nn.Conv2d(3, width // 2, 3, stride=2, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width // 2)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(width // 2, width // 2, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width // 2)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv3 = nn.Conv2d(width // 2, width, 3, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(width)
        self.relu3 = nn.ReLU(inplace=True)
        self.avgpool = nn.AvgPool2d(2)

        self._inplanes = width
        self.layer1 = self._make_layer(width, layers[0])
        self.layer2 = self._make_layer(width * 2, layers[1], stride=2)
        self.layer3 = self._make_layer(width * 4, layers[2], stride=2)
        self.layer4 = self._make_layer(width * 8, layers[3], stride=2)

        embed_dim = width * 32
        self.attnpool = AttentionPool2d(input_resolution // 32, embed_dim, heads, output_dim)

    def _make_layer(self, planes: int, blocks: int, stride: int = 1) -> nn.Sequential:
        modules = [Bottleneck(self._inplanes, planes, stride)]
        self._inplanes = planes * Bottleneck.expansion
        modules += [Bottleneck(self._inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*modules)

    def forward(
        self,
        x: torch.Tensor,
        shared_ctx: torch.Tensor | None = None,
        compound_deeper_prompts: list[torch.Tensor] | None = None,
    ) -> torch.Tensor:
        if shared_ctx is not None or compound_deeper_prompts:
            raise ValueError("prompts were passed to a ResNet image tower; deep prompts need a ViT")
        x = x.type(self.conv1.weight.dtype)
        x = self.relu1(self.bn1(self.conv1(x)))
        x = self.relu2(self.bn2(self.conv2(x)))
        x = self.relu3(self.bn3(self.conv3(x)))
        x = self.avgpool(x)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.attnpool(x)


class ResidualAttentionBlock(nn.Module):
    """Pre-LN transformer block; optionally replaces its prompt tokens before attending.

    ``prompt_position`` says where prompt tokens sit: ``"suffix"`` (vision: the last ``n`` tokens)
    or ``"after_sot"`` (text: tokens ``1..n``). When the block owns ``VPT_shallow`` (IVLP/VPT) it
    uses it unless the caller passes an explicit prompt (MaPLe). Prompts are cast to ``x.dtype``.
    """

    def __init__(
        self,
        d_model: int,
        n_head: int,
        attn_mask: torch.Tensor | None = None,
        prompt_position: str | None = None,
        n_ctx: int = 0,
        own_prompt: bool = False,
        *,
        mlp_width: int | None = None,
        act: str = "quick_gelu",
        ln_eps: float = 1e-5,
        ls_init_value: float | None = None,
    ) -> None:
        super().__init__()
        if prompt_position not in (None, "suffix", "after_sot"):
            raise ValueError("prompt_position must be None, 'suffix' or 'after_sot'")
        mlp_width = mlp_width or d_model * 4
        self.attn = nn.MultiheadAttention(d_model, n_head)
        self.ln_1 = LayerNorm(d_model, eps=ln_eps)
        self.mlp = nn.Sequential(
            OrderedDict(
                [
                    ("c_fc", nn.Linear(d_model, mlp_width)),
                    ("gelu", make_activation(act)),
                    ("c_proj", nn.Linear(mlp_width, d_model)),
                ]
            )
        )
        self.ln_2 = LayerNorm(d_model, eps=ln_eps)
        # LayerScale (OpenCLIP ``ls_init_value``); identities without parameters otherwise.
        scaled = ls_init_value is not None
        self.ls_1 = LayerScale(d_model, ls_init_value) if scaled else nn.Identity()
        self.ls_2 = LayerScale(d_model, ls_init_value) if scaled else nn.Identity()
        # A plain attribute, as in OpenAI: not part of the state dict.
        self.attn_mask = attn_mask
        self.prompt_position = prompt_position
        self.n_ctx = n_ctx
        if own_prompt:
            if prompt_position is None:
                raise ValueError("a block that owns a prompt needs a prompt_position")
            ctx = torch.empty(n_ctx, d_model)
            nn.init.normal_(ctx, std=0.02)
            self.VPT_shallow = nn.Parameter(ctx)
        else:
            self.register_parameter("VPT_shallow", None)

    def attention(self, x: torch.Tensor) -> torch.Tensor:
        mask = None
        if self.attn_mask is not None:
            n = x.shape[0]
            mask = self.attn_mask[:n, :n].to(dtype=x.dtype, device=x.device)
        return self.attn(x, x, x, need_weights=False, attn_mask=mask)[0]

    def insert_prompt(self, x: torch.Tensor, prompt: torch.Tensor) -> torch.Tensor:
        """Replace this block's prompt tokens of ``x`` (``[L, N, D]``) by ``prompt`` (``[n, D]``)."""
        n = prompt.shape[0]
        ctx = prompt.to(dtype=x.dtype, device=x.device).unsqueeze(1).expand(-1, x.shape[1], -1)
        if self.prompt_position == "suffix":
            return torch.cat([x[: x.shape[0] - n], ctx], dim=0)
        if self.prompt_position == "after_sot":
            return torch.cat([x[:1], ctx, x[1 + n :]], dim=0)
        raise ValueError("this block has no prompt_position; it cannot take prompts")

    def forward(self, x: torch.Tensor, prompt: torch.Tensor | None = None) -> torch.Tensor:
        if prompt is None:
            prompt = self.VPT_shallow
        if prompt is not None:
            x = self.insert_prompt(x, prompt)
        x = x + self.ls_1(self.attention(self.ln_1(x)))
        return x + self.ls_2(self.mlp(self.ln_2(x)))


class Transformer(nn.Module):
    """A stack of residual blocks; ``forward`` takes a tensor or MaPLe's ``[x, prompts, counter]``."""

    def __init__(
        self,
        width: int,
        layers: int,
        heads: int,
        attn_mask: torch.Tensor | None = None,
        prompts_needed: int = 0,
        text_layer: bool = False,
        design_details: Mapping[str, Any] | None = None,
        *,
        mlp_width: int | None = None,
        act: str = "quick_gelu",
        ln_eps: float = 1e-5,
        ls_init_value: float | None = None,
    ) -> None:
        super().__init__()
        self.width = width
        self.layers = layers
        self.grad_checkpointing = False
        details = resolve_design_details(design_details)
        trainer = details["trainer"]
        position: str | None = "after_sot" if text_layer else "suffix"
        if trainer in ("IVLP", "VPT"):
            n_ctx = details["language_ctx"] if text_layer else details["vision_ctx"]
            owns = [0 < i < prompts_needed for i in range(layers)]
        elif trainer == "MaPLe":
            n_ctx = details["maple_length"]
            owns = [False] * layers
        else:
            n_ctx, owns, position = 0, [False] * layers, None
        block = {
            "mlp_width": mlp_width,
            "act": act,
            "ln_eps": ln_eps,
            "ls_init_value": ls_init_value,
        }
        self.resblocks = nn.Sequential(
            *[
                ResidualAttentionBlock(width, heads, attn_mask, position, n_ctx, owns[i], **block)
                for i in range(layers)
            ]
        )

    def forward(self, x: torch.Tensor | list | tuple) -> torch.Tensor | list:
        if isinstance(x, (list, tuple)):
            h, deeper, counter = x
            deeper = list(deeper) if deeper is not None else []
            for i, block in enumerate(self.resblocks):
                prompt = None
                if i > 0 and counter < len(deeper):
                    prompt = deeper[counter]
                    counter += 1
                h = block(h, prompt)
            return [h, deeper, counter]
        for block in self.resblocks:
            if self.grad_checkpointing and torch.is_grad_enabled():
                x = checkpoint(block, x, use_reentrant=False)
            else:
                x = block(x)
        return x

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute each block's activations in backward instead of storing them (saves memory)."""
        self.grad_checkpointing = bool(enable)


class VisionTransformer(nn.Module):
    """ViT image tower; with IVLP/VPT it owns ``VPT`` (first-layer prompts after the patches).

    The keyword options beyond OpenAI's (activation, LayerNorm eps, LayerScale, ``ln_pre`` off,
    average pooling, LayerNorm after pooling) are those of :class:`VisionCfg`.
    """

    def __init__(
        self,
        input_resolution: int,
        patch_size: int,
        width: int,
        layers: int,
        heads: int,
        output_dim: int,
        design_details: Mapping[str, Any] | None = None,
        *,
        mlp_width: int | None = None,
        act: str = "quick_gelu",
        ln_eps: float = 1e-5,
        ls_init_value: float | None = None,
        pool: str = "tok",
        final_ln_after_pool: bool = False,
        ln_pre: bool = True,
    ) -> None:
        super().__init__()
        if pool not in VISION_POOLS:
            raise ValueError(f"vision pool {pool!r} is not supported; expected {VISION_POOLS}")
        details = resolve_design_details(design_details)
        self.input_resolution = input_resolution
        self.output_dim = output_dim
        self.pool = pool
        self.final_ln_after_pool = final_ln_after_pool
        self.conv1 = nn.Conv2d(3, width, kernel_size=patch_size, stride=patch_size, bias=False)
        prompted = details["trainer"] in ("IVLP", "VPT") and details["vision_depth"] > 0
        if prompted:
            ctx = torch.empty(details["vision_ctx"], width)
            nn.init.normal_(ctx, std=0.02)
            self.VPT = nn.Parameter(ctx)
        else:
            self.register_parameter("VPT", None)
        self.prompt_till_layer_visual = details["vision_depth"] if prompted else 0
        scale = width**-0.5
        self.class_embedding = nn.Parameter(scale * torch.randn(width))
        self.positional_embedding = nn.Parameter(
            scale * torch.randn((input_resolution // patch_size) ** 2 + 1, width)
        )
        self.ln_pre = LayerNorm(width, eps=ln_eps) if ln_pre else nn.Identity()
        self.transformer = Transformer(
            width,
            layers,
            heads,
            prompts_needed=self.prompt_till_layer_visual,
            design_details=details,
            mlp_width=mlp_width,
            act=act,
            ln_eps=ln_eps,
            ls_init_value=ls_init_value,
        )
        self.ln_post = LayerNorm(width, eps=ln_eps)
        self.proj = nn.Parameter(scale * torch.randn(width, output_dim))

    def forward(
        self,
        x: torch.Tensor,
        shared_ctx: torch.Tensor | None = None,
        compound_deeper_prompts: list[torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Encode images; ``shared_ctx``/``compound_deeper_prompts`` are MaPLe's outside prompts."""
        x = self.conv1(x)  # [N, width, grid, grid]
        x = x.reshape(x.shape[0], x.shape[1], -1).permute(0, 2, 1)  # [N, grid**2, width]
        cls = self.class_embedding.to(x.dtype) + torch.zeros(
            x.shape[0], 1, x.shape[-1], dtype=x.dtype, device=x.device
        )
        x = torch.cat([cls, x], dim=1)
        x = x + self.positional_embedding.to(x.dtype)
        first = shared_ctx if shared_ctx is not None else self.VPT
        if first is not None:
            x = torch.cat([x, first.to(x.dtype).expand(x.shape[0], -1, -1)], dim=1)
        x = self.ln_pre(x)
        x = x.permute(1, 0, 2)  # NLD -> LND
        if compound_deeper_prompts is not None:
            x = self.transformer([x, compound_deeper_prompts, 0])[0]
        else:
            x = self.transformer(x)
        x = x.permute(1, 0, 2)  # LND -> NLD
        if self.pool == "tok":
            x = self.ln_post(x[:, 0, :])  # LayerNorm is per token: before or after pooling alike
        else:
            patches = x[:, 1 : self.positional_embedding.shape[0], :]  # prompt tokens excluded
            if self.final_ln_after_pool:
                x = self.ln_post(patches.mean(dim=1))
            else:
                x = self.ln_post(patches).mean(dim=1)
        if self.proj is not None:
            x = x @ self.proj
        return x


def build_vision_tower(
    cfg: VisionCfg, design_details: Mapping[str, Any] | None = None
) -> nn.Module:
    """The image tower of ``cfg``: a ``VisionTransformer`` or a ``ModifiedResNet``.

    The one place where image towers are constructed (full models, teacher towers, converted
    checkpoints). Deep vision prompts on a ResNet tower raise.
    """
    details = resolve_design_details(design_details)
    if not cfg.is_vit:
        if details["trainer"] in ("IVLP", "VPT") and details["vision_depth"] > 0:
            raise ValueError(
                "deep vision prompts (vision_depth > 0) need a ViT image tower, "
                "but this checkpoint has a ResNet one; set vision_depth to 0"
            )
        return ModifiedResNet(
            layers=cfg.layers,
            output_dim=cfg.output_dim,
            heads=cfg.heads,
            input_resolution=cfg.image_size,
            width=cfg.width,
        )
    return VisionTransformer(
        input_resolution=cfg.image_size,
        patch_size=cfg.patch_size,
        width=cfg.width,
        layers=cfg.layers,
        heads=cfg.heads,
        output_dim=cfg.output_dim,
        design_details=details,
        mlp_width=cfg.mlp_width,
        act=cfg.act,
        ln_eps=cfg.ln_eps,
        ls_init_value=cfg.ls_init_value,
        pool=cfg.pool,
        final_ln_after_pool=cfg.final_ln_after_pool,
        ln_pre=cfg.ln_pre,
    )


class TextTower(nn.Module):
    """The text tower's parts; :class:`CLIP` adopts them under OpenAI's attribute names."""

    def __init__(self, cfg: TextCfg, design_details: Mapping[str, Any] | None = None) -> None:
        super().__init__()
        details = resolve_design_details(design_details)
        if cfg.heads < 1:
            raise ValueError(f"transformer_heads must be >= 1, got {cfg.heads}")
        text_depth = details["language_depth"] if details["trainer"] in ("IVLP", "VPT") else 0
        mask = causal_mask(cfg.context_length) if cfg.causal else None
        self.transformer = Transformer(
            width=cfg.width,
            layers=cfg.layers,
            heads=cfg.heads,
            attn_mask=mask,
            prompts_needed=text_depth,
            text_layer=True,
            design_details=details,
            mlp_width=cfg.mlp_width,
            act=cfg.act,
            ln_eps=cfg.ln_eps,
            ls_init_value=cfg.ls_init_value,
        )
        self.token_embedding = nn.Embedding(cfg.vocab_size, cfg.width)
        self.positional_embedding = nn.Parameter(torch.empty(cfg.context_length, cfg.width))
        self.ln_final = LayerNorm(cfg.width, eps=cfg.ln_eps)
        self.text_projection = nn.Parameter(torch.empty(cfg.width, cfg.output_dim))


def build_text_tower(cfg: TextCfg, design_details: Mapping[str, Any] | None = None) -> TextTower:
    """The text tower of ``cfg`` (the one place where text towers are constructed)."""
    return TextTower(cfg, design_details)


def causal_mask(context_length: int) -> torch.Tensor:
    """Causal mask: additive ``-inf`` above the diagonal."""
    mask = torch.empty(context_length, context_length)
    mask.fill_(float("-inf"))
    mask.triu_(1)
    return mask


def openai_vision_cfg(
    embed_dim: int,
    image_resolution: int,
    vision_layers: tuple[int, int, int, int] | list[int] | int,
    vision_width: int,
    vision_patch_size: int | None,
) -> VisionCfg:
    """The image tower of OpenAI's ``CLIP`` arguments (heads inferred from the width)."""
    if isinstance(vision_layers, (tuple, list)):
        return VisionCfg(
            width=vision_width,
            layers=tuple(vision_layers),
            heads=vision_width * 32 // 64,
            output_dim=embed_dim,
            image_size=image_resolution,
            patch_size=None,
        )
    if vision_width // 64 < 1:
        raise ValueError(f"vision width {vision_width} < 64: OpenAI infers heads = width // 64")
    return VisionCfg(
        width=vision_width,
        layers=vision_layers,
        heads=vision_width // 64,
        output_dim=embed_dim,
        image_size=image_resolution,
        patch_size=vision_patch_size,
    )


class CLIP(nn.Module):
    """CLIP with OpenAI's constructor; ``design_details`` adds deep prompts (see module doc).

    ``vision_cfg``/``text_cfg`` replace the towers that OpenAI's arguments describe (converted
    Hugging Face / OpenCLIP checkpoints); use :meth:`from_cfgs` to build from them alone.
    """

    def __init__(
        self,
        embed_dim: int,
        # vision
        image_resolution: int,
        vision_layers: tuple[int, int, int, int] | list[int] | int,
        vision_width: int,
        vision_patch_size: int | None,
        # text
        context_length: int,
        vocab_size: int,
        transformer_width: int,
        transformer_heads: int,
        transformer_layers: int,
        design_details: Mapping[str, Any] | None = None,
        *,
        vision_cfg: VisionCfg | None = None,
        text_cfg: TextCfg | None = None,
    ) -> None:
        super().__init__()
        details = resolve_design_details(design_details)
        self.design_details = details
        if vision_cfg is None:
            vision_cfg = openai_vision_cfg(
                embed_dim, image_resolution, vision_layers, vision_width, vision_patch_size
            )
        if text_cfg is None:
            text_cfg = TextCfg(
                width=transformer_width,
                layers=transformer_layers,
                heads=transformer_heads,
                output_dim=embed_dim,
                context_length=context_length,
                vocab_size=vocab_size,
            )
        self.vision_cfg = vision_cfg
        self.text_cfg = text_cfg
        self.context_length = text_cfg.context_length
        self.visual: nn.Module = build_vision_tower(vision_cfg, details)
        text = build_text_tower(text_cfg, details)
        self.transformer = text.transformer
        self.vocab_size = text_cfg.vocab_size
        self.token_embedding = text.token_embedding
        self.positional_embedding = text.positional_embedding
        self.ln_final = text.ln_final
        self.text_projection = text.text_projection
        self.logit_scale = nn.Parameter(torch.ones([]) * np.log(1 / 0.07))
        self.initialize_parameters()

    @classmethod
    def from_cfgs(
        cls,
        vision_cfg: VisionCfg,
        text_cfg: TextCfg,
        design_details: Mapping[str, Any] | None = None,
    ) -> CLIP:
        """A CLIP whose towers are described by ``vision_cfg`` and ``text_cfg`` alone."""
        if vision_cfg.output_dim != text_cfg.output_dim:
            raise ValueError(
                f"image and text embeddings differ: {vision_cfg.output_dim} vs "
                f"{text_cfg.output_dim}"
            )
        return cls(
            embed_dim=vision_cfg.output_dim,
            image_resolution=vision_cfg.image_size,
            vision_layers=vision_cfg.layers,
            vision_width=vision_cfg.width,
            vision_patch_size=vision_cfg.patch_size,
            context_length=text_cfg.context_length,
            vocab_size=text_cfg.vocab_size,
            transformer_width=text_cfg.width,
            transformer_heads=text_cfg.heads,
            transformer_layers=text_cfg.layers,
            design_details=design_details,
            vision_cfg=vision_cfg,
            text_cfg=text_cfg,
        )

    def initialize_parameters(self) -> None:
        """OpenAI's initialisation (used for fresh tiny models; checkpoints overwrite it)."""
        nn.init.normal_(self.token_embedding.weight, std=0.02)
        nn.init.normal_(self.positional_embedding, std=0.01)
        if isinstance(self.visual, ModifiedResNet):
            pool = self.visual.attnpool
            std = pool.c_proj.in_features**-0.5
            for lin in (pool.q_proj, pool.k_proj, pool.v_proj, pool.c_proj):
                nn.init.normal_(lin.weight, std=std)
            for stage in (self.visual.layer1, self.visual.layer2, self.visual.layer3):
                for name, param in stage.named_parameters():
                    if name.endswith("bn3.weight"):
                        nn.init.zeros_(param)
            for name, param in self.visual.layer4.named_parameters():
                if name.endswith("bn3.weight"):
                    nn.init.zeros_(param)
        width = self.transformer.width
        proj_std = (width**-0.5) * ((2 * self.transformer.layers) ** -0.5)
        attn_std = width**-0.5
        fc_std = (2 * width) ** -0.5
        for block in self.transformer.resblocks:
            nn.init.normal_(block.attn.in_proj_weight, std=attn_std)
            nn.init.normal_(block.attn.out_proj.weight, std=proj_std)
            nn.init.normal_(block.mlp.c_fc.weight, std=fc_std)
            nn.init.normal_(block.mlp.c_proj.weight, std=proj_std)
        nn.init.normal_(self.text_projection, std=width**-0.5)

    def build_attention_mask(self) -> torch.Tensor:
        """Causal mask: additive ``-inf`` above the diagonal."""
        return causal_mask(self.context_length)

    @property
    def dtype(self) -> torch.dtype:
        return self.visual.conv1.weight.dtype

    def encode_image(
        self,
        image: torch.Tensor,
        shared_ctx: torch.Tensor | None = None,
        deep_prompts: list[torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Image features (unnormalised); the prompt arguments are MaPLe's outside prompts."""
        if shared_ctx is None and deep_prompts is None:
            return self.visual(image.type(self.dtype))
        return self.visual(image.type(self.dtype), shared_ctx, deep_prompts)

    def encode_text(
        self, text: torch.Tensor, deep_prompts: list[torch.Tensor] | None = None
    ) -> torch.Tensor:
        """Text features of token ids ``[N, context_length]`` (unnormalised)."""
        x = self.token_embedding(text).type(self.dtype)
        return self.encode_text_embeddings(x, text, deep_prompts)

    def encode_text_embeddings(
        self,
        prompts_embedded: torch.Tensor,
        tokenized: torch.Tensor,
        deep_prompts: list[torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Text features from token embeddings (e.g. with a prompt learner's context spliced in).

        Adds the positional embedding, runs the transformer (with MaPLe's ``deep_prompts`` if
        given), applies ``ln_final`` and projects the features at the EOT token, i.e. at
        ``tokenized.argmax(-1)`` (EOT has the largest id; with ``text_cfg.pool == "eos"`` the
        first ``eos_id``, the same token for :func:`clip.tokenize` ids). This is upstream's
        ``TextEncoder``.
        """
        x = prompts_embedded + self.positional_embedding.type(self.dtype)
        x = x.permute(1, 0, 2)  # NLD -> LND
        if deep_prompts is not None:
            x = self.transformer([x, deep_prompts, 0])[0]
        else:
            x = self.transformer(x)
        x = x.permute(1, 0, 2)  # LND -> NLD
        x = self.ln_final(x).type(self.dtype)
        # Duck-typed callers (upstream ``TextEncoder`` layout) may lack ``text_cfg``: argmax.
        text_cfg = getattr(self, "text_cfg", None)
        if text_cfg is not None and text_cfg.pool == "eos":
            eot = (tokenized == text_cfg.eos_id).int().argmax(dim=-1)
        else:
            eot = tokenized.argmax(dim=-1)
        return x[torch.arange(x.shape[0], device=x.device), eot] @ self.text_projection

    def forward(self, image: torch.Tensor, text: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``(logits_per_image, logits_per_text)`` of cosine similarities times the scale."""
        image_features = self.encode_image(image)
        text_features = self.encode_text(text)
        image_features = image_features / image_features.norm(dim=1, keepdim=True)
        text_features = text_features / text_features.norm(dim=1, keepdim=True)
        logit_scale = self.logit_scale.exp()
        logits_per_image = logit_scale * image_features @ text_features.t()
        return logits_per_image, logits_per_image.t()


def convert_weights(model: nn.Module) -> None:
    """Cast conv/linear/attention weights and the projections to fp16 in place, as OpenAI does.

    LayerNorms, embeddings, ``logit_scale`` and prompt parameters stay in their dtype.
    """

    def _to_half(module: nn.Module) -> None:
        if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Linear)):
            module.weight.data = module.weight.data.half()
            if module.bias is not None:
                module.bias.data = module.bias.data.half()
        if isinstance(module, nn.MultiheadAttention):
            for name in (
                "in_proj_weight",
                "q_proj_weight",
                "k_proj_weight",
                "v_proj_weight",
                "in_proj_bias",
                "bias_k",
                "bias_v",
            ):
                tensor = getattr(module, name)
                if tensor is not None:
                    tensor.data = tensor.data.half()
        for name in ("text_projection", "proj"):
            tensor = getattr(module, name, None)
            if isinstance(tensor, torch.Tensor):
                tensor.data = tensor.data.half()

    model.apply(_to_half)


def _require(state_dict: Mapping[str, Any], keys: tuple[str, ...], what: str) -> None:
    missing = [k for k in keys if k not in state_dict]
    if missing:
        sample = sorted(state_dict)[:8]
        raise StateDictError(
            f"not an OpenAI CLIP {what} state dict: missing {missing} (first keys found: {sample})"
        )


def _infer_visual(state_dict: Mapping[str, Any]) -> dict[str, Any]:
    """Image-tower hyper-parameters read off tensor shapes, with OpenAI's rules."""
    if "visual.proj" in state_dict:
        _require(state_dict, ("visual.conv1.weight", "visual.positional_embedding"), "ViT")
        width = state_dict["visual.conv1.weight"].shape[0]
        layers = len(
            [
                k
                for k in state_dict
                if k.startswith("visual.") and k.endswith(".attn.in_proj_weight")
            ]
        )
        patch = state_dict["visual.conv1.weight"].shape[-1]
        grid = round((state_dict["visual.positional_embedding"].shape[0] - 1) ** 0.5)
        return {
            "vision_width": width,
            "vision_layers": layers,
            "vision_patch_size": patch,
            "image_resolution": patch * grid,
            "embed_dim": state_dict["visual.proj"].shape[1],
        }
    if "visual.attnpool.positional_embedding" in state_dict:
        _require(
            state_dict, ("visual.layer1.0.conv1.weight", "visual.attnpool.c_proj.weight"), "RN"
        )
        counts = tuple(
            len({k.split(".")[2] for k in state_dict if k.startswith(f"visual.layer{b}.")})
            for b in (1, 2, 3, 4)
        )
        n_pos = state_dict["visual.attnpool.positional_embedding"].shape[0]
        out_width = round((n_pos - 1) ** 0.5)
        if out_width**2 + 1 != n_pos:
            raise StateDictError(f"visual.attnpool.positional_embedding has {n_pos} rows")
        return {
            "vision_width": state_dict["visual.layer1.0.conv1.weight"].shape[0],
            "vision_layers": counts,
            "vision_patch_size": None,
            "image_resolution": out_width * 32,
            "embed_dim": state_dict["visual.attnpool.c_proj.weight"].shape[0],
        }
    raise StateDictError(
        "not an OpenAI CLIP state dict: neither 'visual.proj' (ViT) nor "
        f"'visual.attnpool.positional_embedding' (ResNet) found; first keys: {sorted(state_dict)[:8]}"
    )


def infer_architecture(state_dict: Mapping[str, Any]) -> dict[str, Any]:
    """``CLIP`` constructor arguments read off an OpenAI state dict (heads = width // 64)."""
    if not isinstance(state_dict, Mapping):
        raise StateDictError(f"expected a state dict (mapping), got {type(state_dict).__name__}")
    visual = _infer_visual(state_dict)
    _require(
        state_dict,
        ("text_projection", "positional_embedding", "token_embedding.weight", "ln_final.weight"),
        "text",
    )
    width = state_dict["ln_final.weight"].shape[0]
    return {
        "embed_dim": state_dict["text_projection"].shape[1],
        "image_resolution": visual["image_resolution"],
        "vision_layers": visual["vision_layers"],
        "vision_width": visual["vision_width"],
        "vision_patch_size": visual["vision_patch_size"],
        "context_length": state_dict["positional_embedding"].shape[0],
        "vocab_size": state_dict["token_embedding.weight"].shape[0],
        "transformer_width": width,
        "transformer_heads": width // 64,
        "transformer_layers": len(
            {k.split(".")[2] for k in state_dict if k.startswith("transformer.resblocks.")}
        ),
    }


def _is_prompt_param(key: str) -> bool:
    return key.rsplit(".", 1)[-1] in PROMPT_PARAM_SUFFIXES


def _load_checked(module: nn.Module, state_dict: Mapping[str, torch.Tensor]) -> None:
    """Strict load where only freshly initialised prompt parameters may be absent."""
    try:
        missing, unexpected = module.load_state_dict(state_dict, strict=False)
    except RuntimeError as err:  # shape mismatches
        raise StateDictError(f"state dict does not fit the architecture: {err}") from err
    missing = [k for k in missing if not _is_prompt_param(k)]
    if missing or unexpected:
        raise StateDictError(
            f"state dict does not match the CLIP architecture: missing keys {missing}, "
            f"unexpected keys {list(unexpected)} (prompt keys VPT/VPT_shallow need matching "
            "design_details)"
        )


def build_model(
    state_dict: Mapping[str, torch.Tensor], design_details: Mapping[str, Any] | None = None
) -> CLIP:
    """Build a CLIP (fp16 weights as OpenAI, eval mode) from an OpenAI state dict.

    The architecture is read off tensor shapes; metadata entries (``input_resolution``,
    ``context_length``, ``vocab_size``) are dropped. Prompt parameters absent from the state dict
    keep their fresh initialisation; any other missing or unexpected key raises StateDictError.
    """
    sd = {k: v for k, v in state_dict.items() if k not in META_KEYS}
    model = CLIP(**infer_architecture(sd), design_details=design_details)
    convert_weights(model)
    _load_checked(model, sd)
    return model.eval()


def build_visual(
    state_dict: Mapping[str, torch.Tensor],
    design_details: Mapping[str, Any] | None = None,
    vision_cfg: VisionCfg | None = None,
) -> nn.Module:
    """Build only the image tower from the ``visual.*`` keys (e.g. a distillation teacher).

    Returns a ``VisionTransformer`` or ``ModifiedResNet`` with ``output_dim`` and
    ``input_resolution``, in eval mode. Without ``vision_cfg`` the architecture is read off an
    OpenAI state dict's shapes and the weights are fp16 as in :func:`build_model`; with it (a
    converted checkpoint's tower) the weights keep the state dict's dtype. Other keys of the state
    dict (text tower) are ignored.
    """
    if not isinstance(state_dict, Mapping):
        raise StateDictError(f"expected a state dict (mapping), got {type(state_dict).__name__}")
    visual_sd = {k[len("visual.") :]: v for k, v in state_dict.items() if k.startswith("visual.")}
    if vision_cfg is None:
        arch = _infer_visual(state_dict)
        vision_cfg = openai_vision_cfg(
            arch["embed_dim"],
            arch["image_resolution"],
            arch["vision_layers"],
            arch["vision_width"],
            arch["vision_patch_size"],
        )
        visual = build_vision_tower(vision_cfg, design_details)
        convert_weights(visual)
    else:
        visual = build_vision_tower(vision_cfg, design_details)
    _load_checked(visual, visual_sd)
    return visual.eval()


def build_from_cfgs(
    state_dict: Mapping[str, torch.Tensor],
    vision_cfg: VisionCfg,
    text_cfg: TextCfg,
    design_details: Mapping[str, Any] | None = None,
) -> CLIP:
    """A CLIP of the given towers loaded strictly from ``state_dict`` (OpenAI key layout).

    Used for converted checkpoints (Hugging Face, OpenCLIP), whose architecture is not readable
    off tensor shapes (heads, activation, LayerNorm eps, pooling). The weights stay fp32; only
    prompt parameters may be absent. Returns the model in eval mode.
    """
    model = CLIP.from_cfgs(vision_cfg, text_cfg, design_details)
    _load_checked(model, state_dict)
    return model.eval()
