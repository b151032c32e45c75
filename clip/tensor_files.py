"""Reading tensor files without running code: safetensors, or ``torch.load(weights_only=True)``."""

from __future__ import annotations

import os
import zipfile
from typing import Any

import torch

from clip.errors import InvalidModelError, ModelNotFoundError


def load_tensor_file(path: str) -> Any:
    """The object stored in ``path`` (a dict of tensors for safetensors files).

    Raises ModelNotFoundError / InvalidModelError (RuntimeErrors) naming ``path`` for missing, truncated or corrupt files and for pickles
    that hold more than tensors and containers (which ``weights_only`` refuses to build).
    """
    if not os.path.isfile(path):
        raise ModelNotFoundError(f"checkpoint {path} does not exist")
    try:
        if path.endswith(".safetensors"):
            from safetensors.torch import load_file

            return load_file(path)
        return torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile) as err:
        raise InvalidModelError(
            f"cannot read {path}: {err}. The file is truncated, corrupt or not a PyTorch/"
            "safetensors checkpoint; delete it and download or export it again"
        ) from err
    except Exception as err:  # weights_only refusals surface as pickle errors
        raise InvalidModelError(
            f"cannot read {path} safely as a state dict ({type(err).__name__}: {err})"
        ) from err
