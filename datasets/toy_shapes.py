"""ToyShapes: the embedded default dataset (downstream domain of the toy world).

36 classes ``"<colour> <shape>"`` in sorted order (labels 0..35): base = the first 18
(blue / green / orange objects), new = the last 18 (purple / red / yellow objects), by the shared
``datasets.base_new`` rule. Images are 32x32 PNGs rendered by :mod:`datasets.toy_render` in the
``"downstream"`` domain, which the toy CLIPs never saw during pretraining.

On first use the dataset is generated under ``<DATASET.ROOT>/toy_shapes/`` in CoOp's layout::

    toy_shapes/
        images/<colour>_<shape>/<n>.png
        split_zhou_ToyShapes.json      {"train"|"val"|"test": [[relpath, label, classname], ...]}
        generation.json                parameters the files were generated with
        split_fewshot/                 few-shot caches (as every CoOp dataset)

Generation is deterministic (one numpy Generator per (seed, split, class)), atomic (written to a
temporary directory, then renamed into place) and self-checking: an existing directory whose
``generation.json`` or image count does not match is regenerated.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from typing import Any

import numpy as np
from PIL import Image

from dassl.data.datasets import DATASET_REGISTRY, Datum
from dassl.utils import read_json, write_json

from .coop_base import CoOpDataset, read_split, resolve_root
from .toy_render import CLASSNAMES, render_batch

__all__ = [
    "ToyShapes",
    "DATASET_DIR",
    "SPLIT_FILE",
    "N_TRAIN",
    "N_VAL",
    "N_TEST",
    "SEED",
    "RENDER_VERSION",
    "class_dirname",
    "render_split",
    "generate_toy_shapes",
]

logger = logging.getLogger(__name__)

DATASET_DIR = "toy_shapes"
SPLIT_FILE = "split_zhou_ToyShapes.json"
_META_FILE = "generation.json"
SPLITS = ("train", "val", "test")

# Default sizes: images per class in each split (1440 / 360 / 1440 images in all).
N_TRAIN = 40
N_VAL = 10
N_TEST = 40
SEED = 0
IMAGE_SIZE = 32
# Bump when the renderer changes its output, so that existing directories get regenerated.
RENDER_VERSION = 1


def class_dirname(classname: str) -> str:
    """Folder name of a class: ``"red circle"`` -> ``"red_circle"``."""
    return classname.replace(" ", "_")


def render_split(
    split: str, n_per_class: int, seed: int = SEED, size: int = IMAGE_SIZE
) -> tuple[np.ndarray, np.ndarray]:
    """Render ``n_per_class`` downstream images of every class for ``split``, class-major order.

    Each (seed, split, class) has its own Generator, so a class's images do not depend on the
    other counts. Returns ``(images uint8 (N, size, size, 3), labels int64 (N,))``.
    """
    if split not in SPLITS:
        raise ValueError(f"Unknown split {split!r}; expected one of {SPLITS}")
    if n_per_class < 0:
        raise ValueError(f"n_per_class must be >= 0, got {n_per_class}")
    images, labels = [], []
    for label in range(len(CLASSNAMES)):
        rng = np.random.default_rng([seed, SPLITS.index(split), label])
        lab = np.full(n_per_class, label, dtype=np.int64)
        images.append(render_batch(lab, rng, "downstream", size=size).images)
        labels.append(lab)
    return np.concatenate(images), np.concatenate(labels)


def _expected_meta(n_train: int, n_val: int, n_test: int, seed: int, size: int) -> dict:
    return {
        "render_version": RENDER_VERSION,
        "seed": seed,
        "size": size,
        "n_per_class": {"train": n_train, "val": n_val, "test": n_test},
        "classnames": CLASSNAMES,
    }


def _is_complete(dataset_dir: str, meta: dict) -> bool:
    """True when ``dataset_dir`` holds exactly the files ``meta`` describes."""
    meta_path = os.path.join(dataset_dir, _META_FILE)
    if not (os.path.isfile(meta_path) and os.path.isfile(os.path.join(dataset_dir, SPLIT_FILE))):
        return False
    try:
        if read_json(meta_path) != meta:
            return False
    except (OSError, ValueError):
        return False
    per_class = sum(meta["n_per_class"].values())
    image_dir = os.path.join(dataset_dir, "images")
    for name in CLASSNAMES:
        cdir = os.path.join(image_dir, class_dirname(name))
        if not os.path.isdir(cdir):
            return False
        if sum(1 for f in os.listdir(cdir) if f.endswith(".png")) != per_class:
            return False
    return True


def _write_tree(tmp_dir: str, meta: dict) -> None:
    image_dir = os.path.join(tmp_dir, "images")
    for name in CLASSNAMES:
        os.makedirs(os.path.join(image_dir, class_dirname(name)))
    split_lists: dict[str, list] = {}
    counters = [0] * len(CLASSNAMES)
    for split in SPLITS:
        images, labels = render_split(split, meta["n_per_class"][split], meta["seed"], meta["size"])
        items = []
        for img, label in zip(images, labels):
            label = int(label)
            rel = f"{class_dirname(CLASSNAMES[label])}/{counters[label]:05d}.png"
            counters[label] += 1
            Image.fromarray(img).save(os.path.join(image_dir, rel))
            items.append([rel, label, CLASSNAMES[label]])
        split_lists[split] = items
    write_json(split_lists, os.path.join(tmp_dir, SPLIT_FILE))
    # Written last: its presence (with matching content) marks a finished directory.
    write_json(meta, os.path.join(tmp_dir, _META_FILE))


def generate_toy_shapes(
    root: str,
    n_train: int = N_TRAIN,
    n_val: int = N_VAL,
    n_test: int = N_TEST,
    seed: int = SEED,
    size: int = IMAGE_SIZE,
) -> str:
    """Make sure ``<root>/toy_shapes`` holds the dataset for these parameters; return its path.

    Cheap when the directory is already complete. Otherwise the whole tree is written to a
    temporary sibling directory and renamed into place, so readers never see a partial tree;
    a stale or half-written directory is replaced (its few-shot caches go with it).
    """
    for key, value in (("n_train", n_train), ("n_val", n_val), ("n_test", n_test)):
        if value < 1:
            raise ValueError(f"{key} must be >= 1 image per class, got {value}")
    root = os.path.abspath(os.path.expanduser(root))
    dataset_dir = os.path.join(root, DATASET_DIR)
    meta = _expected_meta(n_train, n_val, n_test, seed, size)
    if _is_complete(dataset_dir, meta):
        return dataset_dir

    total = len(CLASSNAMES) * (n_train + n_val + n_test)
    logger.info(f"Generating ToyShapes ({total} images, seed {seed}) in {dataset_dir}")
    return publish_generated_tree(
        dataset_dir,
        lambda tmp_dir: _write_tree(tmp_dir, meta),
        lambda path: _is_complete(path, meta),
    )


def publish_generated_tree(
    dataset_dir: str, write: Callable[[str], None], is_complete: Callable[[str], bool]
) -> str:
    """Write a generated dataset with ``write(tmp_dir)`` into a temporary sibling, then rename it.

    Readers never see a partial tree; a stale or half-written ``dataset_dir`` is replaced, and a
    concurrent generator that finished first wins (its tree is accepted if complete).
    """
    root, name = os.path.split(dataset_dir)
    os.makedirs(root, exist_ok=True)
    tmp_dir = tempfile.mkdtemp(prefix=f".{name}.tmp-", dir=root)
    try:
        write(tmp_dir)
        if os.path.exists(dataset_dir):
            if is_complete(dataset_dir):  # another process finished first
                return dataset_dir
            logger.warning(f"Replacing incomplete or outdated directory {dataset_dir}")
            stale = tempfile.mkdtemp(prefix=f".{name}.stale-", dir=root)
            try:
                os.rename(dataset_dir, os.path.join(stale, name))
            except FileNotFoundError:  # a concurrent generator moved it away first
                pass
            shutil.rmtree(stale, ignore_errors=True)
        try:
            os.rename(tmp_dir, dataset_dir)
        except OSError:
            # Lost a race with a concurrent generator: accept its tree if it is complete.
            if not is_complete(dataset_dir):
                raise
    finally:
        if os.path.isdir(tmp_dir):
            shutil.rmtree(tmp_dir, ignore_errors=True)
    return dataset_dir


@DATASET_REGISTRY.register(builtin=True)
class ToyShapes(CoOpDataset):
    """The toy world's downstream domain; generated under the data root on first use.

    Sizes are the module defaults (``N_TRAIN``/``N_VAL``/``N_TEST`` images per class, seed
    ``SEED``); call :func:`generate_toy_shapes` first to use other sizes (e.g. in tests): an
    existing complete directory is used as it is.
    """

    dataset_dir = DATASET_DIR
    image_subdir = "images"
    split_file = SPLIT_FILE

    def __init__(self, cfg: Any) -> None:
        root = resolve_root(cfg)
        dataset_dir = os.path.join(root, DATASET_DIR)
        if not os.path.isfile(os.path.join(dataset_dir, _META_FILE)):
            generate_toy_shapes(root)
        else:
            self._check_generated(dataset_dir)
        super().__init__(cfg)

    @staticmethod
    def _check_generated(dataset_dir: str) -> None:
        """Regenerate with the recorded parameters if the tree is incomplete or outdated."""
        try:
            meta = read_json(os.path.join(dataset_dir, _META_FILE))
            counts = meta["n_per_class"]
            params = (counts["train"], counts["val"], counts["test"], meta["seed"], meta["size"])
        except (OSError, ValueError, KeyError, TypeError):
            params = (N_TRAIN, N_VAL, N_TEST, SEED, IMAGE_SIZE)
        generate_toy_shapes(os.path.dirname(dataset_dir), *params)

    def build_splits(self) -> tuple[list[Datum], list[Datum], list[Datum]]:
        """Only reached if the split file vanished: regenerate the tree and read it."""
        self._check_generated(self.dataset_dir)
        return read_split(self.split_path, self.image_dir)
