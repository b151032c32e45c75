"""Hugging Face ``CLIPModel`` snapshots converted to our CLIP (``clip.load(DIR)``, ``hf-hub:``).

A snapshot is a directory with ``config.json`` (``model_type: clip``) and the weights in
``model.safetensors`` (possibly sharded, with ``model.safetensors.index.json``) or
``pytorch_model.bin`` (read with ``torch.load(weights_only=True)``: no code runs).
``hf-hub:ORG/NAME[@REVISION]`` is resolved offline through the local Hugging Face cache
(``$HF_HUB_CACHE``, else ``$HF_HOME/hub``, else ``~/.cache/huggingface/hub``).

The conversion is a key map (HF ``q/k/v_proj`` are concatenated into ``in_proj``; the
projections are transposed) plus tower configs read from the HF config: widths, heads, MLP
width, ``hidden_act``, ``layer_norm_eps`` and the EOS pooling rule. ``transformers`` parses the
config (its defaults fill absent keys) and ``huggingface_hub`` resolves the cache; both are
imported only here.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from typing import Any

import torch

from clip.errors import InvalidModelError, ModelNotFoundError, OptionalDependencyError
from clip.model import StateDictError, TextCfg, VisionCfg, square_size
from clip.preprocess import CLIP_MEAN, CLIP_STD, PreprocessCfg
from clip.tensor_files import load_tensor_file

HF_HUB_PREFIX = "hf-hub:"
_ACTIVATIONS = {
    "quick_gelu": "quick_gelu",
    "gelu": "gelu",
    "gelu_pytorch_tanh": "gelu_tanh",
    "gelu_new": "gelu_tanh",
}
_RESAMPLE = {0: "nearest", 2: "bilinear", 3: "bicubic"}
_LAYER_KEYS = {
    "layer_norm1": "ln_1",
    "layer_norm2": "ln_2",
    "mlp.fc1": "mlp.c_fc",
    "mlp.fc2": "mlp.c_proj",
    "self_attn.out_proj": "attn.out_proj",
}
_PLAIN_KEYS = {
    "vision_model.embeddings.class_embedding": "visual.class_embedding",
    "vision_model.embeddings.patch_embedding.weight": "visual.conv1.weight",
    "vision_model.embeddings.position_embedding.weight": "visual.positional_embedding",
    "vision_model.pre_layrnorm.weight": "visual.ln_pre.weight",
    "vision_model.pre_layrnorm.bias": "visual.ln_pre.bias",
    "vision_model.post_layernorm.weight": "visual.ln_post.weight",
    "vision_model.post_layernorm.bias": "visual.ln_post.bias",
    "text_model.embeddings.token_embedding.weight": "token_embedding.weight",
    "text_model.embeddings.position_embedding.weight": "positional_embedding",
    "text_model.final_layer_norm.weight": "ln_final.weight",
    "text_model.final_layer_norm.bias": "ln_final.bias",
    "logit_scale": "logit_scale",
}
_TRANSPOSED_KEYS = {
    "visual_projection.weight": "visual.proj",
    "text_projection.weight": "text_projection",
}
_LAYER = re.compile(r"(vision_model|text_model)\.encoder\.layers\.(\d+)\.(.+)")
_QKV = re.compile(r"self_attn\.([qkv])_proj\.(weight|bias)")


def _missing_library(package: str, pip_name: str) -> OptionalDependencyError:
    return OptionalDependencyError(
        f"loading Hugging Face CLIP weights needs the optional package '{package}'; "
        f"install it with `pip install {pip_name}` (it is listed in requirements-dev.txt)"
    )


def is_hf_snapshot(path: str) -> bool:
    """A directory with a ``config.json`` (checked for ``model_type`` when read)."""
    return os.path.isdir(path) and os.path.isfile(os.path.join(path, "config.json"))


def hf_cache_dir() -> str:
    """The Hugging Face hub cache, read from the environment at call time."""
    if os.environ.get("HF_HUB_CACHE"):
        return os.environ["HF_HUB_CACHE"]
    home = os.environ.get("HF_HOME") or os.path.join(
        os.path.expanduser("~"), ".cache", "huggingface"
    )
    return os.path.join(home, "hub")


def resolve_hf_hub(name: str, cache_dir: str | None = None) -> str:
    """The cached snapshot directory of ``hf-hub:ORG/NAME[@REVISION]``, without network access."""
    repo = name[len(HF_HUB_PREFIX) :] if name.startswith(HF_HUB_PREFIX) else name
    repo, _, revision = repo.partition("@")
    if repo.count("/") != 1 or not all(repo.split("/")):
        raise InvalidModelError(f"{name}: expected hf-hub:ORG/NAME (optionally @REVISION)")
    try:
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import LocalEntryNotFoundError
    except ImportError as err:
        raise _missing_library("huggingface_hub", "huggingface_hub") from err
    cache = cache_dir or hf_cache_dir()
    try:
        return snapshot_download(
            repo, revision=revision or None, cache_dir=cache, local_files_only=True
        )
    except LocalEntryNotFoundError as err:
        raise ModelNotFoundError(
            f"{name} is not in the local Hugging Face cache {cache} (loading is offline); "
            f"download it first, e.g. `huggingface-cli download {repo}`, or set HF_HUB_CACHE / "
            "HF_HOME to the cache that holds it"
        ) from err


def read_json(path: str) -> dict[str, Any]:
    """A JSON config file; unreadable or malformed files raise InvalidModelError naming it."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, json.JSONDecodeError) as err:
        raise InvalidModelError(f"cannot read {path}: {err}") from err


def _activation(cfg: Any, tower: str, source: str) -> str:
    act = cfg.hidden_act
    if act not in _ACTIVATIONS:
        raise InvalidModelError(
            f"{source}: {tower}.hidden_act = {act!r} is not supported; expected one of "
            f"{sorted(_ACTIVATIONS)}"
        )
    return _ACTIVATIONS[act]


def tower_cfgs(snapshot: str) -> tuple[VisionCfg, TextCfg]:
    """Our tower configs of the ``CLIPModel`` config in ``snapshot`` (refuses other models)."""
    path = os.path.join(snapshot, "config.json")
    raw = read_json(path)
    model_type = raw.get("model_type")
    if model_type != "clip":
        raise InvalidModelError(
            f"{path}: model_type is {model_type!r}; only Hugging Face CLIPModel snapshots "
            "(model_type 'clip') are supported"
        )
    try:
        from transformers import CLIPConfig
    except ImportError as err:
        raise _missing_library("transformers", "transformers") from err
    config = CLIPConfig.from_dict(raw)
    vis, txt = config.vision_config, config.text_config
    if vis.num_channels != 3:
        raise InvalidModelError(
            f"{path}: vision_config.num_channels = {vis.num_channels}; expected 3"
        )
    eos = txt.eos_token_id
    if isinstance(eos, (list, tuple)):
        raise InvalidModelError(f"{path}: text_config.eos_token_id = {eos}; expected one id")
    vision = VisionCfg(
        width=vis.hidden_size,
        layers=vis.num_hidden_layers,
        heads=vis.num_attention_heads,
        output_dim=config.projection_dim,
        image_size=square_size(vis.image_size, f"{path}: vision_config.image_size"),
        patch_size=square_size(vis.patch_size, f"{path}: vision_config.patch_size"),
        mlp_width=vis.intermediate_size,
        act=_activation(vis, "vision_config", path),
        ln_eps=float(vis.layer_norm_eps),
    )
    # HF pools the text at argmax(ids) for the legacy eos_token_id 2, else at the first EOS.
    text = TextCfg(
        width=txt.hidden_size,
        layers=txt.num_hidden_layers,
        heads=txt.num_attention_heads,
        output_dim=config.projection_dim,
        context_length=txt.max_position_embeddings,
        vocab_size=txt.vocab_size,
        mlp_width=txt.intermediate_size,
        act=_activation(txt, "text_config", path),
        ln_eps=float(txt.layer_norm_eps),
        pool="argmax" if eos == 2 else "eos",
        eos_id=None if eos == 2 else int(eos),
    )
    return vision, text


def preprocess_cfg(snapshot: str, image_size: int) -> PreprocessCfg:
    """The recipe of ``preprocessor_config.json`` (CLIP's defaults when the file is absent)."""
    path = os.path.join(snapshot, "preprocessor_config.json")
    if not os.path.isfile(path):
        return PreprocessCfg(size=image_size)
    raw = read_json(path)

    def edge(value: Any, keys: tuple[str, ...]) -> int | None:
        if isinstance(value, Mapping):
            found = [value[k] for k in keys if k in value]
            return square_size(found, f"{path}: {keys[0]}") if found else None
        return None if value is None else int(value)

    crop = edge(raw.get("crop_size"), ("height", "width")) or image_size
    resize = edge(raw.get("size"), ("shortest_edge",))
    resample = raw.get("resample", 3)
    if resample not in _RESAMPLE:
        raise InvalidModelError(f"{path}: resample = {resample!r} is not supported ({_RESAMPLE})")
    return PreprocessCfg(
        size=crop,
        mean=tuple(raw.get("image_mean", CLIP_MEAN)),
        std=tuple(raw.get("image_std", CLIP_STD)),
        interpolation=_RESAMPLE[resample],
        resize=resize if resize and resize != crop else None,
    )


def _load_file(path: str) -> dict[str, torch.Tensor]:
    obj = load_tensor_file(path)
    if not isinstance(obj, Mapping):
        raise InvalidModelError(f"{path} holds a {type(obj).__name__}, expected a state dict")
    return dict(obj)


def read_weights(snapshot: str) -> dict[str, torch.Tensor]:
    """The snapshot's tensors: ``model.safetensors`` (single or sharded) or ``pytorch_model.bin``."""
    single = os.path.join(snapshot, "model.safetensors")
    if os.path.isfile(single):
        return _load_file(single)
    for index_name in ("model.safetensors.index.json", "pytorch_model.bin.index.json"):
        index = os.path.join(snapshot, index_name)
        if os.path.isfile(index):
            shards = sorted(set(read_json(index).get("weight_map", {}).values()))
            out: dict[str, torch.Tensor] = {}
            for shard in shards:
                out.update(_load_file(os.path.join(snapshot, shard)))
            return out
    legacy = os.path.join(snapshot, "pytorch_model.bin")
    if os.path.isfile(legacy):
        return _load_file(legacy)
    raise ModelNotFoundError(
        f"{snapshot} has no weights: expected model.safetensors or pytorch_model.bin "
        "(or a sharded index)"
    )


def convert_state_dict(hf: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """HF ``CLIPModel`` keys -> OpenAI CLIP keys (unknown keys raise, listing them)."""
    out: dict[str, torch.Tensor] = {}
    qkv: dict[tuple[str, str, str], dict[str, torch.Tensor]] = {}
    unknown = []
    for key, value in hf.items():
        if key.endswith("embeddings.position_ids"):
            continue  # a buffer older snapshots saved; not a weight
        if key in _PLAIN_KEYS:
            out[_PLAIN_KEYS[key]] = value
        elif key in _TRANSPOSED_KEYS:
            out[_TRANSPOSED_KEYS[key]] = value.t().contiguous()
        elif match := _LAYER.fullmatch(key):
            tower, index, rest = match.groups()
            prefix = (
                "visual." if tower == "vision_model" else ""
            ) + f"transformer.resblocks.{index}."
            if attn := _QKV.fullmatch(rest):
                qkv.setdefault((prefix, attn.group(2), tower), {})[attn.group(1)] = value
                continue
            module, _, leaf = rest.rpartition(".")
            if module not in _LAYER_KEYS:
                unknown.append(key)
                continue
            out[prefix + _LAYER_KEYS[module] + "." + leaf] = value
        else:
            unknown.append(key)
    for (prefix, leaf, _), parts in qkv.items():
        if set(parts) != {"q", "k", "v"}:
            raise StateDictError(f"{prefix}attn: HF weights have only {sorted(parts)} projections")
        out[f"{prefix}attn.in_proj_{leaf}"] = torch.cat([parts["q"], parts["k"], parts["v"]])
    if unknown:
        raise StateDictError(f"keys that are not part of a Hugging Face CLIPModel: {unknown[:10]}")
    return out
