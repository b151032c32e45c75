"""ToyShapesDG: the toy world in four domains (photo, smooth, sketch, cartoon), 36 classes.

The multi-domain counterpart of :mod:`datasets.toy_shapes` for out-of-distribution evaluation
of data-free students (styles in :mod:`datasets.toy_render_dg`). Generated on first use under
``<DATASET.ROOT>/toy_shapes_dg/``::

    toy_shapes_dg/
        images/<domain>/<colour>_<shape>/<split>_<n>.png
        split_<domain>.json         {"train"|"val"|"test": [[relpath, label, classname], ...]}
        generation.json             parameters the files were generated with (written last)

Deterministic (one Generator per (seed, domain, split, class)), atomic (temporary directory,
then rename) and self-checking like ToyShapes. Domains follow Dassl's protocol
(:mod:`datasets.domain_base`): ``DATASET.SOURCE_DOMAINS`` -> train/val, ``TARGET_DOMAINS`` -> test.
"""

from __future__ import annotations

import logging
import os

import numpy as np
from PIL import Image

from dassl.data.datasets import DATASET_REGISTRY
from dassl.utils import read_json, write_json

from .domain_base import DomainDataset
from .toy_render import CLASSNAMES
from .toy_render_dg import DG_DOMAINS, render_domain
from .toy_shapes import publish_generated_tree

__all__ = ["ToyShapesDG", "DATASET_DIR", "generate_toy_shapes_dg", "N_TRAIN", "N_VAL", "N_TEST"]

logger = logging.getLogger(__name__)

DATASET_DIR = "toy_shapes_dg"
_META_FILE = "generation.json"
SPLITS = ("train", "val", "test")
N_TRAIN = 16
N_VAL = 4
N_TEST = 40
SEED = 0
IMAGE_SIZE = 32
RENDER_VERSION = 2  # 2: the cartoon border lies outside the shape
# Offset of the domain index in the seed sequence, so that no stream equals a ToyShapes one.
_SEED_DOMAIN_OFFSET = 100


def _class_dir(name: str) -> str:
    return name.replace(" ", "_")


def _meta(n_train: int, n_val: int, n_test: int, seed: int, size: int) -> dict:
    return {
        "render_version": RENDER_VERSION,
        "seed": seed,
        "size": size,
        "domains": list(DG_DOMAINS),
        "n_per_class": {"train": n_train, "val": n_val, "test": n_test},
        "classnames": CLASSNAMES,
    }


def _is_complete(dataset_dir: str, meta: dict) -> bool:
    try:
        if read_json(os.path.join(dataset_dir, _META_FILE)) != meta:
            return False
    except (OSError, ValueError):
        return False
    return all(os.path.isfile(os.path.join(dataset_dir, f"split_{d}.json")) for d in DG_DOMAINS)


def _write_tree(tmp_dir: str, meta: dict) -> None:
    for d_index, domain in enumerate(DG_DOMAINS):
        lists: dict[str, list] = {}
        for s_index, split in enumerate(SPLITS):
            n = meta["n_per_class"][split]
            items = []
            for label, name in enumerate(CLASSNAMES):
                rng_key = [meta["seed"], _SEED_DOMAIN_OFFSET + d_index, s_index, label]
                images = render_domain(
                    [label] * n, np.random.default_rng(rng_key), domain, meta["size"]
                )
                folder = os.path.join(tmp_dir, "images", domain, _class_dir(name))
                os.makedirs(folder, exist_ok=True)
                for i, img in enumerate(images):
                    rel = f"{domain}/{_class_dir(name)}/{split}_{i:04d}.png"
                    Image.fromarray(img).save(os.path.join(tmp_dir, "images", rel))
                    items.append([rel, label, name])
            lists[split] = items
        write_json(lists, os.path.join(tmp_dir, f"split_{domain}.json"))
    write_json(meta, os.path.join(tmp_dir, _META_FILE))


def generate_toy_shapes_dg(
    root: str,
    n_train: int = N_TRAIN,
    n_val: int = N_VAL,
    n_test: int = N_TEST,
    seed: int = SEED,
    size: int = IMAGE_SIZE,
) -> str:
    """Make sure ``<root>/toy_shapes_dg`` holds the dataset for these parameters; return it."""
    for key, value in (("n_train", n_train), ("n_val", n_val), ("n_test", n_test)):
        if value < 1:
            raise ValueError(f"{key} must be >= 1 image per class, got {value}")
    root = os.path.abspath(os.path.expanduser(root))
    dataset_dir = os.path.join(root, DATASET_DIR)
    meta = _meta(n_train, n_val, n_test, seed, size)
    if _is_complete(dataset_dir, meta):
        return dataset_dir
    total = len(DG_DOMAINS) * len(CLASSNAMES) * (n_train + n_val + n_test)
    logger.info(f"Generating ToyShapesDG ({total} images, seed {seed}) in {dataset_dir}")
    return publish_generated_tree(
        dataset_dir,
        lambda tmp_dir: _write_tree(tmp_dir, meta),
        lambda path: _is_complete(path, meta),
    )


@DATASET_REGISTRY.register(builtin=True)
class ToyShapesDG(DomainDataset):
    """The toy world's four domains; generated under the data root on first use.

    Sizes are the module defaults; call :func:`generate_toy_shapes_dg` first for other sizes
    (an existing complete directory is used as it is).
    """

    dataset_dir = DATASET_DIR
    domains = list(DG_DOMAINS)
    docs_anchor = "toyshapesdg"

    def prepare(self, root: str) -> None:
        dataset_dir = os.path.join(root, DATASET_DIR)
        try:
            meta = read_json(os.path.join(dataset_dir, _META_FILE))
            c = meta["n_per_class"]
            params = (c["train"], c["val"], c["test"], meta["seed"], meta["size"])
        except (OSError, ValueError, KeyError, TypeError):
            params = (N_TRAIN, N_VAL, N_TEST, SEED, IMAGE_SIZE)
        generate_toy_shapes_dg(root, *params)

    def read_domain(self, domain: str, split: str) -> list[tuple[str, int, str]]:
        lists = read_json(os.path.join(self.dataset_dir, f"split_{domain}.json"))
        image_dir = os.path.join(self.dataset_dir, "images")
        return [(os.path.join(image_dir, rel), int(y), c) for rel, y, c in lists[split]]
