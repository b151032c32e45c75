"""PromptSRC (Khattak et al., ICCV 2023): IVLP prompts regularised by a frozen CLIP.

Cross-entropy + self-regulating consistency with the frozen zero-shot CLIP
(:mod:`trainers.promptsrc_losses`: text features against the 60-template ImageNet ensemble,
image features and logits against the frozen image tower) and Gaussian prompt aggregation
(GPA) over epochs. Reads the upstream node ``TRAINER.PROMPTSRC``; the model is registered as
``VLPromptLearner``, upstream's ``CustomCLIP`` key for key (the upstream-only
``prompt_learner.ZS_image_encoder.*`` copy of the frozen tower is dropped when reading; we keep
that tower outside the saved model).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

import clip
from dassl.engine import TRAINER_REGISTRY
from dassl.metrics import compute_accuracy
from dassl.utils.logger import get_logger

from .compat_config import UPSTREAM_NODES
from .imagenet_templates import IMAGENET_TEMPLATES
from .ivlp import IVLP
from .prompt_learner import l2_normalize
from .promptsrc_losses import GaussianPromptAggregator, PromptSRCLoss, gpa_weights
from .zero_shot import build_zero_shot_classifier

__all__ = ["PromptSRC"]

logger = get_logger(__name__)


@TRAINER_REGISTRY.register(builtin=True)
class PromptSRC(IVLP):
    """IVLP prompts + PromptSRC's consistency losses + GPA."""

    node_name = "PROMPTSRC"
    config_defaults = {"TRAINER.PROMPTSRC": UPSTREAM_NODES["TRAINER.PROMPTSRC"]}

    def build_model(self) -> None:
        super().build_model()
        cfg, node = self.cfg, self.node
        self.zs_visual = self.fixed_text_features = None  # built for training only (frozen_clip)
        self.criterion = PromptSRCLoss(node.TEXT_LOSS_WEIGHT, node.IMAGE_LOSS_WEIGHT)
        self.gpa = GaussianPromptAggregator(
            gpa_weights(cfg.OPTIM.MAX_EPOCH, node.GPA_MEAN, node.GPA_STD)
        )

    def build_frozen_clip(self) -> None:
        """The frozen zero-shot CLIP of the SCL losses: image tower + template text features.

        Built when training starts (evaluation and class-vector export never need it), under a
        forked RNG so that building it does not shift the training randomness.
        """
        with torch.random.fork_rng(devices=[]):
            zs_clip, _ = clip.load(self.cfg.MODEL.BACKBONE.NAME, device="cpu")
        zs_clip.requires_grad_(False)
        zs_clip.to(self.precision.frozen_dtype).to(self.device).eval()
        self.zs_visual = zs_clip.visual
        self.fixed_text_features = self._template_features(zs_clip, self.dm.dataset.classnames)

    @torch.no_grad()
    def _template_features(self, zs_clip: Any, classnames: Sequence[str]) -> torch.Tensor:
        """Mean over IMAGENET_TEMPLATES of raw frozen CLIP text features, then L2-normalised
        (upstream PromptSRC's order)."""

        def encode(texts: list[str]) -> torch.Tensor:
            with self.precision.autocast():
                return zs_clip.encode_text(clip.tokenize(texts).to(self.device))

        return build_zero_shot_classifier(
            encode, classnames, IMAGENET_TEMPLATES, normalize_each=False
        ).to(self.device)

    # ------------------------------------------------------------------ training
    def parse_batch_train(self, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        return batch["img"].to(self.device), batch["label"].to(self.device)

    def forward_backward(self, batch: dict[str, Any]) -> dict[str, float]:
        images, labels = self.parse_batch_train(batch)
        if self.zs_visual is None:
            self.build_frozen_clip()
        model = self.model
        with self.precision.autocast():
            scale = model.logit_scale.exp().float()
            text = model.text_features()
            feats = model.image_features(images)
            logits = scale * feats @ text.t()
            with torch.no_grad():
                zs_feats = l2_normalize(self.zs_visual(images.to(self.precision.frozen_dtype)))
                zs_logits = scale * zs_feats @ self.fixed_text_features.t()
        losses = self.criterion(
            logits, labels, text, self.fixed_text_features, feats, zs_feats, zs_logits
        )
        self.model_backward_and_update(losses["loss"], terms=losses)
        summary = {k: v.item() for k, v in losses.items()}
        summary["acc"] = compute_accuracy(logits, labels)[0].item()
        return summary

    def trainer_state_dict(self) -> dict[str, Any]:
        """GPA's running aggregate, saved inside every checkpoint (as timm keeps EMA weights):
        resuming from epoch N's file restores GPA over epochs <= N only."""
        return {"gpa": self.gpa.state_dict()}

    def load_trainer_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("gpa") is not None:
            self.gpa.load_state_dict(state["gpa"], self.device)
            logger.info(f"Resumed GPA state (epochs {self.gpa.epochs_seen})")

    def before_train(self) -> None:
        super().before_train()
        if self.start_epoch > 0 and not self.gpa.epochs_seen:
            logger.warning(
                f"Resuming at epoch {self.start_epoch} from a checkpoint without GPA state: GPA "
                "restarts and ignores the epochs trained before"
            )

    def after_epoch(self) -> None:
        # GPA: accumulate the epoch-end prompts; the last epoch deploys the aggregate, which is
        # evaluated on val like any epoch (best_val may select it) and saved.
        self.gpa.update(self.model, self.epoch)
        if (self.epoch + 1) == self.max_epoch:
            logger.info("Using GPA model for final inference...")
            self.gpa.apply(self.model)
        super().after_epoch()
