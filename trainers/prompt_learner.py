"""IVLP text prompt learner and text encoder (PromptSRC / PromptKD teacher, CoOp baseline).

Prompts are ``"<ctx words> <class name>."`` with underscores in class names replaced by spaces.
The first ``n_ctx`` token embeddings after SOT are learnable (``ctx``); with ``CTX_INIT`` (and
``n_ctx <= 4``, as upstream) they start from the embeddings of the init words, otherwise from
N(0, 0.02) with placeholder words ``"X X X X"``. SOT and the class-name/EOT tokens are fixed
buffers ``token_prefix`` / ``token_suffix``.

Attribute and buffer names equal upstream's (``prompt_learner.ctx``, ``token_prefix``,
``token_suffix``; ``text_encoder.transformer/positional_embedding/ln_final/text_projection``),
so upstream teacher checkpoints load and ours load upstream. ``tokenized_prompts`` is a
non-persistent buffer (upstream keeps it as a plain attribute, outside the state dict).

Prompts for *other* class names (new classes, or a cross-dataset target) are built on the fly
from the same ``ctx`` with :meth:`VLPromptLearner.prompts_for`; that is how trained text prompts
are applied to new classes.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

import clip
from clip.model import CLIP
from dassl.utils.logger import get_logger

from .activation_memory import encode_text_chunked

__all__ = [
    "TextEncoder",
    "VLPromptLearner",
    "FixedPromptLearner",
    "PromptedCLIP",
    "prompt_texts",
    "l2_normalize",
]

logger = get_logger(__name__)


def prompt_texts(prefix_text: str, classnames: Sequence[str]) -> list[str]:
    """``"<prefix> <class name>."`` for each class (underscores become spaces)."""
    return [f"{prefix_text} {name.replace('_', ' ')}." for name in classnames]


class TextEncoder(nn.Module):
    """CLIP's text tower from token embeddings (upstream ``TextEncoder``; same attribute names)."""

    def __init__(self, clip_model: nn.Module):
        super().__init__()
        self.transformer = clip_model.transformer
        self.positional_embedding = clip_model.positional_embedding
        self.ln_final = clip_model.ln_final
        self.text_projection = clip_model.text_projection
        self.text_cfg = getattr(clip_model, "text_cfg", None)  # EOT pooling rule

    @property
    def dtype(self) -> torch.dtype:
        return self.text_projection.dtype

    def forward(
        self,
        prompts: torch.Tensor,
        tokenized_prompts: torch.Tensor,
        deep_prompts: list[torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Unnormalised features at the EOT token of ``prompts`` ``[N, L, D]``.

        The text path is CLIP's own (``CLIP.encode_text_embeddings``) run on these modules.
        """
        return CLIP.encode_text_embeddings(
            self, prompts.to(self.dtype), tokenized_prompts, deep_prompts
        )


class VLPromptLearner(nn.Module):
    """First-layer text prompts of IVLP (deeper ones live in ``transformer.resblocks.N``).

    Args:
        classnames: the classes whose prompts :meth:`forward` returns.
        clip_model: a CLIP providing ``token_embedding`` (kept by reference, outside the state
            dict, to embed other class names later).
        n_ctx: number of learnable context tokens.
        ctx_init: initialisation words (e.g. ``"a photo of a"``), "" for random.
    """

    def __init__(self, classnames: Sequence[str], clip_model: nn.Module, n_ctx: int, ctx_init: str):
        super().__init__()
        if n_ctx < 1:
            raise ValueError(f"the text prompt needs n_ctx >= 1 context tokens, got {n_ctx}")
        # A list hides the embedding from module registration: not saved, not moved, not trained.
        self._token_embedding = [clip_model.token_embedding]
        ctx_dim = clip_model.ln_final.weight.shape[0]
        if ctx_init and n_ctx <= 4:
            ctx_init = ctx_init.replace("_", " ")
            with torch.no_grad():
                emb = self._embed(clip.tokenize(ctx_init))
            ctx_vectors = emb[0, 1 : 1 + n_ctx, :].float().clone()
            self.prompt_prefix = ctx_init
        else:
            ctx_vectors = torch.empty(n_ctx, ctx_dim)
            nn.init.normal_(ctx_vectors, std=0.02)
            self.prompt_prefix = " ".join(["X"] * n_ctx)
        self.ctx = nn.Parameter(ctx_vectors)
        self.n_ctx = n_ctx
        self.classnames = list(classnames)
        self.n_cls = len(self.classnames)
        prefix, suffix, tokenized = self.embed_classnames(self.classnames)
        self.register_buffer("token_prefix", prefix)  # SOT
        self.register_buffer("token_suffix", suffix)  # class name, ".", EOT, padding
        self.register_buffer("tokenized_prompts", tokenized, persistent=False)
        logger.info(f'Initial text context: "{self.prompt_prefix}"')
        logger.info(f"Number of context words (tokens) for Language prompting: {n_ctx}")

    def _embed(self, tokens: torch.Tensor) -> torch.Tensor:
        weight = self._token_embedding[0].weight
        return F.embedding(tokens.to(weight.device), weight)

    @torch.no_grad()
    def embed_classnames(
        self, classnames: Sequence[str]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(prefix [C,1,D], suffix [C,L-1-n_ctx,D], tokenized [C,L])`` for ``classnames``."""
        tokenized = clip.tokenize(prompt_texts(self.prompt_prefix, classnames))
        emb = self._embed(tokenized).float()
        return emb[:, :1, :].clone(), emb[:, 1 + self.n_ctx :, :].clone(), tokenized

    def construct_prompts(self, prefix: torch.Tensor, suffix: torch.Tensor) -> torch.Tensor:
        ctx = self.ctx.unsqueeze(0).expand(prefix.shape[0], -1, -1)
        dtype = ctx.dtype
        return torch.cat([prefix.to(dtype), ctx, suffix.to(dtype)], dim=1)

    def forward(self) -> torch.Tensor:
        """Prompt embeddings ``[n_cls, L, D]`` of the classes given at construction."""
        return self.construct_prompts(self.token_prefix, self.token_suffix)

    def prompts_for(self, classnames: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """``(prompt embeddings, tokenized)`` of arbitrary class names with the learned ctx."""
        prefix, suffix, tokenized = self.embed_classnames(classnames)
        device = self.ctx.device
        prompts = self.construct_prompts(prefix.to(device), suffix.to(device))
        return prompts, tokenized.to(device)


class FixedPromptLearner(nn.Module):
    """Hand-written prompts ``"<prefix> <class name>."`` (no learnable text context; VPT)."""

    def __init__(self, classnames: Sequence[str], clip_model: nn.Module, prefix: str):
        super().__init__()
        self._token_embedding = [clip_model.token_embedding]
        self.prompt_prefix = prefix.replace("_", " ")
        prompts, tokenized = self.prompts_for(classnames)
        self.register_buffer("embedded_prompts", prompts, persistent=False)
        self.register_buffer("tokenized_prompts", tokenized, persistent=False)

    @torch.no_grad()
    def prompts_for(self, classnames: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        weight = self._token_embedding[0].weight
        tokenized = clip.tokenize(prompt_texts(self.prompt_prefix, classnames)).to(weight.device)
        return F.embedding(tokenized, weight), tokenized

    def forward(self) -> torch.Tensor:
        return self.embedded_prompts


def l2_normalize(x: torch.Tensor) -> torch.Tensor:
    """Rows scaled to unit L2 norm, in float32."""
    x = x.float()
    return x / x.norm(dim=-1, keepdim=True)


class PromptedCLIP(nn.Module):
    """Upstream ``CustomCLIP`` layout shared by the text-prompt trainers (CoOp, the teacher).

    Keys: ``prompt_learner.*``, ``image_encoder.*``, ``text_encoder.*``, ``logit_scale``, so
    checkpoints are interchangeable with upstream ones. ``prompt_learner`` must provide
    ``forward()``, ``tokenized_prompts`` and ``prompts_for(classnames)``.
    """

    def __init__(self, clip_model: nn.Module, prompt_learner: nn.Module):
        super().__init__()
        self.prompt_learner = prompt_learner
        self.image_encoder = clip_model.visual
        self.text_encoder = TextEncoder(clip_model)
        self.logit_scale = clip_model.logit_scale
        self.class_chunk = 0  # classes per text-encoder pass; see trainers/activation_memory.py

    def text_features(self, classnames: Sequence[str] | None = None) -> torch.Tensor:
        """Normalised prompted text features of the built classes (or of ``classnames``)."""
        if classnames is None:
            prompts, tokenized = self.prompt_learner(), self.prompt_learner.tokenized_prompts
        else:
            prompts, tokenized = self.prompt_learner.prompts_for(classnames)
        return l2_normalize(
            encode_text_chunked(self.text_encoder, prompts, tokenized, self.class_chunk)
        )

    def image_features(self, images: torch.Tensor) -> torch.Tensor:
        """Normalised image features (float32)."""
        return l2_normalize(self.image_encoder(images.to(self.image_encoder.conv1.weight.dtype)))

    def logits(self, images: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        """``logit_scale * f_img @ text^T`` against given (normalised) text features."""
        return self.logit_scale.exp().float() * self.image_features(images) @ text.t()

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Logits of ``images`` over the built classes."""
        return self.logits(images, self.text_features())

    def classifier(self, classnames: Sequence[str]):
        """``images -> logits`` over ``classnames`` (text features computed once)."""
        text = self.text_features(classnames)
        return lambda images: self.logits(images, text)
