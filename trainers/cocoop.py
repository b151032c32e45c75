"""CoCoOp (Zhou et al., CVPR 2022): CoOp's context shifted per image by a small meta-network.

Reads the upstream node ``TRAINER.COCOOP`` (``N_CTX``, ``CTX_INIT``, ``PREC``); registers the
prompt learner as ``prompt_learner`` (``ctx``, ``meta_net.linear1/linear2``, token buffers), so
upstream checkpoints load. The meta-net's hidden width is the image feature size // 16, as
upstream.

Class vectors (the PromptKD teacher protocol) need text features that do not depend on an
image. The rule used: the context is shifted by the meta-net's output at the mean L2-normalised
image feature of the trainer's training images (test transforms), i.e. the prompt CoCoOp would
build for the average training image; its text features of every class are the class vectors.
The image tower is CLIP's own (no vision prompts).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from dassl.data.data_manager import build_data_loader
from dassl.engine import TRAINER_REGISTRY

from .compat_config import UPSTREAM_NODES
from .prompt_learner import PromptedCLIP, VLPromptLearner, l2_normalize
from .prompt_trainer import PromptTrainer
from .zero_shot import build_zero_shot_classifier

__all__ = ["CoCoOp", "CoCoOpPromptLearner", "CoCoOpCLIP"]


class CoCoOpPromptLearner(VLPromptLearner):
    """Learnable context + ``meta_net``: image feature -> a shift added to every context token."""

    def __init__(self, classnames: Sequence[str], clip_model: nn.Module, n_ctx: int, ctx_init: str):
        super().__init__(classnames, clip_model, n_ctx, ctx_init)
        vis_dim = clip_model.visual.output_dim
        ctx_dim = clip_model.ln_final.weight.shape[0]
        self.meta_net = nn.Sequential(
            OrderedDict(
                [
                    ("linear1", nn.Linear(vis_dim, max(vis_dim // 16, 1))),
                    ("relu", nn.ReLU(inplace=True)),
                    ("linear2", nn.Linear(max(vis_dim // 16, 1), ctx_dim)),
                ]
            )
        )

    def shifted_prompts(
        self, prefix: torch.Tensor, suffix: torch.Tensor, image_features: torch.Tensor
    ) -> torch.Tensor:
        """``[B, n_cls, L, D]``: the classes' prompts with the context shifted for each image."""
        bias = self.meta_net(image_features.to(self.ctx.dtype)).unsqueeze(1)  # [B, 1, D]
        ctx = self.ctx.unsqueeze(0) + bias  # [B, n_ctx, D]
        n_cls = prefix.shape[0]
        return torch.stack(
            [
                torch.cat(
                    [prefix.to(c.dtype), c.unsqueeze(0).expand(n_cls, -1, -1), suffix.to(c.dtype)],
                    1,
                )
                for c in ctx
            ]
        )


class CoCoOpCLIP(PromptedCLIP):
    """Per-image text features: one text-tower pass per image and class, as upstream."""

    def _classify(
        self,
        images: torch.Tensor,
        prefix: torch.Tensor,
        suffix: torch.Tensor,
        tokenized: torch.Tensor,
    ) -> torch.Tensor:
        feats = self.image_features(images)
        prompts = self.prompt_learner.shifted_prompts(prefix, suffix, feats)
        scale = self.logit_scale.exp().float()
        rows = [
            scale * f @ l2_normalize(self.text_encoder(p, tokenized)).t()
            for f, p in zip(feats, prompts)
        ]
        return torch.stack(rows)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        learner = self.prompt_learner
        return self._classify(
            images, learner.token_prefix, learner.token_suffix, learner.tokenized_prompts
        )

    def classifier(self, classnames: Sequence[str]) -> Callable[[torch.Tensor], torch.Tensor]:
        prefix, suffix, tokenized = self.prompt_learner.embed_classnames(classnames)
        dev = self.prompt_learner.ctx.device
        prefix, suffix, tokenized = prefix.to(dev), suffix.to(dev), tokenized.to(dev)
        return lambda images: self._classify(images, prefix, suffix, tokenized)

    def text_features_at(
        self, classnames: Sequence[str], image_feature: torch.Tensor
    ) -> torch.Tensor:
        """Normalised text features of ``classnames`` with the context shifted for one image feature."""
        prefix, suffix, tokenized = self.prompt_learner.embed_classnames(classnames)
        dev = self.prompt_learner.ctx.device
        prompts = self.prompt_learner.shifted_prompts(
            prefix.to(dev), suffix.to(dev), image_feature.unsqueeze(0)
        )[0]
        return l2_normalize(self.text_encoder(prompts, tokenized.to(dev)))


@TRAINER_REGISTRY.register(builtin=True)
class CoCoOp(PromptTrainer):
    """Conditional context optimization, cross-entropy."""

    node_name = "COCOOP"
    config_defaults = {"TRAINER.COCOOP": UPSTREAM_NODES["TRAINER.COCOOP"]}

    def build_prompted_model(self, classnames: Sequence[str]) -> CoCoOpCLIP:
        node = self.node
        clip_model = self.load_clip()
        return CoCoOpCLIP(
            clip_model, CoCoOpPromptLearner(classnames, clip_model, node.N_CTX, node.CTX_INIT)
        )

    def registered_module(self) -> nn.Module:
        return self.model.prompt_learner  # upstream saves the prompt learner only

    @torch.no_grad()
    def mean_image_feature(self) -> torch.Tensor:
        """Mean L2-normalised image feature of the training images (test transforms)."""
        loader = build_data_loader(
            self.cfg,
            sampler_type="SequentialSampler",
            data_source=list(self.dm.dataset.train_x),
            batch_size=self.cfg.DATALOADER.TEST.BATCH_SIZE,
            tfm=self.dm.tfm_test,
            is_train=False,
        )
        total, count = 0.0, 0
        for batch in loader:
            with self.precision.autocast():
                feats = self.model.image_features(batch["img"].to(self.device))
            total = total + feats.sum(0)
            count += feats.shape[0]
        return total / max(count, 1)

    @torch.no_grad()
    def teacher_class_vectors(self, classnames: Sequence[str]) -> torch.Tensor:
        self.set_model_mode("eval")
        anchor = self.mean_image_feature()

        def encode(names: list[str]) -> torch.Tensor:
            with self.precision.autocast():
                return self.model.text_features_at(names, anchor)

        return build_zero_shot_classifier(encode, classnames).cpu()

    def teacher_vision_prompts(self) -> dict[str, Any]:
        return {}
