"""VPT (visual prompt tuning, as in the MaPLe code base): deep vision prompts only; the text
side is CLIP's frozen features of ``"<CTX_INIT> <class name>."``.

Reads the upstream node ``TRAINER.VPT`` (``N_CTX_VISION``, ``CTX_INIT``, ``PREC``,
``PROMPT_DEPTH_VISION``); registers the whole model as ``prompt_learner``, as upstream.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from dassl.engine import TRAINER_REGISTRY
from dassl.utils import InvalidInputError

from .compat_config import UPSTREAM_NODES
from .prompt_learner import FixedPromptLearner, PromptedCLIP
from .prompt_trainer import PromptTrainer

__all__ = ["VPT"]


@TRAINER_REGISTRY.register(builtin=True)
class VPT(PromptTrainer):
    """Vision prompts + hand-written text prompts, cross-entropy."""

    node_name = "VPT"
    config_defaults = {"TRAINER.VPT": UPSTREAM_NODES["TRAINER.VPT"]}

    def check_cfg(self, cfg: Any) -> None:
        if cfg.TRAINER.VPT.PROMPT_DEPTH_VISION < 1 or cfg.TRAINER.VPT.N_CTX_VISION < 1:
            raise InvalidInputError(
                "VPT needs vision prompts: TRAINER.VPT.PROMPT_DEPTH_VISION >= 1 and "
                f"N_CTX_VISION >= 1 (got {cfg.TRAINER.VPT.PROMPT_DEPTH_VISION}, "
                f"{cfg.TRAINER.VPT.N_CTX_VISION})"
            )

    def build_prompted_model(self, classnames: Sequence[str]) -> PromptedCLIP:
        node = self.node
        design = {
            "trainer": "VPT",
            "vision_depth": int(node.PROMPT_DEPTH_VISION),
            "vision_ctx": int(node.N_CTX_VISION),
            "language_depth": 0,
            "language_ctx": 0,
        }
        clip_model = self.load_clip(design)
        return PromptedCLIP(clip_model, FixedPromptLearner(classnames, clip_model, node.CTX_INIT))
