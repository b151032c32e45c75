"""OpenCLIP checkpoints converted to our CLIP: ``clip.load("open_clip:ARCH@WEIGHTS")``.

``ARCH`` is a model-config name of the installed ``open_clip`` package (``ViT-H-14``,
``ViT-B-32-quickgelu``, ...) or the path of a model-config JSON in OpenCLIP's format
(``embed_dim``, ``vision_cfg``, ``text_cfg``, ``quick_gelu``, ``preprocess_cfg``); ``WEIGHTS`` is
a local checkpoint file (safetensors, or a ``torch.save`` state dict, possibly under
``state_dict`` and with DDP's ``module.`` prefixes; read with ``weights_only=True``).
``open_clip:hf-hub:ORG/NAME`` reads both from an OpenCLIP repo in the local Hugging Face cache
(``open_clip_config.json`` + ``open_clip_model.safetensors`` / ``open_clip_pytorch_model.bin``).

OpenCLIP's standard ``CLIP`` class stores its weights in OpenAI's layout (plus ``ls_1/ls_2.gamma``
for LayerScale), so the conversion is the architecture: every option of the model config is
either implemented (GELU vs QuickGELU, heads from ``head_width``, ``mlp_ratio``,
``ls_init_value``, ``no_ln_pre``, ``pool_type`` tok/avg, ``final_ln_after_pool``,
``norm_kwargs.eps``, text ``pool_type`` argmax/eos, ``no_causal_mask``, ModifiedResNet towers),
without effect at inference (``patch_dropout``, ``output_tokens``, ``pad_id``, ...), or refused
with a message naming it (timm and Hugging Face towers, ``custom_text``, attentional pooling,
custom attention blocks, CoCa, SigLIP's ``init_logit_bias``, ...).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import torch

from clip.errors import InvalidModelError, ModelNotFoundError, OptionalDependencyError
from clip.hf import HF_HUB_PREFIX, read_json, resolve_hf_hub
from clip.model import TextCfg, VisionCfg, square_size
from clip.preprocess import CLIP_MEAN, CLIP_STD, PreprocessCfg
from clip.tensor_files import load_tensor_file

OPEN_CLIP_PREFIX = "open_clip:"
HUB_WEIGHT_FILES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")

# option -> values that mean "off" (anything else is refused, naming the option)
_REFUSED_TOP = {
    "custom_text": (False,),
    "multimodal_cfg": (None,),
    "init_logit_bias": (None,),
    "nonscalar_logit_scale": (False,),
}
_IGNORED_TOP = {"embed_dim", "vision_cfg", "text_cfg", "quick_gelu", "init_logit_scale"}
_IGNORED_TOP |= {"cast_dtype", "output_dict", "preprocess_cfg"}
_CUSTOM_BLOCK = ("qk_norm", "scaled_cosine_attn", "scale_heads", "scale_attn_inner", "scale_attn")
_REFUSED_COMMON = {
    "act_kwargs": (None, {}),
    "block_type": (None, "default"),
    "scale_fc": (False,),
    **dict.fromkeys(_CUSTOM_BLOCK, (False,)),
}
_REFUSED_VISION = {
    **_REFUSED_COMMON,
    "attentional_pool": (False, None, ""),
    "timm_model_name": (None, ""),
}
# No effect on the forward pass at inference, or used only by a refused option.
_IGNORED_VISION = {
    "layers",
    "width",
    "head_width",
    "mlp_ratio",
    "patch_size",
    "image_size",
    "ls_init_value",
    "no_ln_pre",
    "final_ln_after_pool",
    "pool_type",
    "norm_kwargs",
    "patch_dropout",
    "attn_pooler_queries",
    "attn_pooler_heads",
    "pos_embed_type",  # the (fixed or learned) embedding is a tensor of the checkpoint
    "output_tokens",
    "timm_model_pretrained",
    "timm_pool",
    "timm_proj",
    "timm_proj_bias",
    "timm_drop",
    "timm_drop_path",
}
_REFUSED_TEXT = {
    **_REFUSED_COMMON,
    "hf_model_name": (None, ""),
    "hf_tokenizer_name": (None, ""),
    "tokenizer_mode": (None, ""),
    "tokenizer_kwargs": (None, {}),
    "embed_cls": (False,),
    "final_ln_after_pool": (False,),
    "proj_bias": (False,),
    "proj_type": ("linear",),
}
_IGNORED_TEXT = {
    "context_length",
    "vocab_size",
    "width",
    "heads",
    "layers",
    "mlp_ratio",
    "ls_init_value",
    "pad_id",  # only read with embed_cls or a padding mask, both refused
    "eos_id",
    "no_causal_mask",
    "pool_type",
    "norm_kwargs",
    "output_tokens",
    "hf_model_pretrained",
    "hf_proj_type",
    "hf_pooler_type",
}
_INTERPOLATIONS = ("bicubic", "bilinear", "nearest")


def _missing_open_clip() -> OptionalDependencyError:
    return OptionalDependencyError(
        "OpenCLIP model configs need the optional package 'open_clip_torch'; install it with "
        "`pip install open_clip_torch` (listed in requirements-dev.txt), or pass the path of a "
        "model-config JSON as ARCH"
    )


def parse_name(name: str) -> tuple[str, str]:
    """``open_clip:ARCH@WEIGHTS`` -> ``(ARCH, WEIGHTS)``.

    ``open_clip:hf-hub:ORG/NAME[@REV]`` takes both from a cached OpenCLIP hub repo
    (``open_clip_config.json`` and its weights); ``WEIGHTS`` may be such a repo too.
    """
    spec = name[len(OPEN_CLIP_PREFIX) :] if name.startswith(OPEN_CLIP_PREFIX) else name
    if spec.startswith(HF_HUB_PREFIX):
        return spec, spec
    arch, sep, hub = spec.partition("@" + HF_HUB_PREFIX)
    if sep:
        return arch, HF_HUB_PREFIX + hub
    arch, sep, weights = spec.rpartition("@")
    if not sep or not arch or not weights:
        raise InvalidModelError(
            f"{name}: expected open_clip:ARCH@WEIGHTS (ARCH an OpenCLIP model-config name or "
            "JSON path, WEIGHTS a local checkpoint file) or open_clip:hf-hub:ORG/NAME"
        )
    return arch, weights


def model_config(arch: str) -> tuple[dict[str, Any], str]:
    """``(model config, where it came from)`` for a config name, a JSON path or a hub repo."""
    if arch.startswith(HF_HUB_PREFIX):
        path = os.path.join(resolve_hf_hub(arch), "open_clip_config.json")
        if not os.path.isfile(path):
            raise ModelNotFoundError(
                f"{arch}: the cached snapshot has no open_clip_config.json ({path})"
            )
        raw = read_json(path)
        if not isinstance(raw.get("model_cfg"), dict):
            raise InvalidModelError(f"{path} has no model_cfg")
        config = dict(raw["model_cfg"])
        if raw.get("preprocess_cfg"):
            config["preprocess_cfg"] = raw["preprocess_cfg"]
        return config, path
    if arch.endswith(".json") or os.path.isfile(arch):
        return read_json(arch), arch
    try:
        import open_clip
    except ImportError as err:
        raise _missing_open_clip() from err
    cfg = open_clip.get_model_config(arch)
    if cfg is None:
        close = [m for m in open_clip.list_models() if arch.lower()[:5] in m.lower()][:12]
        raise ModelNotFoundError(
            f"OpenCLIP has no model config {arch!r} (installed open_clip {open_clip.__version__}); "
            f"similar names: {close or open_clip.list_models()[:12]}; or pass a JSON path"
        )
    return cfg, f"open_clip config {arch}"


def _check_options(
    cfg: Mapping[str, Any], refused: Mapping[str, tuple], ignored: set[str], node: str
) -> list[str]:
    """The options of ``cfg`` that we do not implement, as ``node.key = value`` strings."""
    problems = []
    for key, value in cfg.items():
        if key in refused:
            if value not in refused[key]:
                problems.append(f"{node}{key} = {value!r}")
        elif key not in ignored:
            problems.append(f"{node}{key} = {value!r} (unknown OpenCLIP option)")
    return problems


def _ln_eps(node: Mapping[str, Any], name: str, source: str) -> float:
    kwargs = dict(node.get("norm_kwargs") or {})
    eps = kwargs.pop("eps", 1e-5)
    if kwargs:
        raise InvalidModelError(
            f"{source}: {name}.norm_kwargs {kwargs} is not supported (only eps)"
        )
    return float(eps)


def _vision_defaults() -> dict[str, Any]:
    """OpenCLIP's ``CLIPVisionCfg`` defaults for the options we read."""
    return {
        "layers": 12,
        "width": 768,
        "head_width": 64,
        "mlp_ratio": 4.0,
        "patch_size": 16,
        "image_size": 224,
        "ls_init_value": None,
        "no_ln_pre": False,
        "final_ln_after_pool": False,
        "pool_type": "tok",
    }


def _text_defaults() -> dict[str, Any]:
    """OpenCLIP's ``CLIPTextCfg`` defaults for the options we read."""
    return {
        "context_length": 77,
        "vocab_size": 49408,
        "width": 512,
        "heads": 8,
        "layers": 12,
        "mlp_ratio": 4.0,
        "ls_init_value": None,
        "eos_id": 2,
        "no_causal_mask": False,
        "pool_type": "argmax",
    }


def tower_cfgs(config: Mapping[str, Any], source: str) -> tuple[VisionCfg, TextCfg]:
    """Our tower configs of an OpenCLIP model config; unsupported options raise, named."""
    vis_raw = dict(config.get("vision_cfg") or {})
    txt_raw = dict(config.get("text_cfg") or {})
    problems = _check_options(config, _REFUSED_TOP, _IGNORED_TOP, "")
    problems += _check_options(vis_raw, _REFUSED_VISION, _IGNORED_VISION, "vision_cfg.")
    problems += _check_options(txt_raw, _REFUSED_TEXT, _IGNORED_TEXT, "text_cfg.")
    if problems:
        raise InvalidModelError(
            f"{source}: this OpenCLIP architecture cannot be converted to our CLIP; "
            f"unsupported: {', '.join(problems)}"
        )
    if "embed_dim" not in config:
        raise InvalidModelError(f"{source}: the model config has no embed_dim")
    embed_dim = int(config["embed_dim"])
    act = "quick_gelu" if config.get("quick_gelu", False) else "gelu"

    vis = {**_vision_defaults(), **vis_raw}
    if vis["pool_type"] not in ("tok", "avg"):
        raise InvalidModelError(
            f"{source}: vision_cfg.pool_type = {vis['pool_type']!r} is not supported (tok, avg)"
        )
    width, head_width = int(vis["width"]), int(vis["head_width"])
    image_size = square_size(vis["image_size"], f"{source}: vision_cfg.image_size")
    if isinstance(vis["layers"], (list, tuple)):  # ModifiedResNet
        vision = VisionCfg(
            width=width,
            layers=tuple(int(n) for n in vis["layers"]),
            heads=width * 32 // head_width,
            output_dim=embed_dim,
            image_size=image_size,
            patch_size=None,
        )
    else:
        if width % head_width:
            raise InvalidModelError(
                f"{source}: vision_cfg.width {width} is not a multiple of head_width {head_width}"
            )
        vision = VisionCfg(
            width=width,
            layers=int(vis["layers"]),
            heads=width // head_width,
            output_dim=embed_dim,
            image_size=image_size,
            patch_size=square_size(vis["patch_size"], f"{source}: vision_cfg.patch_size"),
            mlp_width=int(width * float(vis["mlp_ratio"])),
            act=act,
            ln_eps=_ln_eps(vis, "vision_cfg", source),
            ls_init_value=vis["ls_init_value"],
            pool=vis["pool_type"],
            final_ln_after_pool=bool(vis["final_ln_after_pool"]),
            ln_pre=not vis["no_ln_pre"],
        )

    txt = {**_text_defaults(), **txt_raw}
    if txt["pool_type"] not in ("argmax", "eos"):
        raise InvalidModelError(
            f"{source}: text_cfg.pool_type = {txt['pool_type']!r} is not supported (argmax, eos)"
        )
    text_width = int(txt["width"])
    text = TextCfg(
        width=text_width,
        layers=int(txt["layers"]),
        heads=int(txt["heads"]),
        output_dim=embed_dim,
        context_length=int(txt["context_length"]),
        vocab_size=int(txt["vocab_size"]),
        mlp_width=int(text_width * float(txt["mlp_ratio"])),
        act=act,
        ln_eps=_ln_eps(txt, "text_cfg", source),
        ls_init_value=txt["ls_init_value"],
        pool=txt["pool_type"],
        eos_id=int(txt["eos_id"]) if txt["pool_type"] == "eos" else None,
        causal=not txt["no_causal_mask"],
    )
    return vision, text


def preprocess_cfg(config: Mapping[str, Any], image_size: int, source: str) -> PreprocessCfg:
    """The model config's ``preprocess_cfg`` over OpenCLIP's defaults (OpenAI mean/std, bicubic)."""
    raw = dict(config.get("preprocess_cfg") or {})
    mode = raw.pop("resize_mode", "shortest")
    if mode != "shortest":
        raise InvalidModelError(
            f"{source}: preprocess_cfg.resize_mode = {mode!r} is not supported (shortest)"
        )
    if raw.pop("mode", "RGB") != "RGB":
        raise InvalidModelError(f"{source}: preprocess_cfg.mode must be RGB")
    raw.pop("fill_color", None)  # only used by other resize modes
    interpolation = raw.pop("interpolation", "bicubic")
    size = square_size(raw.pop("size", image_size), f"{source}: preprocess_cfg.size")
    mean, std = tuple(raw.pop("mean", CLIP_MEAN)), tuple(raw.pop("std", CLIP_STD))
    if raw:
        raise InvalidModelError(f"{source}: unknown preprocess_cfg options {sorted(raw)}")
    if interpolation not in _INTERPOLATIONS:
        raise InvalidModelError(
            f"{source}: preprocess_cfg.interpolation = {interpolation!r} is not supported"
        )
    return PreprocessCfg(size=size, mean=mean, std=std, interpolation=interpolation)


def weights_file(weights: str) -> str:
    """The checkpoint file of ``WEIGHTS``: a path, or the OpenCLIP weights of a cached hub repo."""
    if not weights.startswith(HF_HUB_PREFIX):
        return weights
    snapshot = resolve_hf_hub(weights)
    for name in HUB_WEIGHT_FILES:
        if os.path.isfile(os.path.join(snapshot, name)):
            return os.path.join(snapshot, name)
    raise ModelNotFoundError(
        f"{weights}: the cached snapshot {snapshot} has none of {HUB_WEIGHT_FILES}"
    )


def read_weights(path: str) -> dict[str, torch.Tensor]:
    """An OpenCLIP checkpoint's state dict, unwrapped from ``state_dict`` and ``module.``."""
    obj = load_tensor_file(path)
    if isinstance(obj, Mapping) and isinstance(obj.get("state_dict"), Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise InvalidModelError(f"{path} is not an OpenCLIP state dict (a mapping of tensors)")
    sd = dict(obj)
    if sd and all(k.startswith("module.") for k in sd):
        sd = {k[len("module.") :]: v for k, v in sd.items()}
    if any(k.startswith("text.") for k in sd):
        raise InvalidModelError(
            f"{path} holds a CustomTextCLIP (text.* keys), which is not supported; "
            "only OpenCLIP's standard CLIP layout converts"
        )
    return sd
