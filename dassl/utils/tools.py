"""Small filesystem, JSON, seeding and string helpers shared by the whole package."""

from __future__ import annotations

import contextlib
import difflib
import errno
import json
import logging
import os
import random
import sys
import tempfile
import urllib.request
import warnings
from collections.abc import Iterator, Sequence
from typing import IO, Any

import numpy as np
import PIL
import torch
from PIL import Image

from .errors import UserInputError

__all__ = [
    "ImageReadError",
    "OutputWriteError",
    "atomic_write",
    "atomic_torch_save",
    "mkdir_if_missing",
    "check_isfile",
    "read_json",
    "write_json",
    "set_random_seed",
    "download_url",
    "read_image",
    "collect_env_info",
    "listdir_nohidden",
    "get_most_similar_str_to_a_from_b",
    "check_availability",
    "tolist_if_not",
]

_log = logging.getLogger("dassl.utils.tools")


class ImageReadError(OSError, UserInputError):
    """An image file is missing or cannot be decoded; ``path`` names the file."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"Cannot read image {path!r}: {reason}")
        self.path = path


class OutputWriteError(OSError, UserInputError):
    """An output file cannot be written (disk full, read-only or not writable directory)."""


# errno -> the fix to suggest; other OSErrors are not the user's doing and propagate as they are
_WRITE_FIXES = {
    errno.ENOSPC: "the disk is full: free space or choose another --output-dir",
    errno.EDQUOT: "the disk quota is exceeded: free space or choose another --output-dir",
    errno.EACCES: "no permission to write there: fix the permissions or choose another path",
    errno.EPERM: "no permission to write there: fix the permissions or choose another path",
    errno.EROFS: "the file system is read-only: choose another path",
}


def _write_error(fpath: str, exc: OSError) -> OSError:
    fix = _WRITE_FIXES.get(exc.errno)
    if fix is None:
        return exc
    err = OutputWriteError(exc.errno, f'Cannot write "{fpath}" ({exc.strerror}); {fix}')
    err.filename = fpath
    return err


@contextlib.contextmanager
def atomic_write(fpath: str, mode: str = "w", encoding: str | None = None) -> Iterator[IO[Any]]:
    """Open a temporary file next to ``fpath`` and move it into place only on success.

    A crash while writing never leaves a half-written ``fpath`` behind (readers see either the
    old file or the new one; the temporary file is hidden, ``.<name>.<random>.tmp``).
    ``mode`` must be a write mode ("w" or "wb"). Disk full / permission errors become an
    :class:`OutputWriteError` naming the file and the fix, and the old file is kept.
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_write supports mode 'w' or 'wb', got {mode!r}")
    fpath = os.fspath(fpath)
    dirname = os.path.dirname(os.path.abspath(fpath))
    try:
        mkdir_if_missing(dirname)
        fd, tmp = tempfile.mkstemp(
            dir=dirname, prefix="." + os.path.basename(fpath) + ".", suffix=".tmp"
        )
    except OSError as e:
        raise _write_error(fpath, e) from e
    try:
        with os.fdopen(fd, mode, encoding=encoding or ("utf-8" if mode == "w" else None)) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, fpath)
    except BaseException as e:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        if isinstance(e, OSError) and not isinstance(e, UserInputError):
            raise _write_error(fpath, e) from e
        raise
    _fsync_dir(dirname)


def _fsync_dir(dirname: str) -> None:
    """Persist a rename (best effort; not every file system supports it)."""
    with contextlib.suppress(OSError):
        fd = os.open(dirname, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_torch_save(obj: Any, fpath: str) -> str:
    """``torch.save(obj, fpath)`` through :func:`atomic_write`; returns ``fpath``."""
    with atomic_write(fpath, "wb") as f:
        torch.save(obj, f)
    return fpath


def mkdir_if_missing(dirname: str) -> None:
    """Create ``dirname`` (and parents) unless it exists; safe against concurrent creation."""
    if not dirname or os.path.exists(dirname):
        return
    try:
        os.makedirs(dirname)
    except OSError as e:
        if e.errno != errno.EEXIST:
            raise


def check_isfile(fpath: str) -> bool:
    """Return True if ``fpath`` is a file; warn (as upstream does) when it is not."""
    isfile = os.path.isfile(fpath)
    if not isfile:
        warnings.warn(f'No file found at "{fpath}"')
    return isfile


def read_json(fpath: str) -> Any:
    """Load a JSON file."""
    with open(fpath, encoding="utf-8") as f:
        return json.load(f)


def write_json(obj: Any, fpath: str) -> None:
    """Write ``obj`` as JSON (indent 4, upstream separators) atomically; bare names work."""
    with atomic_write(fpath, "w") as f:
        json.dump(obj, f, indent=4, separators=(",", ": "))


def set_random_seed(seed: int) -> None:
    """Seed python, numpy, torch and every CUDA device."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.cuda.manual_seed_all(seed)


def download_url(url: str, dst: str) -> None:
    """Download ``url`` to ``dst`` (written atomically), logging progress every ~10%."""
    mkdir_if_missing(os.path.dirname(os.path.abspath(dst)))
    state = {"last": -1}

    def _hook(count: int, block_size: int, total_size: int) -> None:
        if total_size <= 0:
            return
        percent = min(100, int(count * block_size * 100 / total_size))
        if percent // 10 != state["last"]:
            state["last"] = percent // 10
            _log.info("Downloading %s: %d%%", url, percent)

    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(dst)), suffix=".part")
    os.close(fd)
    try:
        urllib.request.urlretrieve(url, tmp, _hook)
        os.replace(tmp, dst)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise


def _to_rgb(img: Image.Image) -> Image.Image:
    """RGB from any mode: CMYK, palette (with transparency), grayscale, 16/32-bit, alpha.

    Pillow's own ``convert("RGB")`` clips 16-bit grayscale to white, so high-bit-depth images
    are rescaled to 8 bits first; transparent pixels are composited on black as upstream does.
    """
    if img.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        top = 65535.0 if img.mode.startswith("I;16") or arr.max(initial=0) > 255 else 255.0
        if img.mode == "F":
            top = max(float(arr.max(initial=0)), 1.0) if arr.max(initial=0) > 1 else 1.0
        arr = np.clip(np.rint(arr / top * 255.0), 0, 255).astype(np.uint8)
        return Image.fromarray(arr, mode="L").convert("RGB")
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    return img.convert("RGB")


def read_image(path: str) -> Image.Image:
    """Read an image as RGB; raise :class:`ImageReadError` naming the file on any failure.

    CMYK, palette, grayscale, 16-bit and alpha images are converted (:func:`_to_rgb`), not
    rejected; missing, empty or undecodable files are the user's to fix.
    """
    if not os.path.exists(path):
        raise ImageReadError(path, "file does not exist (check DATASET.ROOT and the split file)")
    if os.path.getsize(path) == 0:
        raise ImageReadError(path, "the file is empty (0 bytes): re-copy or re-download it")
    try:
        with Image.open(path) as img:
            img.load()
            return _to_rgb(img)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        raise ImageReadError(
            path, f"corrupt or unsupported image ({e}): re-copy or re-download it"
        ) from e


def collect_env_info() -> str:
    """Return torch's environment report plus the Pillow version (only printed)."""
    try:
        from torch.utils.collect_env import get_pretty_env_info

        info = get_pretty_env_info()
    except Exception as e:  # the report shells out; never let it break a run
        info = f"torch {torch.__version__} (collect_env failed: {e})\nPython {sys.version}"
    return info + f"\n        Pillow ({PIL.__version__})"


def listdir_nohidden(path: str, sort: bool = False) -> list[str]:
    """List entries of ``path`` not starting with '.' (plain string sort if asked)."""
    items = [f for f in os.listdir(path) if not f.startswith(".")]
    if sort:
        items.sort()
    return items


def get_most_similar_str_to_a_from_b(a: str, b: Sequence[str]) -> str | None:
    """Return the string of ``b`` most similar to ``a`` (difflib ratio); None if ``b`` is empty."""
    best, best_score = None, (-1.0, -1.0)
    for candidate in b:
        # case-insensitive similarity first ("Coop" -> "CoOp"), exact-case ratio breaks ties
        score = (
            difflib.SequenceMatcher(None, a.lower(), candidate.lower()).ratio(),
            difflib.SequenceMatcher(None, a, candidate).ratio(),
        )
        if score > best_score:
            best, best_score = candidate, score
    return best


def check_availability(requested: str, available: Sequence[str]) -> None:
    """Raise ValueError naming the closest valid choice and listing all of them."""
    if requested not in available:
        closest = get_most_similar_str_to_a_from_b(requested, available)
        hint = f' Did you mean "{closest}"?' if closest is not None else ""
        raise ValueError(
            f"The requested one is expected to belong to {sorted(available)}, but got "
            f"[{requested}].{hint}"
        )


def tolist_if_not(x: Any) -> list:
    """Wrap ``x`` in a list unless it already is one."""
    if not isinstance(x, list):
        x = [x]
    return x
