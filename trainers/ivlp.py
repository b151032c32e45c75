"""IVLP (independent vision-language prompting, the MaPLe paper's baseline): deep text prompts
and deep vision prompts, learned independently, cross-entropy on labelled data.

Reads the upstream node ``TRAINER.IVLP``; registers the whole ``CustomCLIP`` as
``VLPromptLearner`` (upstream key layout: ``prompt_learner.ctx``, ``image_encoder.VPT``,
``*.transformer.resblocks.N.VPT_shallow``), so upstream IVLP checkpoints load.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import nn

from dassl.engine import TRAINER_REGISTRY
from dassl.utils import InvalidInputError

from .prompt_learner import PromptedCLIP, VLPromptLearner
from .prompt_trainer import PromptTrainer, ivlp_design_details, ivlp_prompt_defaults

__all__ = ["IVLP", "IVLPCLIP"]


class IVLPCLIP(PromptedCLIP):
    """CLIP with IVLP prompts: first-layer text context here, deeper ones inside the towers."""

    def __init__(self, clip_model: nn.Module, classnames: Sequence[str], n_ctx: int, ctx_init: str):
        super().__init__(clip_model, VLPromptLearner(classnames, clip_model, n_ctx, ctx_init))


@TRAINER_REGISTRY.register(builtin=True)
class IVLP(PromptTrainer):
    """Independent deep text + vision prompts, cross-entropy."""

    node_name = "IVLP"
    model_name = "VLPromptLearner"
    config_defaults = {"TRAINER.IVLP": ivlp_prompt_defaults(n_ctx=2)}

    def check_cfg(self, cfg: Any) -> None:
        node = cfg.TRAINER[self.node_name]
        if node.PROMPT_DEPTH_TEXT < 1 or node.N_CTX_TEXT < 1:
            raise InvalidInputError(
                f"{type(self).__name__} needs text prompts: TRAINER.{self.node_name}."
                f"PROMPT_DEPTH_TEXT >= 1 and N_CTX_TEXT >= 1 (got {node.PROMPT_DEPTH_TEXT}, "
                f"{node.N_CTX_TEXT})"
            )

    def build_prompted_model(self, classnames: Sequence[str]) -> IVLPCLIP:
        node = self.node
        clip_model = self.load_clip(ivlp_design_details(node))
        return IVLPCLIP(clip_model, classnames, node.N_CTX_TEXT, node.CTX_INIT)

    def prompt_settings(self) -> dict[str, Any]:
        node = self.node
        return {
            "n_ctx_text": int(node.N_CTX_TEXT),
            "n_ctx_vision": int(node.N_CTX_VISION),
            "depth_text": int(node.PROMPT_DEPTH_TEXT),
            "depth_vision": int(node.PROMPT_DEPTH_VISION),
            "ctx_init": str(node.CTX_INIT),
        }
