"""Pretrain the tiny toy CLIPs (``toy-teacher``, ``toy-student``) on the procedural toy world.

Contrastive (symmetric InfoNCE) training on fresh pretraining-domain images and captions every
step (see ``datasets/toy_render.py``), tokenized with the real OpenAI BPE tokenizer. The result
is saved as a plain fp16 OpenAI-layout state dict that ``clip.load("toy-teacher")`` reads, plus a
JSON sidecar (``toy_models.json``) recording how each file was made (command, seed, steps,
versions, sha256) and its zero-shot accuracy on the held-out downstream domain (the ``ToyShapes``
test split, template ``"a photo of a {class}."``, base and new classes each scored 18-way, HM).

Everything is step-based and seeded, so ``(command, seed)`` reproduces a file on the same
software stack. Usage (from the repository root)::

    python tools/pretrain_toy_clip.py --model teacher
    python tools/pretrain_toy_clip.py --model student
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import logging
import math
import os
import platform
import shlex
import sys
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import clip  # noqa: E402
from clip.model import CLIP, build_model, convert_weights  # noqa: E402
from datasets.base_new import base_new_ranges  # noqa: E402
from datasets.toy_render import (  # noqa: E402
    CLASSNAMES,
    SHAPE_VOCABULARIES,
    render_batch,
    sample_pretrain_batch,
)
from datasets.toy_shapes import N_TEST, N_VAL, SEED, render_split  # noqa: E402

__all__ = [
    "ARCHITECTURES",
    "RECIPES",
    "PIXEL_MEAN",
    "PIXEL_STD",
    "TEMPLATE",
    "build_toy_clip",
    "pretrain",
    "export_state_dict",
    "zero_shot_base_new",
    "sha256_of",
    "main",
]

logger = logging.getLogger("pretrain_toy_clip")

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_OUT_DIR = os.path.join(REPO_ROOT, "clip", "weights")
SIDECAR = "toy_models.json"

# CLIP's input normalisation: the toy trainer configs use the same INPUT.PIXEL_MEAN/STD, so
# zero-shot through the trainer pipeline equals the numbers measured here.
PIXEL_MEAN = (0.48145466, 0.4578275, 0.40821073)
PIXEL_STD = (0.26862954, 0.26130258, 0.27577711)
TEMPLATE = "a photo of a {}."

# OpenAI constructor arguments; heads = width // 64 because OpenAI's loader infers them so.
ARCHITECTURES: dict[str, dict[str, Any]] = {
    "teacher": dict(
        embed_dim=128,
        image_resolution=32,
        vision_layers=4,
        vision_width=128,
        vision_patch_size=4,
        context_length=77,
        vocab_size=49408,
        transformer_width=128,
        transformer_heads=2,
        transformer_layers=3,
    ),
    "student": dict(
        embed_dim=64,
        image_resolution=32,
        vision_layers=2,
        vision_width=64,
        vision_patch_size=4,
        context_length=77,
        vocab_size=49408,
        transformer_width=64,
        transformer_heads=1,
        transformer_layers=2,
    ),
}

# Default training recipes (the shipped files). The two models come from different caption
# corpora: the teacher's captions name the shapes as the ToyShapes class names do; the student's
# corpus describes the same shapes with other words ("disc", "box", ... see
# datasets.toy_render.SHAPE_VOCABULARIES). So the student's image tower separates the shapes well,
# but its text tower has never seen the class names' shape words and its zero-shot accuracy on
# the benchmark is poor: exactly the situation PromptKD addresses by scoring the student's image
# features against the teacher's pre-stored text features (the student's text tower is dropped).
RECIPES: dict[str, dict[str, Any]] = {
    "teacher": dict(steps=1600, batch_size=64, lr=1e-3, seed=1, vocabulary="classnames"),
    "student": dict(steps=5000, batch_size=64, lr=3e-3, seed=1, vocabulary="synonyms"),
}
WEIGHT_DECAY = 0.1
WARMUP_FRACTION = 0.1
BETAS = (0.9, 0.98)
EPS = 1e-6
MAX_LOGIT_SCALE = math.log(100.0)


def build_toy_clip(name: str) -> CLIP:
    """A freshly initialised fp32 toy CLIP (``"teacher"`` or ``"student"``)."""
    if name not in ARCHITECTURES:
        raise ValueError(f"Unknown toy model {name!r}; expected one of {sorted(ARCHITECTURES)}")
    return CLIP(**ARCHITECTURES[name])


def _param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Decay matrices only: no decay on biases, LayerNorm gains, embeddings or logit_scale."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        is_matrix = p.ndim >= 2 and "embedding" not in name
        (decay if is_matrix else no_decay).append(p)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def lr_at(step: int, total: int, base_lr: float, warmup_fraction: float = WARMUP_FRACTION) -> float:
    """Linear warm-up over ``warmup_fraction`` of the steps, then cosine to 0 (step-based)."""
    warmup = max(1, round(total * warmup_fraction))
    if step < warmup:
        return base_lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * base_lr * (1.0 + math.cos(math.pi * min(1.0, progress)))


def images_to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 (N, H, W, 3) -> normalised float (N, 3, H, W), as ToTensor + Normalize do."""
    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 255.0
    mean = torch.tensor(PIXEL_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(PIXEL_STD).view(1, 3, 1, 1)
    return (x - mean) / std


def _encode_text_trimmed(model: CLIP, tokens: torch.Tensor) -> torch.Tensor:
    """Text features of a batch trimmed after its longest EOT (same result under the causal mask)."""
    eot = tokens.argmax(dim=-1)
    length = int(eot.max()) + 1
    tokens = tokens[:, :length]
    x = model.token_embedding(tokens) + model.positional_embedding[:length]
    x = model.transformer(x.permute(1, 0, 2)).permute(1, 0, 2)
    x = model.ln_final(x)
    return x[torch.arange(x.shape[0]), eot] @ model.text_projection


def pretrain(
    name: str,
    steps: int,
    batch_size: int,
    lr: float,
    seed: int,
    log_every: int = 100,
    eval_every: int = 0,
    vocabulary: str = "classnames",
) -> CLIP:
    """Train a fresh toy CLIP contrastively for ``steps`` steps; returns the fp32 model.

    ``vocabulary`` picks the caption corpus's words for the shapes
    (``datasets.toy_render.SHAPE_VOCABULARIES``).
    """
    if steps < 1 or batch_size < 2:
        raise ValueError(f"need steps >= 1 and batch_size >= 2, got {steps}, {batch_size}")
    torch.manual_seed(seed)
    model = build_toy_clip(name).train()
    rng = np.random.default_rng(seed)
    optimizer = torch.optim.AdamW(_param_groups(model, WEIGHT_DECAY), lr=lr, betas=BETAS, eps=EPS)
    labels = torch.arange(batch_size)
    start = time.time()
    for step in range(steps):
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, steps, lr)
        images, captions, _ = sample_pretrain_batch(rng, batch_size, vocabulary=vocabulary)
        tokens = clip.tokenize(captions)
        img = F.normalize(model.encode_image(images_to_tensor(images)), dim=-1)
        txt = F.normalize(_encode_text_trimmed(model, tokens), dim=-1)
        logits = model.logit_scale.exp() * img @ txt.t()
        loss = 0.5 * (F.cross_entropy(logits, labels) + F.cross_entropy(logits.t(), labels))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, MAX_LOGIT_SCALE)
        if log_every and ((step + 1) % log_every == 0 or step + 1 == steps):
            elapsed = time.time() - start
            logger.info(
                f"{name} step {step + 1}/{steps} loss {loss.item():.4f} "
                f"scale {model.logit_scale.exp().item():.1f} lr {lr_at(step, steps, lr):.2e} "
                f"({elapsed:.0f}s, {elapsed / (step + 1) * 1000:.0f} ms/step)"
            )
        if eval_every and (step + 1) % eval_every == 0 and step + 1 < steps:
            model.eval()
            res = zero_shot_base_new(model, split="val", n_per_class=N_VAL, pretrain_domain=False)
            logger.info(
                f"{name} step {step + 1}: downstream val base {res['base']:.1f} "
                f"new {res['new']:.1f} HM {res['hm']:.1f}"
            )
            model.train()
    return model.eval()


def export_state_dict(model: CLIP) -> dict[str, torch.Tensor]:
    """OpenAI layout: ``convert_weights`` then every floating tensor in fp16 (small files)."""
    m = copy.deepcopy(model).cpu()
    convert_weights(m)
    return {
        k: (v.detach().half() if v.is_floating_point() else v.detach()).clone()
        for k, v in m.state_dict().items()
    }


@torch.no_grad()
def _accuracy(model: CLIP, images: np.ndarray, labels: np.ndarray, classes: range) -> float:
    """Top-1 accuracy of zero-shot classification among ``classes`` (labels are full labels)."""
    names = [CLASSNAMES[c] for c in classes]
    text = model.encode_text(clip.tokenize([TEMPLATE.format(n) for n in names]))
    text = F.normalize(text.float(), dim=-1)
    keep = np.isin(labels, list(classes))
    correct = 0
    for i in range(0, int(keep.sum()), 256):
        x = images_to_tensor(images[keep][i : i + 256]).to(model.dtype)
        feats = F.normalize(model.encode_image(x).float(), dim=-1)
        pred = (feats @ text.t()).argmax(dim=-1).numpy()
        target = labels[keep][i : i + 256] - classes.start
        correct += int((pred == target).sum())
    return 100.0 * correct / max(1, int(keep.sum()))


def zero_shot_base_new(
    model: CLIP,
    split: str = "test",
    n_per_class: int = N_TEST,
    seed: int = SEED,
    pretrain_domain: bool = True,
) -> dict[str, float]:
    """Zero-shot on the ToyShapes ``split`` (downstream domain): base/new 18-way, HM, 36-way.

    With ``pretrain_domain`` also 36-way accuracy on as many pretraining-domain images
    (``pretrain_all``), to show the domain gap.
    """
    images, labels = render_split(split, n_per_class, seed)
    base, new = base_new_ranges(len(CLASSNAMES))
    acc_base = _accuracy(model, images, labels, base)
    acc_new = _accuracy(model, images, labels, new)
    hm = 2 * acc_base * acc_new / (acc_base + acc_new) if acc_base + acc_new > 0 else 0.0
    acc_all = _accuracy(model, images, labels, range(len(CLASSNAMES)))
    scores = {"base": acc_base, "new": acc_new, "hm": hm, "all": acc_all}
    if not pretrain_domain:
        return scores
    # In-domain reference (pretraining domain, same class balance, fixed seed).
    rng = np.random.default_rng([seed, 99])
    pt_labels = np.repeat(np.arange(len(CLASSNAMES)), n_per_class)
    pt_images = render_batch(pt_labels, rng, "pretrain").images
    acc_pt = _accuracy(model, pt_images, pt_labels, range(len(CLASSNAMES)))
    return {**scores, "pretrain_all": acc_pt}


def sha256_of(path: str) -> str:
    """Hex sha256 of a file (recorded in the sidecar, checked by the tests)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _save_atomic(obj: Any, path: str, as_json: bool = False) -> None:
    tmp = f"{path}.tmp-{os.getpid()}"
    if as_json:
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(obj, f, indent=2, sort_keys=True)
            f.write("\n")
    else:
        torch.save(obj, tmp)
    os.replace(tmp, path)


def _update_sidecar(out_dir: str, model_key: str, entry: dict[str, Any]) -> None:
    path = os.path.join(out_dir, SIDECAR)
    data: dict[str, Any] = {}
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    data.setdefault(
        "description",
        "Tiny CLIPs pretrained from scratch on the procedural toy world "
        "(tools/pretrain_toy_clip.py); fp16 OpenAI-layout state dicts.",
    )
    data.setdefault("models", {})[model_key] = entry
    _save_atomic(data, path, as_json=True)


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", choices=sorted(ARCHITECTURES), required=True)
    p.add_argument("--steps", type=int, default=None, help="default: the model's recipe")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument(
        "--vocabulary",
        choices=sorted(SHAPE_VOCABULARIES),
        default=None,
        help="caption words for the shapes (default: the model's recipe)",
    )
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    p.add_argument("--out-dir", default=DEFAULT_OUT_DIR)
    p.add_argument("--eval-every", type=int, default=0, help="log val zero-shot every N steps")
    p.add_argument("--log-every", type=int, default=100)
    p.add_argument(
        "--eval-per-class",
        type=int,
        default=N_TEST,
        help="test images per class for the recorded zero-shot (default: the ToyShapes test split)",
    )
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Train one toy model, save ``toy-<model>.pt`` and update the sidecar; returns its entry."""
    args = _parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    recipe = dict(RECIPES[args.model])
    for key in ("steps", "batch_size", "lr", "seed", "vocabulary"):
        if getattr(args, key) is not None:
            recipe[key] = getattr(args, key)

    previous_threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        start = time.time()
        model = pretrain(args.model, eval_every=args.eval_every, log_every=args.log_every, **recipe)
        train_seconds = time.time() - start
        state_dict = export_state_dict(model)
        # Score the model as consumers get it: the saved fp16 weights through build_model.
        loaded = build_model(state_dict).float().eval()
        scores = zero_shot_base_new(loaded, n_per_class=args.eval_per_class)
    finally:
        torch.set_num_threads(previous_threads)
    logger.info(
        f"toy-{args.model} zero-shot (ToyShapes test): base {scores['base']:.2f} "
        f"new {scores['new']:.2f} HM {scores['hm']:.2f} 36-way {scores['all']:.2f} "
        f"(pretraining domain 36-way {scores['pretrain_all']:.2f})"
    )

    os.makedirs(args.out_dir, exist_ok=True)
    filename = f"toy-{args.model}.pt"
    path = os.path.join(args.out_dir, filename)
    _save_atomic(state_dict, path)
    argv_list = list(sys.argv[1:] if argv is None else argv)
    entry = {
        "file": filename,
        "sha256": sha256_of(path),
        "bytes": os.path.getsize(path),
        "command": "python tools/pretrain_toy_clip.py " + shlex.join(argv_list),
        "architecture": ARCHITECTURES[args.model],
        "recipe": {
            **recipe,
            "weight_decay": WEIGHT_DECAY,
            "warmup_fraction": WARMUP_FRACTION,
            "betas": list(BETAS),
            "eps": EPS,
            "pixel_mean": list(PIXEL_MEAN),
            "pixel_std": list(PIXEL_STD),
        },
        "train_seconds": round(train_seconds, 1),
        "threads": args.threads,
        "zero_shot": {
            "dataset": f"ToyShapes test (seed {SEED}, {args.eval_per_class} per class)",
            "n_per_class": args.eval_per_class,
            "template": TEMPLATE,
            **{k: round(v, 2) for k, v in scores.items()},
        },
        "versions": {
            "torch": torch.__version__,
            "numpy": np.__version__,
            "python": platform.python_version(),
        },
    }
    _update_sidecar(args.out_dir, f"toy-{args.model}", entry)
    logger.info(f"Saved {path} and updated {os.path.join(args.out_dir, SIDECAR)}")
    return entry


if __name__ == "__main__":
    main()
