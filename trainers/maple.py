"""MaPLe (Khattak et al., CVPR 2023): multi-modal prompts, the vision prompts projected from
the text ones at every prompted layer.

Reads the upstream node ``TRAINER.MAPLE`` (``N_CTX``, ``CTX_INIT``, ``PREC``,
``PROMPT_DEPTH``); registers the whole model as ``MultiModalPromptLearner`` with upstream's
parameter names (``prompt_learner.ctx``, ``.proj``, ``.compound_prompts_text.N``,
``.compound_prompt_projections.N``). Unlike upstream (ViT-B/16's 512 -> 768 hard-coded), the
projection widths come from the loaded CLIP.

As a PromptKD teacher its vision prompts are constant once trained: ``proj(ctx)`` is the
first-layer prompt and ``compound_prompt_projections[i](compound_prompts_text[i])`` the prompt of
layer ``i + 1``, exactly an IVLP image tower's ``VPT`` / ``VPT_shallow`` (that is what it exports).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from dassl.engine import TRAINER_REGISTRY
from dassl.utils import InvalidInputError

from .compat_config import UPSTREAM_NODES
from .prompt_learner import PromptedCLIP, VLPromptLearner, l2_normalize
from .prompt_trainer import PromptTrainer

__all__ = ["MaPLe", "MaPLePromptLearner", "MaPLeCLIP"]


class MaPLePromptLearner(VLPromptLearner):
    """Text context + the coupling functions that make the vision prompts from text prompts."""

    def __init__(
        self,
        classnames: Sequence[str],
        clip_model: nn.Module,
        n_ctx: int,
        ctx_init: str,
        depth: int,
    ):
        super().__init__(classnames, clip_model, n_ctx, ctx_init)
        if depth < 1:
            raise InvalidInputError(f"TRAINER.MAPLE.PROMPT_DEPTH must be >= 1, got {depth}")
        text_width = clip_model.ln_final.weight.shape[0]
        vision_width = clip_model.visual.conv1.weight.shape[0]
        self.proj = nn.Linear(text_width, vision_width)
        self.compound_prompts_text = nn.ParameterList(
            [
                nn.Parameter(nn.init.normal_(torch.empty(n_ctx, text_width), std=0.02))
                for _ in range(depth - 1)
            ]
        )
        layer = nn.Linear(text_width, vision_width)
        self.compound_prompt_projections = nn.ModuleList(
            [copy.deepcopy(layer) for _ in range(depth - 1)]
        )

    def vision_prompts(self) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """``(first-layer prompt, [prompt of layer 1, 2, ...])`` for the image tower."""
        deep = [f(p) for f, p in zip(self.compound_prompt_projections, self.compound_prompts_text)]
        return self.proj(self.ctx), deep


class MaPLeCLIP(PromptedCLIP):
    """CLIP whose text and image towers both take the learner's prompts at every layer."""

    def text_features(self, classnames: Sequence[str] | None = None) -> torch.Tensor:
        learner = self.prompt_learner
        if classnames is None:
            prompts, tokenized = learner(), learner.tokenized_prompts
        else:
            prompts, tokenized = learner.prompts_for(classnames)
        deep = list(learner.compound_prompts_text)
        return l2_normalize(self.text_encoder(prompts, tokenized, deep))

    def image_features(self, images: torch.Tensor) -> torch.Tensor:
        shared, deep = self.prompt_learner.vision_prompts()
        dtype = self.image_encoder.conv1.weight.dtype
        return l2_normalize(self.image_encoder(images.to(dtype), shared, deep))


@TRAINER_REGISTRY.register(builtin=True)
class MaPLe(PromptTrainer):
    """Multi-modal prompt learning, cross-entropy."""

    node_name = "MAPLE"
    model_name = "MultiModalPromptLearner"
    config_defaults = {"TRAINER.MAPLE": UPSTREAM_NODES["TRAINER.MAPLE"]}

    def build_prompted_model(self, classnames: Sequence[str]) -> MaPLeCLIP:
        node = self.node
        design: dict[str, Any] = {
            "trainer": "MaPLe",
            "vision_depth": 0,
            "language_depth": 0,
            "vision_ctx": 0,
            "language_ctx": 0,
            "maple_length": int(node.N_CTX),
        }
        clip_model = self.load_clip(design)
        learner = MaPLePromptLearner(
            classnames, clip_model, node.N_CTX, node.CTX_INIT, node.PROMPT_DEPTH
        )
        return MaPLeCLIP(clip_model, learner)

    @torch.no_grad()
    def teacher_vision_prompts(self) -> dict[str, torch.Tensor]:
        shared, deep = self.model.prompt_learner.vision_prompts()
        out = {"image_encoder.VPT": shared}
        n_layers = len(self.model.image_encoder.transformer.resblocks)
        for i, p in enumerate(deep[: n_layers - 1], start=1):  # deeper ones are never used
            out[f"image_encoder.transformer.resblocks.{i}.VPT_shallow"] = p
        return {k: v.detach().float().cpu().clone() for k, v in out.items()}
