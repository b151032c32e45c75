"""Contrastive-Prompt: learn K style vectors before synthesis, with the text tower frozen.

Loss per step (our reconstruction; the paper's exact formula is not public):

- diversity: ``f_k = g("a [s_k] style of a picture")`` (L2-normalised); InfoNCE over the K x K
  similarity matrix / ``TAU`` with each style its own positive, i.e. every other style is pushed
  away (``DIVERSITY_ON: style``, the design's formulation); ``class`` applies the same term to
  the K styled prompts ``g("a [s_k] style photo of a [c]")`` of each sampled class instead, and
  ``both`` adds the two;
- content: for a random subset of classes c and every k, ``g("a [s_k] style photo of a [c]")``
  must classify as c against the plain class prompts (cross-entropy, CLIP's logit scale),
  weighted by ``CONTENT_WEIGHT``.

Styles start from the Random-Prompt distribution (token-table moments). They are saved as
safetensors (tensor ``styles`` [K, n, D]) with metadata that must match on reuse.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from dassl.utils import InvalidInputError
from dassl.utils.logger import get_logger

from .styles import PromptBank, token_moments

__all__ = ["train_styles", "save_styles", "load_styles", "load_or_train_styles", "style_features"]

logger = get_logger(__name__)
TENSOR_KEY = "styles"
DIVERSITY_ON = ("style", "class", "both")


def style_features(bank: PromptBank, styles: torch.Tensor) -> torch.Tensor:
    """Normalised features of the style-only prompts (``bank`` has one prompt)."""
    return bank.encode(torch.zeros(len(styles), dtype=torch.long), styles)


def train_styles(
    model: nn.Module,
    classnames: Sequence[str],
    *,
    num_styles: int,
    n_tokens: int,
    template: str,
    style_template: str,
    plain_template: str,
    tau: float,
    steps: int,
    lr: float,
    content_weight: float,
    classes_per_step: int,
    seed: int,
    diversity_on: str = "style",
) -> tuple[torch.Tensor, list[dict[str, float]]]:
    """Train K styles; returns ``(styles [K, n, D], history)`` (history every 10 steps + last).

    ``diversity_on``: which features the contrastive term separates: the style-only prompts
    (``style``), the K styled prompts of each sampled class (``class``), or the sum (``both``).
    """
    if diversity_on not in DIVERSITY_ON:
        raise InvalidInputError(
            f"DATAFREE.CONTRASTIVE.DIVERSITY_ON must be one of {list(DIVERSITY_ON)}, got "
            f"{diversity_on!r}"
        )
    if num_styles < 2:
        raise InvalidInputError(f"DATAFREE.CONTRASTIVE.NUM_STYLES must be >= 2, got {num_styles}")
    if tau <= 0 or steps < 1 or lr <= 0:
        raise InvalidInputError("DATAFREE.CONTRASTIVE: TAU and LR must be > 0 and STEPS >= 1")
    device = model.token_embedding.weight.device
    gen = torch.Generator().manual_seed(seed)
    mu, sigma = token_moments(model)
    init = mu.cpu() + sigma.cpu() * torch.randn(num_styles, n_tokens, mu.shape[0], generator=gen)
    styles = nn.Parameter(init.to(device))
    style_bank = PromptBank(model, style_template, [""], n_tokens)
    class_bank = PromptBank(model, template, classnames, n_tokens)
    from clip import tokenize
    from clip.text_prompts import encode_spliced

    with torch.no_grad():
        plain = encode_spliced(
            model,
            tokenize([plain_template.format(classname=c) for c in classnames]).to(device),
        ).float()
        plain = plain / plain.norm(dim=-1, keepdim=True)
    scale = float(model.logit_scale.detach().exp())
    opt = torch.optim.Adam([styles], lr=lr)
    k = num_styles
    n_cls = min(classes_per_step, len(classnames))
    history = []
    targets = torch.arange(k, device=device)
    for step in range(steps):
        f = style_features(style_bank, styles)
        cls = torch.randperm(len(classnames), generator=gen)[:n_cls]
        labels = cls.repeat_interleave(k)  # class-major blocks of the K styles
        feats = class_bank.encode(labels, styles.repeat(n_cls, 1, 1))
        content = F.cross_entropy(scale * feats @ plain.t(), labels.to(device))
        div = torch.zeros((), device=device)
        if diversity_on in ("style", "both"):
            div = div + F.cross_entropy(f @ f.t() / tau, targets)
        if diversity_on in ("class", "both"):
            per_class = feats.view(n_cls, k, -1)
            sims = per_class @ per_class.transpose(1, 2) / tau  # [n_cls, K, K]
            div = div + F.cross_entropy(sims.reshape(-1, k), targets.repeat(n_cls))
        loss = div + content_weight * content
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % 10 == 0 or step == steps - 1:
            off = (f @ f.t())[~torch.eye(k, dtype=torch.bool, device=device)].mean()
            rec = {
                "step": step,
                "loss": float(loss.detach()),
                "diversity": float(div.detach()),
                "content": float(content.detach()),
                "mean_style_cos": float(off.detach()),
            }
            history.append(rec)
            logger.info(
                "contrastive styles step %d/%d: loss %.4f (diversity %.4f, content %.4f), "
                "mean cos between styles %.3f",
                step + 1,
                steps,
                rec["loss"],
                rec["diversity"],
                rec["content"],
                rec["mean_style_cos"],
            )
    return styles.detach().cpu(), history


def save_styles(path: str, styles: torch.Tensor, meta: dict[str, Any]) -> str:
    """Write ``styles`` with JSON-encoded ``meta`` atomically."""
    from safetensors.torch import save_file

    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".styles-", suffix=".tmp", dir=directory)
    os.close(fd)
    try:
        save_file(
            {TENSOR_KEY: styles.contiguous().float()},
            tmp,
            metadata={k: json.dumps(v) for k, v in meta.items()},
        )
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def load_styles(path: str) -> tuple[torch.Tensor, dict[str, Any]]:
    from safetensors import safe_open

    with safe_open(path, framework="pt", device="cpu") as f:
        if TENSOR_KEY not in f.keys():
            raise InvalidInputError(f"{path}: no tensor {TENSOR_KEY!r}; not a styles file")
        meta = {k: json.loads(v) for k, v in (f.metadata() or {}).items()}
        return f.get_tensor(TENSOR_KEY), meta


def _settings(node: Any, classnames: Sequence[str], dim: int) -> dict[str, Any]:
    c = node.CONTRASTIVE
    return {
        "teacher": node.TEACHER,
        "classnames": list(classnames),
        "num_styles": int(c.NUM_STYLES),
        "n_tokens": int(node.STYLE_TOKENS),
        "dim": int(dim),
        "template": node.TEMPLATE,
        "style_template": c.STYLE_TEMPLATE,
        "plain_template": node.PLAIN_TEMPLATE,
        "tau": float(c.TAU),
        "steps": int(c.STEPS),
        "lr": float(c.LR),
        "content_weight": float(c.CONTENT_WEIGHT),
        "classes_per_step": int(c.CLASSES_PER_STEP),
        "diversity_on": c.DIVERSITY_ON,
        "seed": int(node.SEED),
    }


def load_or_train_styles(
    node: Any, model: nn.Module, classnames: Sequence[str], path: str
) -> torch.Tensor:
    """Reuse the styles at ``path`` if trained with the same settings, else train and save."""
    settings = _settings(node, classnames, int(model.token_embedding.weight.shape[1]))
    if path and os.path.isfile(path):
        styles, meta = load_styles(path)
        if meta.get("settings") == settings:
            logger.info("Reusing %d contrastive styles from %s", len(styles), path)
            return styles
        raise InvalidInputError(
            f"{path} holds styles trained with other settings than DATAFREE.CONTRASTIVE/TEACHER "
            "now ask for; delete it or set DATAFREE.CONTRASTIVE.STYLES_FILE to another path"
        )
    logger.info("Training %d contrastive styles", settings["num_styles"])
    styles, history = train_styles(
        model,
        classnames,
        num_styles=settings["num_styles"],
        n_tokens=settings["n_tokens"],
        template=settings["template"],
        style_template=settings["style_template"],
        plain_template=settings["plain_template"],
        tau=settings["tau"],
        steps=settings["steps"],
        lr=settings["lr"],
        content_weight=settings["content_weight"],
        classes_per_step=settings["classes_per_step"],
        seed=settings["seed"],
        diversity_on=settings["diversity_on"],
    )
    if path:
        save_styles(path, styles, {"settings": settings, "history": history})
        logger.info("Saved contrastive styles to %s", path)
    return styles
