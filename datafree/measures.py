"""Measures of a synthesized set, from its saved PNGs and the teacher.

- diversity: mean pairwise cosine distance ``1 - cos`` between the teacher's image features of
  images of the same class, averaged over classes (classes with >= 2 images);
- accuracy: fraction of images the teacher classifies as their intended class (argmax over the
  class vectors);
- mean probability of the intended class.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from PIL import Image

from .surrogate_set import read_surrogate_set
from .teacher import Teacher

__all__ = ["per_class_diversity", "within_class_diversity", "measure_set"]


def within_class_diversity(features: torch.Tensor, labels: torch.Tensor) -> float:
    """Mean over classes of the mean pairwise ``1 - cos`` of that class's (normalised) features."""
    return float(np.mean(per_class_diversity(features, labels)))


def per_class_diversity(features: torch.Tensor, labels: torch.Tensor) -> list[float]:
    """Mean pairwise ``1 - cos`` within each class that has >= 2 images (label order)."""
    per_class = []
    for c in labels.unique():
        f = features[labels == c]
        n = f.shape[0]
        if n < 2:
            continue
        sim = f @ f.t()
        off = sim[~torch.eye(n, dtype=torch.bool)]
        per_class.append(float((1 - off).mean()))
    if not per_class:
        raise ValueError("diversity needs at least one class with two images")
    return per_class


@torch.no_grad()
def measure_set(folder: str, teacher: Teacher, batch_size: int = 256) -> dict[str, Any]:
    meta = read_surrogate_set(folder)
    recs = meta["images"]
    feats = []
    device = teacher.class_vectors.device
    for i in range(0, len(recs), batch_size):
        arrays = [
            np.asarray(Image.open(r["impath"]).convert("RGB")) for r in recs[i : i + batch_size]
        ]
        x = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float().div(255).to(device)
        feats.append(teacher.image_features(x))
    feats_t = torch.cat(feats).cpu()
    labels = torch.tensor([r["label"] for r in recs])
    probs = teacher.logits(feats_t.to(device)).softmax(dim=-1).cpu()
    per_class = per_class_diversity(feats_t, labels)
    return {
        "strategy": meta["strategy"],
        "images": len(recs),
        "classes": len(meta["classnames"]),
        "accuracy": float((probs.argmax(dim=-1) == labels).float().mean()),
        "mean_prob": float(probs[torch.arange(len(recs)), labels].mean()),
        "diversity": float(np.mean(per_class)),
        # standard error over classes, for comparing strategies
        "diversity_sem": float(np.std(per_class, ddof=1) / np.sqrt(len(per_class)))
        if len(per_class) > 1
        else float("nan"),
        "per_class_diversity": per_class,
    }
