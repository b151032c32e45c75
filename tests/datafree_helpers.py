"""Helpers for the data-free student tests: a zero-shot teacher run dir and a synthesized folder."""

from __future__ import annotations

import os

import numpy as np
import torch
from PIL import Image

import clip
from dassl.utils import write_json
from datasets.toy_render import CLASSNAMES
from trainers.class_vectors import save_class_vectors

__all__ = ["zeroshot_teacher_dir", "synthesized_folder"]


def zeroshot_teacher_dir(out: str, clip_name: str = "toy-teacher") -> str:
    """A teacher run dir from a frozen CLIP: its image tower as a checkpoint + template vectors."""
    model, _ = clip.load(clip_name, device="cpu")
    sd = {
        "image_encoder." + k[len("visual.") :]: v
        for k, v in model.state_dict().items()
        if k.startswith("visual.")
    }
    sd["logit_scale"] = model.logit_scale.detach().clone()
    os.makedirs(os.path.join(out, "VLPromptLearner"), exist_ok=True)
    torch.save(
        {"state_dict": sd, "epoch": 1}, os.path.join(out, "VLPromptLearner", "model.pth.tar-1")
    )
    with torch.no_grad():
        feats = model.encode_text(clip.tokenize([f"a photo of a {c}." for c in CLASSNAMES])).float()
    save_class_vectors(
        os.path.join(out, "class_vectors.safetensors"),
        feats / feats.norm(dim=-1, keepdim=True),
        CLASSNAMES,
        base_classes=range(0, 18),
        new_classes=range(18, 36),
        teacher_backbone=clip_name,
    )
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
