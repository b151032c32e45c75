"""CoOp baseline (Zhou et al., IJCV 2022): learnable context words, frozen CLIP.

Registered model ``prompt_learner`` with upstream names (``ctx``, ``token_prefix``,
``token_suffix``), so upstream CoOp checkpoints load. Config: ``TRAINER.COOP`` (``N_CTX``,
``CSC``, ``CTX_INIT``, ``PREC``, ``CLASS_TOKEN_POSITION`` end|middle|front). A generic context
transfers to new classes in base-to-novel evaluation; a class-specific one (``CSC``) cannot.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

import clip
from dassl.engine import TRAINER_REGISTRY
from dassl.utils import InvalidInputError
from dassl.utils.logger import get_logger

from .compat_config import UPSTREAM_NODES
from .prompt_learner import PromptedCLIP, VLPromptLearner
from .prompt_trainer import PromptTrainer

__all__ = ["CoOpPromptLearner", "CoOp", "load_clip_to_cpu"]

logger = get_logger(__name__)
POSITIONS = ("end", "middle", "front")


def load_clip_to_cpu(cfg: Any) -> nn.Module:
    """The CLIP of ``MODEL.BACKBONE.NAME`` on CPU, as upstream ``trainers/coop.py`` returns it.

    Upstream files import it from here (``from .coop import load_clip_to_cpu`` in ``zsclip.py``):
    an OpenAI checkpoint comes back from ``clip.build_model`` with fp16 weights, a converted
    (Hugging Face / open_clip) one in fp32 as :func:`clip.load` gives it.
    """
    name = cfg.MODEL.BACKBONE.NAME
    if clip.clip.source_kind(name) != "openai":
        return clip.load(name, device="cpu")[0]
    return clip.model.build_model(clip.clip.resolve_clip(name).state_dict)


def name_lengths(classnames: Sequence[str]) -> list[int]:
    """BPE token count of each class name (where the middle/front positions cut the suffix)."""
    tok = clip.clip._get_tokenizer()
    return [len(tok.encode(c.replace("_", " "))) for c in classnames]


class CoOpPromptLearner(VLPromptLearner):
    """``[SOT] ctx_1..ctx_M [CLASS]. [EOT]`` with the class token at the end, middle or front."""

    def __init__(
        self,
        classnames: Sequence[str],
        clip_model: nn.Module,
        n_ctx: int,
        ctx_init: str = "",
        csc: bool = False,
        position: str = "end",
    ):
        nn.Module.__init__(self)  # CoOp's own context rules (any CTX_INIT length, CSC)
        if position not in POSITIONS:
            raise InvalidInputError(
                f"TRAINER.COOP.CLASS_TOKEN_POSITION must be one of {POSITIONS}, got {position!r}"
            )
        self._token_embedding = [clip_model.token_embedding]  # by reference, not saved
        ctx_dim = clip_model.ln_final.weight.shape[0]
        n_cls = len(classnames)
        if ctx_init:
            ctx_init = ctx_init.replace("_", " ")
            n_ctx = len(ctx_init.split(" "))
            with torch.no_grad():
                emb = self._embed(clip.tokenize(ctx_init))
            ctx = emb[0, 1 : 1 + n_ctx, :].float().clone()
            self.prompt_prefix = ctx_init
        else:
            ctx = torch.empty(n_cls, n_ctx, ctx_dim) if csc else torch.empty(n_ctx, ctx_dim)
            nn.init.normal_(ctx, std=0.02)
            self.prompt_prefix = " ".join(["X"] * n_ctx)
        logger.info(f'Initial context: "{self.prompt_prefix}"')
        logger.info(f"Number of context words (tokens): {n_ctx}")
        self.ctx = nn.Parameter(ctx)
        self.n_ctx, self.n_cls, self.position = n_ctx, n_cls, position
        prefix, suffix, tokenized = self.embed_classnames(classnames)
        self.register_buffer("token_prefix", prefix)
        self.register_buffer("token_suffix", suffix)
        self.register_buffer("tokenized_prompts", tokenized, persistent=False)
        self.name_lens = name_lengths(classnames)

    def build(
        self, prefix: torch.Tensor, suffix: torch.Tensor, name_lens: list[int]
    ) -> torch.Tensor:
        ctx = self.ctx
        if ctx.dim() == 2:
            ctx = ctx.unsqueeze(0).expand(prefix.shape[0], -1, -1)
        elif ctx.shape[0] != prefix.shape[0]:
            raise InvalidInputError(
                "a class-specific context (TRAINER.COOP.CSC) cannot be applied to other classes"
            )
        prefix, suffix = prefix.to(ctx.dtype), suffix.to(ctx.dtype)
        if self.position == "end":
            return torch.cat([prefix, ctx, suffix], dim=1)
        rows = []
        half = self.n_ctx // 2
        for i, n in enumerate(name_lens):
            cls_tok, rest = suffix[i : i + 1, :n], suffix[i : i + 1, n:]
            c = ctx[i : i + 1]
            if self.position == "middle":
                parts = [prefix[i : i + 1], c[:, :half], cls_tok, c[:, half:], rest]
            else:  # front
                parts = [prefix[i : i + 1], cls_tok, c, rest]
            rows.append(torch.cat(parts, dim=1))
        return torch.cat(rows, dim=0)

    def forward(self) -> torch.Tensor:
        return self.build(self.token_prefix, self.token_suffix, self.name_lens)

    def prompts_for(self, classnames: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        prefix, suffix, tokenized = self.embed_classnames(classnames)
        dev = self.ctx.device
        prompts = self.build(prefix.to(dev), suffix.to(dev), name_lengths(classnames))
        return prompts, tokenized.to(dev)


@TRAINER_REGISTRY.register(builtin=True)
class CoOp(PromptTrainer):
    """Context Optimization: cross-entropy on labelled (few-shot) data, prompts only."""

    node_name = "COOP"

    config_defaults = {"TRAINER.COOP": UPSTREAM_NODES["TRAINER.COOP"]}

    def build_prompted_model(self, classnames: Sequence[str]) -> PromptedCLIP:
        node = self.cfg.TRAINER.COOP
        clip_model = self.load_clip()
        learner = CoOpPromptLearner(
            classnames, clip_model, node.N_CTX, node.CTX_INIT, node.CSC, node.CLASS_TOKEN_POSITION
        )
        return PromptedCLIP(clip_model, learner)

    def registered_module(self) -> nn.Module:
        return self.model.prompt_learner  # upstream saves the prompt learner only
