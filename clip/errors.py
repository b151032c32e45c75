"""Errors for CLIP names, files and configs the user gave (reported by train.py as one line)."""

from __future__ import annotations

from dassl.utils.errors import UserInputError

__all__ = ["ModelNotFoundError", "InvalidModelError", "OptionalDependencyError"]


class ModelNotFoundError(RuntimeError, UserInputError):
    """An unknown CLIP name, a missing weights file or a snapshot that is not cached."""


class InvalidModelError(RuntimeError, UserInputError):
    """A CLIP file, config or name that cannot be used: corrupt, foreign or an unsupported option."""


class OptionalDependencyError(ImportError, UserInputError):
    """An optional package (transformers, huggingface_hub, open_clip_torch) is not installed."""
