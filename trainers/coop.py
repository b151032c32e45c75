"""CoOp baseline (Zhou et al., IJCV 2022): learnable context words, frozen CLIP.

Registered model ``prompt_learner`` with upstream names (``ctx``, ``token_prefix``,
``token_suffix``), so upstream CoOp checkpoints load. Config: ``TRAINER.COOP`` (``N_CTX``,
``CSC``, ``CTX_INIT``, ``PREC``, ``CLASS_TOKEN_POSITION`` end|middle|front). A generic context
transfers to new classes in base-to-novel evaluation; a class-specific one (``CSC``) cannot.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

import clip
from dassl.engine import TRAINER_REGISTRY, TrainerX
from dassl.metrics import compute_accuracy
from dassl.optim import build_lr_scheduler, build_optimizer
from dassl.utils import load_checkpoint
from dassl.utils.logger import get_logger

from .prompt_learner import PromptedCLIP, prompt_texts
from .promptkd_teacher import cast_frozen
from .results import EvalSubset, SubsetEvaluationMixin

__all__ = ["CoOpPromptLearner", "CoOp"]

logger = get_logger(__name__)
POSITIONS = ("end", "middle", "front")


class CoOpPromptLearner(nn.Module):
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
        super().__init__()
        if position not in POSITIONS:
            raise ValueError(
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
        prefix, suffix, tokenized, name_lens = self.embed_classnames(classnames)
        self.register_buffer("token_prefix", prefix)
        self.register_buffer("token_suffix", suffix)
        self.register_buffer("tokenized_prompts", tokenized, persistent=False)
        self.name_lens = name_lens

    def _embed(self, tokens: torch.Tensor) -> torch.Tensor:
        weight = self._token_embedding[0].weight
        return F.embedding(tokens.to(weight.device), weight)

    @torch.no_grad()
    def embed_classnames(
        self, classnames: Sequence[str]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[int]]:
        tok = clip.clip._get_tokenizer()
        name_lens = [len(tok.encode(c.replace("_", " "))) for c in classnames]
        tokenized = clip.tokenize(prompt_texts(self.prompt_prefix, classnames))
        emb = self._embed(tokenized).float()
        return emb[:, :1].clone(), emb[:, 1 + self.n_ctx :].clone(), tokenized, name_lens

    def build(
        self, prefix: torch.Tensor, suffix: torch.Tensor, name_lens: list[int]
    ) -> torch.Tensor:
        ctx = self.ctx
        if ctx.dim() == 2:
            ctx = ctx.unsqueeze(0).expand(prefix.shape[0], -1, -1)
        elif ctx.shape[0] != prefix.shape[0]:
            raise ValueError(
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
        prefix, suffix, tokenized, name_lens = self.embed_classnames(classnames)
        dev = self.ctx.device
        return self.build(prefix.to(dev), suffix.to(dev), name_lens), tokenized.to(dev)


class CoOpCLIP(PromptedCLIP):
    """CLIP with CoOp's learnable text context (upstream ``CustomCLIP`` layout)."""


@TRAINER_REGISTRY.register()
class CoOp(SubsetEvaluationMixin, TrainerX):
    """Context Optimization: cross-entropy on labelled (few-shot) data, prompts only."""

    def get_precision_name(self, cfg: Any) -> str:
        return cfg.TRAINER.COOP.PREC

    def build_model(self) -> None:
        cfg = self.cfg
        node = cfg.TRAINER.COOP
        logger.info(f"Loading CLIP (backbone: {cfg.MODEL.BACKBONE.NAME})")
        clip_model, _ = clip.load(cfg.MODEL.BACKBONE.NAME, device="cpu")
        clip_model.requires_grad_(False)
        learner = CoOpPromptLearner(
            self.dm.dataset.classnames,
            clip_model,
            node.N_CTX,
            node.CTX_INIT,
            node.CSC,
            node.CLASS_TOKEN_POSITION,
        )
        self.model = CoOpCLIP(clip_model, learner)
        cast_frozen(self.model, self.precision.frozen_dtype).to(self.device)
        self.optim = build_optimizer([learner.ctx], cfg.OPTIM)
        self.sched = build_lr_scheduler(self.optim, cfg.OPTIM)
        self.register_model("prompt_learner", learner, self.optim, self.sched)
        self.model_ddp = self.wrap_ddp(self.model)

    def forward_backward(self, batch: dict[str, Any]) -> dict[str, float]:
        images, labels = batch["img"].to(self.device), batch["label"].to(self.device)
        with self.precision.autocast():
            logits = self.model_ddp(images).float()
        loss = F.cross_entropy(logits, labels)
        self.model_backward_and_update(loss)
        if (self.batch_idx + 1) == self.num_batches:
            self.update_lr()
        return {"loss": loss.item(), "acc": compute_accuracy(logits, labels)[0].item()}

    def model_inference(self, images: torch.Tensor) -> torch.Tensor:
        with self.precision.autocast():
            return self.model(images).float()

    def classifier_for(self, subset: EvalSubset) -> Callable[[torch.Tensor], torch.Tensor]:
        with torch.no_grad(), self.precision.autocast():
            text = self.model.text_features(subset.classnames)

        def classify(images: torch.Tensor) -> torch.Tensor:
            with self.precision.autocast():
                return self.model.logits(images, text).float()

        return classify

    def load_model(self, directory: str, epoch: int | None = None) -> None:
        if not directory:
            logger.info("Note that load_model() is skipped as no pretrained model is given")
            return
        name = "model-best.pth.tar" if epoch is None else f"model.pth.tar-{epoch}"
        path = os.path.join(directory, "prompt_learner", name)
        if not os.path.exists(path):
            raise FileNotFoundError(
                f'Model not found at "{path}" (check --model-dir and --load-epoch)'
            )
        ckpt = load_checkpoint(path, legacy="auto")
        sd = {
            k: v for k, v in ckpt["state_dict"].items() if k not in ("token_prefix", "token_suffix")
        }
        logger.info(
            f'Loading weights to prompt_learner from "{path}" (epoch = {ckpt.get("epoch")})'
        )
        missing, unexpected = self.model.prompt_learner.load_state_dict(sd, strict=False)
        missing = [k for k in missing if k not in ("token_prefix", "token_suffix")]
        if missing or unexpected:
            raise RuntimeError(f"{path}: missing keys {missing}, unexpected keys {unexpected}")
        self.results_epoch = ckpt.get("epoch")
