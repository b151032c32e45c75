"""Load CLIP checkpoints by name or path, tokenize text, download and verify official weights.

Upstream API: ``load``, ``tokenize``, ``available_models``, ``_MODELS``, ``_download``.

Checkpoint formats accepted by :func:`load`:

* OpenAI's official ``.pt`` files, which are TorchScript archives. Note that ``torch.jit.load``
  of an archive runs the TorchScript code inside it: only load archives you trust. With
  ``jit=False`` (the default) only the archive's ``state_dict()`` is used.
* plain state dicts saved with ``torch.save`` (read with ``weights_only=True``, no code runs);
  this is the preferred format, used for the shipped toy models;
* ``.safetensors`` files holding the same tensors;
* a Hugging Face ``CLIPModel`` snapshot directory, or ``hf-hub:ORG/NAME`` from the local Hugging
  Face cache (converted by :mod:`clip.hf`);
* ``open_clip:ARCH@WEIGHTS``: an OpenCLIP model config (name or JSON path) and a local checkpoint
  (converted by :mod:`clip.open_clip_convert`).

Converted models carry their tower configs (``model.vision_cfg``/``model.text_cfg``) and every
model its preprocessing recipe (``model.preprocess_cfg``), which :func:`load` logs.

Official weights are cached in ``download_root``, else ``$CLIP_CACHE``, else ``~/.cache/clip``,
and verified against the SHA256 embedded in their URL.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.request
import warnings
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torchvision.transforms import Compose

from clip import hf
from clip import open_clip_convert as oc
from clip.errors import InvalidModelError, ModelNotFoundError
from clip.hf import HF_HUB_PREFIX
from clip.model import StateDictError, TextCfg, VisionCfg, build_from_cfgs, build_model
from clip.open_clip_convert import OPEN_CLIP_PREFIX
from clip.preprocess import CLIP_MEAN, CLIP_STD, PreprocessCfg, build_preprocess
from clip.simple_tokenizer import SimpleTokenizer
from clip.tensor_files import load_tensor_file
from dassl.utils.logger import get_logger

__all__ = ["CLIP_MEAN", "CLIP_STD", "available_models", "load", "resolve_clip", "tokenize"]

logger = get_logger(__name__)

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
WEIGHTS_DIR = os.path.join(_PACKAGE_DIR, "weights")

_MODELS: dict[str, str] = {
    "RN50": "https://openaipublic.azureedge.net/clip/models/afeb0e10f9e5a86da6080e35cf09123aca3b358a0c3e3b6c78a7b63bc04b6762/RN50.pt",
    "RN101": "https://openaipublic.azureedge.net/clip/models/8fa8567bab74a42d41c5915025a8e4538c3bdbe8804a470a72f30b0d94fab599/RN101.pt",
    "RN50x4": "https://openaipublic.azureedge.net/clip/models/7e526bd135e493cef0776de27d5f42653e6b4c8bf9e0f653bb11773263205fdd/RN50x4.pt",
    "RN50x16": "https://openaipublic.azureedge.net/clip/models/52378b407f34354e150460fe41077663dd5b39c54cd0bfd2b27167a4a06ec9aa/RN50x16.pt",
    "RN50x64": "https://openaipublic.azureedge.net/clip/models/be1cfb55d75a9666199fb2206c106743da0f6468c9d327f3e0d0a543a9919d9c/RN50x64.pt",
    "ViT-B/32": "https://openaipublic.azureedge.net/clip/models/40d365715913c9da98579312b702a82c18be219cc2a73407c4526f58eba950af/ViT-B-32.pt",
    "ViT-B/16": "https://openaipublic.azureedge.net/clip/models/5806e77cd80f8b59890b7e101eabd078d9fb84e6937f9e85e4ecb61988df416f/ViT-B-16.pt",
    "ViT-L/14": "https://openaipublic.azureedge.net/clip/models/b8cca3fd41ae0c99ba7e8951adf17d267cdb84cd88be6f7c2e0eca1737a03836/ViT-L-14.pt",
    "ViT-L/14@336px": "https://openaipublic.azureedge.net/clip/models/3035c92b350959924f9f00213499208652fc7ea050643e8b385c2dac08641f02/ViT-L-14-336px.pt",
    # Tiny models pretrained by tools/pretrain_toy_clip.py and shipped in clip/weights/.
    "toy-teacher": os.path.join(WEIGHTS_DIR, "toy-teacher.pt"),
    "toy-student": os.path.join(WEIGHTS_DIR, "toy-student.pt"),
}

_CHUNK = 1 << 16

_tokenizer: SimpleTokenizer | None = None


def available_models() -> list[str]:
    """Names accepted by :func:`load` (the 9 official models and the shipped toy models)."""
    return list(_MODELS)


def default_cache_dir() -> str:
    """``$CLIP_CACHE`` if set, else ``~/.cache/clip``."""
    return os.environ.get("CLIP_CACHE") or os.path.expanduser("~/.cache/clip")


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _is_url(url: str) -> bool:
    return "://" in url


def _expected_sha256(url: str) -> str | None:
    parts = url.rstrip("/").split("/")
    candidate = parts[-2] if len(parts) >= 2 else ""
    if len(candidate) == 64 and all(c in "0123456789abcdef" for c in candidate.lower()):
        return candidate.lower()
    return None


def _download(url: str, root: str | None = None) -> str:
    """Return a local path for ``url``, downloading into ``root`` and verifying the SHA256.

    A local file path is returned as is. For a URL whose second-to-last component is a SHA256
    (OpenAI's layout) an existing file with that hash is reused without network access; a file
    with another hash is reported and downloaded again. The download goes to a temporary file
    that is renamed only after the size and hash check, so no bad file is left at the final path.
    """
    if not _is_url(url):
        if os.path.isfile(url):
            return url
        hint = ""
        if os.path.abspath(url).startswith(WEIGHTS_DIR):
            hint = "; create the shipped toy models with `python tools/pretrain_toy_clip.py`"
        raise ModelNotFoundError(f"model file {url} does not exist{hint}")

    root = root or default_cache_dir()
    os.makedirs(root, exist_ok=True)
    filename = os.path.basename(url.rstrip("/"))
    expected = _expected_sha256(url)
    target = os.path.join(root, filename)

    if os.path.exists(target) and not os.path.isfile(target):
        raise RuntimeError(f"{target} exists and is not a regular file")
    if os.path.isfile(target):
        if expected is None:
            return target
        actual = _sha256(target)
        if actual == expected:
            return target
        logger.warning(
            "%s exists, but its SHA256 %s does not match the expected %s; downloading it again",
            target,
            actual,
            expected,
        )

    logger.info("Downloading %s to %s", url, target)
    fd, tmp = tempfile.mkstemp(prefix=f".{filename}.", suffix=".part", dir=root)
    try:
        digest = hashlib.sha256()
        received = 0
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=60) as source:
            length = source.headers.get("Content-Length")
            total = int(length) if length is not None else None
            while True:
                chunk = source.read(_CHUNK)
                if not chunk:
                    break
                out.write(chunk)
                digest.update(chunk)
                received += len(chunk)
        if total is not None and received != total:
            raise RuntimeError(
                f"download of {url} was interrupted: received {received} of {total} bytes; "
                "nothing was written to the cache, try again"
            )
        if expected is None:
            logger.warning("%s has no SHA256 in its URL; the download was not verified", url)
        elif digest.hexdigest() != expected:
            raise RuntimeError(
                f"model file downloaded from {url} has SHA256 {digest.hexdigest()}, expected "
                f"{expected}; the file was discarded"
            )
        os.replace(tmp, target)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return target


def _transform(n_px: int) -> Compose:
    """CLIP's test-time preprocessing: bicubic resize, center crop, RGB, tensor, CLIP mean/std."""
    return build_preprocess(PreprocessCfg(size=n_px))


def _is_torchscript(path: str) -> bool:
    """TorchScript archives are zip files with a ``constants.pkl``/``code/`` entry."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
    return any(n.endswith("/constants.pkl") or "/code/" in n for n in names)


def _describe_wrong_kind(obj: Any, path: str) -> str:
    if isinstance(obj, Mapping):
        keys = sorted(str(k) for k in obj)[:10]
        if "state_dict" in obj:
            return (
                f"{path} looks like a training checkpoint (keys {keys}), not an OpenAI CLIP "
                "checkpoint; pass a CLIP model file (e.g. a name from clip.available_models()), "
                "and load prompt-learner checkpoints with the trainer's load_model"
            )
        return f"{path} is not an OpenAI CLIP state dict (first keys {keys})"
    return f"{path} holds a {type(obj).__name__}, expected an OpenAI CLIP state dict"


def read_state_dict(path: str) -> tuple[dict[str, torch.Tensor], torch.jit.ScriptModule | None]:
    """Read a CLIP checkpoint file: ``(state_dict, jit_module_or_None)``.

    Raises RuntimeError naming ``path`` for truncated/corrupt files and for files of another kind.
    """
    if os.path.isfile(path) and _is_torchscript(path):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)  # torch.jit deprecation notice
                module = torch.jit.load(path, map_location="cpu").eval()
        except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile) as err:
            raise InvalidModelError(
                f"cannot read {path}: {err}. The file is truncated or corrupt; delete it and "
                "download or export it again"
            ) from err
        return dict(module.state_dict()), module
    obj = load_tensor_file(path)
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise InvalidModelError(_describe_wrong_kind(obj, path))
    return dict(obj), None


@dataclass
class CLIPSource:
    """What a CLIP name or path resolves to.

    ``kind`` is ``openai`` (architecture read off the state dict's shapes) or ``hf`` /
    ``open_clip`` (architecture in ``vision_cfg``/``text_cfg``, state dict already in OpenAI's
    key layout). ``state_dict`` is None when only the architecture was asked for.
    """

    name: str
    kind: str
    path: str
    state_dict: dict[str, torch.Tensor] | None = None
    vision_cfg: VisionCfg | None = None
    text_cfg: TextCfg | None = None
    preprocess: PreprocessCfg | None = None


def source_kind(name: str) -> str:
    """``hf``, ``open_clip`` or ``openai``: which loader reads ``name``."""
    if name.startswith(OPEN_CLIP_PREFIX):
        return "open_clip"
    if name.startswith(HF_HUB_PREFIX):
        return "hf"
    if name not in _MODELS and hf.is_hf_snapshot(name):
        return "hf"
    return "openai"


def _check_tokenizer_fits(text_cfg: TextCfg, name: str) -> None:
    """Converted text towers are fed by :func:`tokenize`: its vocabulary and context length."""
    if text_cfg.vocab_size != 49408 or text_cfg.context_length != 77:
        raise InvalidModelError(
            f"{name}: the text tower has vocab_size {text_cfg.vocab_size} and context length "
            f"{text_cfg.context_length}; clip.tokenize (OpenAI's BPE) gives 49408 tokens and 77 "
            "positions, so this model's own tokenizer would be needed (not supported)"
        )


def resolve_clip(name: str, download_root: str | None = None, weights: bool = True) -> CLIPSource:
    """Resolve a CLIP name or path (any format :func:`load` accepts) to a :class:`CLIPSource`.

    With ``weights=False`` nothing heavy is read: converted formats return their architecture and
    preprocessing, OpenAI ones only their path (OpenAI names are not downloaded).
    """
    kind = source_kind(name)
    if kind == "hf":
        snapshot = (
            hf.resolve_hf_hub(name, download_root) if name.startswith(HF_HUB_PREFIX) else name
        )
        vision, text = hf.tower_cfgs(snapshot)
        src = CLIPSource(name, kind, snapshot, None, vision, text)
        src.preprocess = hf.preprocess_cfg(snapshot, vision.image_size)
        if weights:
            try:
                src.state_dict = hf.convert_state_dict(hf.read_weights(snapshot))
            except StateDictError as err:
                raise InvalidModelError(f"{snapshot}: {err}") from err
    elif kind == "open_clip":
        arch, weights_path = oc.parse_name(name)
        config, where = oc.model_config(arch)
        vision, text = oc.tower_cfgs(config, where)
        src = CLIPSource(name, kind, weights_path, None, vision, text)
        src.preprocess = oc.preprocess_cfg(config, vision.image_size, where)
        if weights:
            src.path = oc.weights_file(weights_path)
            src.state_dict = oc.read_weights(src.path)
    else:
        if name in _MODELS:
            path = _download(_MODELS[name], download_root) if weights else _MODELS[name]
        elif os.path.isfile(name):
            path = name
        else:
            raise ModelNotFoundError(
                f"Model {name} not found (MODEL.BACKBONE.NAME / TRAINER.*.TEACHER_NAME); "
                f"available models = {available_models()} = {available_models()}, a checkpoint "
                "file, a Hugging Face snapshot directory, hf-hub:ORG/NAME or "
                "open_clip:ARCH@WEIGHTS"
            )
        src = CLIPSource(name, kind, path)
        if weights:
            src.state_dict, _ = read_state_dict(path)
    if src.text_cfg is not None:
        _check_tokenizer_fits(src.text_cfg, name)
    return src


def load(
    name: str,
    device: str | torch.device = "cpu",
    jit: bool = False,
    download_root: str | None = None,
    design_details: Mapping[str, Any] | None = None,
) -> tuple[torch.nn.Module, Compose]:
    """Load a CLIP model by name (see :func:`available_models`) or path: ``(model, preprocess)``.

    With ``jit=False`` the model is rebuilt from the checkpoint's state dict (with
    ``design_details`` deep prompts if given); on CPU it is converted to fp32, elsewhere an OpenAI
    model keeps its fp16 weights (converted models are fp32). ``jit=True`` returns the TorchScript
    archive itself, in its saved dtype (trusted files only; no deep prompts possible). The
    preprocessing recipe is ``model.preprocess_cfg`` and is logged. ``download_root`` is the
    OpenAI weights cache, or for ``hf-hub:`` names the Hugging Face cache to read.
    """
    kind = source_kind(name)
    if kind != "openai":
        if jit:
            raise ValueError(f"{name}: jit=True is only for OpenAI TorchScript archives")
        src = resolve_clip(name, download_root)
        try:
            model = build_from_cfgs(src.state_dict, src.vision_cfg, src.text_cfg, design_details)
        except StateDictError as err:
            raise InvalidModelError(f"{src.path}: {err}") from err
        model = model.to(device)
        return _with_preprocess(model, src.preprocess, name)

    src = resolve_clip(name, download_root, weights=False)  # raises for unknown names
    model_path = _download(_MODELS[name], download_root) if name in _MODELS else src.path
    state_dict, jit_module = read_state_dict(model_path)
    if jit:
        if design_details is not None:
            raise ValueError("jit=True cannot add deep prompts; use jit=False with design_details")
        if jit_module is None:
            logger.warning("%s is not a TorchScript archive; loading it with jit=False", model_path)
        else:
            # A traced graph bakes in its dtype casts, so the archive keeps its saved dtype.
            jit_module = jit_module.to(device)
            res = int(jit_module.input_resolution.item())
            return jit_module, _transform(res)

    try:
        model = build_model(state_dict, design_details)
    except StateDictError as err:
        hint = ""
        if any(k.startswith(("vision_model.", "text_model.")) for k in state_dict):
            hint = "; this is a Hugging Face CLIPModel state dict: pass its snapshot directory"
        raise InvalidModelError(f"{model_path}: {err}{hint}") from err
    model = model.to(device)
    if str(device) == "cpu":
        model.float()
    return _with_preprocess(model, PreprocessCfg(size=model.visual.input_resolution), name)


def _with_preprocess(
    model: torch.nn.Module, preprocess: PreprocessCfg, name: str
) -> tuple[torch.nn.Module, Compose]:
    """Attach and log the model's preprocessing recipe; return ``(model, transform)``."""
    model.preprocess_cfg = preprocess
    logger.info(
        f"CLIP {name}: preprocessing {preprocess.as_dict()} (INPUT.SIZE, INPUT.PIXEL_MEAN/STD "
        "and INPUT.INTERPOLATION should match it)"
    )
    return model, build_preprocess(preprocess)


def _get_tokenizer() -> SimpleTokenizer:
    global _tokenizer
    if _tokenizer is None:
        _tokenizer = SimpleTokenizer()
    return _tokenizer


def tokenize(
    texts: str | list[str], context_length: int = 77, truncate: bool = False
) -> torch.LongTensor:
    """Token ids ``[len(texts), context_length]``: SOT, the text's BPE ids, EOT, zero padding.

    A text longer than the context raises RuntimeError naming it, unless ``truncate`` is set;
    then it is cut and the last token is EOT.
    """
    if isinstance(texts, str):
        texts = [texts]
    tok = _get_tokenizer()
    result = torch.zeros(len(texts), context_length, dtype=torch.long)
    for i, text in enumerate(texts):
        ids = [tok.sot_token, *tok.encode(text), tok.eot_token]
        if len(ids) > context_length:
            if not truncate:
                raise RuntimeError(
                    f"Input {text!r} is too long for context length {context_length} "
                    f"({len(ids)} tokens with SOT/EOT); shorten it or pass truncate=True"
                )
            ids = ids[:context_length]
            ids[-1] = tok.eot_token
        result[i, : len(ids)] = torch.tensor(ids, dtype=torch.long)
    return result
