"""OpenAI-compatible CLIP with deep prompts (IVLP/VPT/MaPLe), BPE tokenizer and weight loader.

``import clip`` gives the upstream API: ``clip.load``, ``clip.tokenize``,
``clip.available_models``, and the submodules ``clip.clip``, ``clip.model`` and
``clip.simple_tokenizer``.
"""

from clip import clip as clip  # noqa: PLC0414  (upstream code does `from clip import clip`)
from clip import model, simple_tokenizer
from clip.clip import _MODELS, _download, available_models, load, tokenize

__all__ = [
    "_MODELS",
    "_download",
    "available_models",
    "clip",
    "load",
    "model",
    "simple_tokenizer",
    "tokenize",
]
