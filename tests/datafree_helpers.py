"""Helpers for the data-free student tests: a zero-shot teacher run dir and a synthesized folder."""

from __future__ import annotations

import os

import numpy as np
from PIL import Image

from dassl.utils import write_json
from datasets.toy_render import CLASSNAMES

__all__ = ["export_zeroshot_vectors", "synthesized_folder"]


def export_zeroshot_vectors(root: str, out: str, clip_name: str = "toy-teacher", *opts: str) -> str:
    """Class vectors of a zero-shot CLIP teacher via tools/export_class_vectors.py (ToyShapesDG)."""
    from tools import export_class_vectors

    argv = ["--root", root, "--trainer", "ZeroshotCLIP", "--teacher-weights", clip_name]
    argv += ["--dataset-config-file", "configs/datasets/toy_shapes_dg.yaml", "--output", out]
    argv += ["--config-file", "configs/trainers/ZeroshotCLIP/toy.yaml", *opts]
    assert export_class_vectors.main(argv) == 0
    return out


def synthesized_folder(out: str, n_per_class: int = 1, permutation=None, seed: int = 0) -> str:
    """A CoOp-style folder of images (``images/<class>/<id>.png`` + split json), random pixels.

    ``permutation`` relabels the split json's entries (labels and class names), images unchanged.
    """
    rng = np.random.default_rng(seed)
    items = []
    for label, name in enumerate(CLASSNAMES):
        folder = os.path.join(out, "images", name.replace(" ", "_"))
        os.makedirs(folder, exist_ok=True)
        for i in range(n_per_class):
            img = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
            rel = f"{name.replace(' ', '_')}/{i:05d}.png"
            Image.fromarray(img).save(os.path.join(out, "images", rel))
            y = int(permutation[label]) if permutation is not None else label
            items.append([rel, y, CLASSNAMES[y]])
    write_json({"train": items, "val": [], "test": []}, os.path.join(out, "split_synthesized.json"))
    return out
