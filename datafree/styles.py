"""Style-prompt strategies: the text target of every image to synthesize (``DATAFREE.STRATEGY``).

Each image gets the prompt ``TEMPLATE`` (``"a {style} style photo of a {classname}."``) whose
``{style}`` slot holds ``STYLE_TOKENS`` vectors ``[S]`` written into the token-embedding sequence
of the frozen CLIP text tower (:func:`clip.text_prompts.encode_spliced`). Strategies differ only
in how ``[S]`` is drawn; per-image draws come from a numpy Generator seeded by the image's seed,
so an image's prompt does not depend on its batch or process.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

import clip
from clip.text_prompts import encode_spliced
from dassl.utils import InvalidInputError, Registry

__all__ = [
    "STRATEGY_REGISTRY",
    "PromptBank",
    "StyleStrategy",
    "NoneStrategy",
    "MixStrategy",
    "RandomStrategy",
    "ContrastiveStrategy",
    "build_strategy",
    "token_moments",
]

STRATEGY_REGISTRY = Registry("DATAFREE.STRATEGY")
PLACEHOLDER = "x"


class PromptBank:
    """Tokenized class prompts of one template with a ``{style}`` slot, and where the slot is."""

    def __init__(self, model: nn.Module, template: str, classnames: Sequence[str], n_tokens: int):
        if "{style}" not in template:
            raise InvalidInputError(
                f"template {template!r} needs a {{style}} field "
                "(DATAFREE.TEMPLATE / CONTRASTIVE.STYLE_TEMPLATE)"
            )
        if n_tokens < 1:
            raise InvalidInputError(f"DATAFREE.STYLE_TOKENS must be >= 1, got {n_tokens}")
        self.model = model
        slot = " ".join([PLACEHOLDER] * n_tokens)
        texts = [template.format(style=slot, classname=c) for c in classnames]
        self.tokens = clip.tokenize(texts, context_length=model.context_length)
        # the slot starts after SOT and the tokens of the text before it (per class: the class
        # name may come first)
        tok = clip.clip._get_tokenizer()
        head = template.split("{style}")[0]
        starts = [1 + len(tok.encode(head.format(classname=c).strip())) for c in classnames]
        self.positions = torch.tensor(starts)[:, None] + torch.arange(n_tokens)
        placeholder_id = tok.encode(PLACEHOLDER)[0]
        if not bool((self.tokens.gather(1, self.positions) == placeholder_id).all()):
            raise InvalidInputError(
                f"could not locate the {{style}} slot of template {template!r} (put spaces "
                "around it)"
            )

    def encode(self, labels: torch.Tensor, vectors: torch.Tensor) -> torch.Tensor:
        """L2-normalised features of the prompts of ``labels`` with ``vectors`` [B, n, D] in."""
        tokens = self.tokens[labels.cpu()].to(vectors.device)
        pos = self.positions[labels.cpu()].to(vectors.device)
        feats = encode_spliced(self.model, tokens, vectors, pos).float()
        return feats / feats.norm(dim=-1, keepdim=True)


def token_moments(model: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-dimension mean and std of the token-embedding table ``E_tok``."""
    table = model.token_embedding.weight.detach().float()
    return table.mean(dim=0), table.std(dim=0)


def word_embedding(model: nn.Module, word: str) -> torch.Tensor:
    """Mean token embedding of ``word`` (a word may be several BPE tokens)."""
    ids = clip.clip._get_tokenizer().encode(word)
    if not ids:
        raise InvalidInputError(f"style word {word!r} has no tokens")
    return model.token_embedding.weight.detach().float()[ids].mean(dim=0)


class StyleStrategy:
    """Base: ``features(labels, seeds)`` -> (normalised prompt features [B, D], style records)."""

    name = ""

    def __init__(self, model: nn.Module, classnames: Sequence[str], template: str, n_tokens: int):
        self.model = model
        self.bank = PromptBank(model, template, classnames, n_tokens)
        self.n_tokens = n_tokens

    def style_vectors(self, seeds: Sequence[int]) -> tuple[torch.Tensor, list[dict]]:
        raise NotImplementedError

    @torch.no_grad()
    def features(
        self, labels: torch.Tensor, seeds: Sequence[int]
    ) -> tuple[torch.Tensor, list[dict]]:
        vectors, records = self.style_vectors(seeds)
        device = self.model.token_embedding.weight.device
        return self.bank.encode(labels, vectors.to(device)), records


class NoneStrategy(StyleStrategy):
    """The plain ``PLAIN_TEMPLATE`` prompt (no style slot)."""

    name = "none"

    def __init__(self, model: nn.Module, classnames: Sequence[str], plain_template: str):
        self.model = model
        tokens = clip.tokenize(
            [plain_template.format(classname=c) for c in classnames],
            context_length=model.context_length,
        )
        with torch.no_grad():
            feats = encode_spliced(model, tokens.to(model.token_embedding.weight.device)).float()
        self.class_features = feats / feats.norm(dim=-1, keepdim=True)

    @torch.no_grad()
    def features(
        self, labels: torch.Tensor, seeds: Sequence[int]
    ) -> tuple[torch.Tensor, list[dict]]:
        return self.class_features[labels.to(self.class_features.device)], [{} for _ in seeds]


class MixStrategy(StyleStrategy):
    """Mix-Prompt: ``[S] = sum_i w_i E_tok[word_i]``, ``w ~ Dirichlet(alpha)`` over m words."""

    name = "mix"

    def __init__(
        self,
        model: nn.Module,
        classnames: Sequence[str],
        template: str,
        n_tokens: int,
        words: Sequence[str],
        num_words: int,
        alpha: float,
    ):
        super().__init__(model, classnames, template, n_tokens)
        words = list(words)
        if not 1 <= num_words <= len(words):
            raise InvalidInputError(
                f"DATAFREE.MIX.NUM_WORDS must be in 1..{len(words)} (the style words), got {num_words}"
            )
        if alpha <= 0:
            raise InvalidInputError(f"DATAFREE.MIX.ALPHA must be > 0, got {alpha}")
        self.words, self.num_words, self.alpha = words, int(num_words), float(alpha)
        self.table = torch.stack([word_embedding(model, w) for w in words]).cpu()

    def draw(self, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """Word indices [n_tokens, m] and simplex weights [n_tokens, m] of one image."""
        rng = np.random.default_rng(seed)
        idx = np.stack(
            [
                rng.choice(len(self.words), self.num_words, replace=False)
                for _ in range(self.n_tokens)
            ]
        )
        w = rng.dirichlet(np.full(self.num_words, self.alpha), size=self.n_tokens)
        return idx, w

    def style_vectors(self, seeds: Sequence[int]) -> tuple[torch.Tensor, list[dict]]:
        vecs, records = [], []
        for s in seeds:
            idx, w = self.draw(s)
            weights = torch.from_numpy(w).float()
            vecs.append((weights.unsqueeze(-1) * self.table[torch.from_numpy(idx)]).sum(dim=1))
            records.append(
                {
                    "words": [[self.words[i] for i in row] for row in idx.tolist()],
                    "weights": [[round(x, 6) for x in row] for row in w.tolist()],
                }
            )
        return torch.stack(vecs), records


class RandomStrategy(StyleStrategy):
    """Random-Prompt: ``[S] ~ N(mu, diag((scale * sigma)^2))`` of the token table, per image."""

    name = "random"

    def __init__(
        self,
        model: nn.Module,
        classnames: Sequence[str],
        template: str,
        n_tokens: int,
        scale: float,
    ):
        super().__init__(model, classnames, template, n_tokens)
        if scale <= 0:
            raise InvalidInputError(f"DATAFREE.RANDOM.SCALE must be > 0, got {scale}")
        self.mu, self.sigma = (t.cpu() for t in token_moments(model))
        self.scale = float(scale)

    def style_vectors(self, seeds: Sequence[int]) -> tuple[torch.Tensor, list[dict]]:
        d = self.mu.shape[0]
        eps = np.stack(
            [np.random.default_rng(s).standard_normal((self.n_tokens, d)) for s in seeds]
        )
        vecs = self.mu + self.scale * self.sigma * torch.from_numpy(eps).float()
        return vecs, [{"style_seed": int(s)} for s in seeds]


class ContrastiveStrategy(StyleStrategy):
    """Contrastive-Prompt: one of K learnt style vectors (``datafree.contrastive``), uniformly."""

    name = "contrastive"

    def __init__(
        self, model: nn.Module, classnames: Sequence[str], template: str, styles: torch.Tensor
    ):
        super().__init__(model, classnames, template, int(styles.shape[1]))
        self.styles = styles.detach().float().cpu()

    def style_vectors(self, seeds: Sequence[int]) -> tuple[torch.Tensor, list[dict]]:
        ids = [int(np.random.default_rng(s).integers(len(self.styles))) for s in seeds]
        return self.styles[ids], [{"style_id": k} for k in ids]


@STRATEGY_REGISTRY.register()
def none(node: Any, model: nn.Module, classnames: Sequence[str], **_: Any) -> StyleStrategy:
    return NoneStrategy(model, classnames, node.PLAIN_TEMPLATE)


@STRATEGY_REGISTRY.register()
def mix(node: Any, model: nn.Module, classnames: Sequence[str], **_: Any) -> StyleStrategy:
    return MixStrategy(
        model,
        classnames,
        node.TEMPLATE,
        node.STYLE_TOKENS,
        node.MIX.WORDS,
        node.MIX.NUM_WORDS,
        node.MIX.ALPHA,
    )


@STRATEGY_REGISTRY.register()
def random(node: Any, model: nn.Module, classnames: Sequence[str], **_: Any) -> StyleStrategy:
    return RandomStrategy(model, classnames, node.TEMPLATE, node.STYLE_TOKENS, node.RANDOM.SCALE)


@STRATEGY_REGISTRY.register()
def contrastive(
    node: Any, model: nn.Module, classnames: Sequence[str], styles_path: str = "", **_: Any
) -> StyleStrategy:
    from .contrastive import load_or_train_styles

    styles = load_or_train_styles(node, model, classnames, styles_path)
    return ContrastiveStrategy(model, classnames, node.TEMPLATE, styles)


def build_strategy(
    node: Any, model: nn.Module, classnames: Sequence[str], styles_path: str = ""
) -> StyleStrategy:
    """The strategy ``node.STRATEGY`` (``node`` = ``cfg.DATAFREE``)."""
    try:
        builder = STRATEGY_REGISTRY.get(node.STRATEGY)
    except KeyError as err:
        raise InvalidInputError(err.args[0]) from None
    return builder(node, model, classnames, styles_path=styles_path)
