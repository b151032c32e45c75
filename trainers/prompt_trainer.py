"""``PromptTrainer``: the base of this package's prompt trainers (CoOp, CoCoOp, IVLP, VPT, MaPLe,
PromptSRC, the PromptKD teacher), and the teacher protocol.

A subclass builds its prompted CLIP in :meth:`PromptTrainer.build_prompted_model` (a module
whose ``forward(images)`` gives logits over the classes it was built for and whose
``classifier(classnames)`` gives an ``images -> logits`` function for any classes) and lists
its config keys in ``config_defaults``. Everything else is shared: freezing (only parameters
named by :meth:`is_trainable` learn), precision casting, optimizer and scheduler, cross-entropy
training through ``self.model_ddp``, evaluation on any class subset.

Teacher protocol (what ``tools/export_class_vectors.py`` and ``PromptKDStudent`` need from a
trainer, whatever its method):
- ``teacher_class_vectors(classnames)``: ``(C, D)`` L2-normalised text features (float32, CPU);
- ``teacher_vision_prompts()``: the frozen vision prompts of its image tower in IVLP layout
  (``image_encoder.VPT``, ``image_encoder.transformer.resblocks.N.VPT_shallow``; empty =
  prompt-free), so that base CLIP + these prompts reproduce its image features;
- ``teacher_logit_scale()``: ``logit_scale.exp()``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

import clip
from clip.preprocess import input_mismatches
from dassl.engine import TrainerX
from dassl.engine.checkpointer import find_checkpoint
from dassl.engine.evaluation import EvalSubset
from dassl.engine.precision import cast_frozen
from dassl.metrics import compute_accuracy
from dassl.optim import build_lr_scheduler, build_optimizer
from dassl.utils import InvalidInputError
from dassl.utils.logger import get_logger

from .teacher_io import load_teacher_state_dict, read_teacher_state_dict, vision_prompts_of
from .zero_shot import build_zero_shot_classifier

__all__ = ["PromptTrainer", "ivlp_design_details", "ivlp_prompt_defaults"]

logger = get_logger(__name__)


def ivlp_prompt_defaults(n_ctx: int) -> dict[str, Any]:
    """Upstream defaults of the IVLP prompt keys shared by the IVLP, PROMPTSRC and PROMPTKD nodes."""
    return {
        "N_CTX_VISION": n_ctx,
        "N_CTX_TEXT": n_ctx,
        "CTX_INIT": "a photo of a",
        "PREC": "fp16",
        "PROMPT_DEPTH_VISION": 9,
        "PROMPT_DEPTH_TEXT": 9,
    }


def ivlp_design_details(node: Any) -> dict[str, Any]:
    """IVLP ``design_details`` from an IVLP/PROMPTSRC/PROMPTKD-style config node."""
    return {
        "trainer": "IVLP",
        "vision_depth": int(node.PROMPT_DEPTH_VISION),
        "language_depth": int(node.PROMPT_DEPTH_TEXT),
        "vision_ctx": int(node.N_CTX_VISION),
        "language_ctx": int(node.N_CTX_TEXT),
    }


class PromptTrainer(TrainerX):
    """Cross-entropy prompt tuning of a frozen CLIP; subclasses supply the prompted model."""

    #: name the trainable model is registered (and saved) under, as upstream.
    model_name = "prompt_learner"
    #: the ``TRAINER.<node>`` config node holding ``PREC`` and the prompt settings.
    node_name = ""

    @property
    def node(self) -> Any:
        return self.cfg.TRAINER[self.node_name]

    def get_precision_name(self, cfg: Any) -> str:
        if self.node_name:
            return cfg.TRAINER[self.node_name].PREC
        return super().get_precision_name(cfg)

    def load_clip(self, design_details: dict[str, Any] | None = None) -> nn.Module:
        """``MODEL.BACKBONE.NAME`` (fp32, CPU) with deep prompts; checks the input size."""
        name = self.cfg.MODEL.BACKBONE.NAME
        logger.info(f"Loading CLIP (backbone: {name})")
        clip_model, _ = clip.load(name, device="cpu", design_details=design_details)
        res = clip_model.visual.input_resolution
        if self.cfg.INPUT.SIZE[0] != res:
            raise InvalidInputError(
                f"INPUT.SIZE {tuple(self.cfg.INPUT.SIZE)} does not match the CLIP input "
                f"resolution {res} of {name}"
            )
        for problem in input_mismatches(self.cfg.INPUT, clip_model.preprocess_cfg):
            logger.warning(f"{problem} ({name}'s own preprocessing)")
        return clip_model

    def build_prompted_model(self, classnames: Sequence[str]) -> nn.Module:
        raise NotImplementedError

    def is_trainable(self, name: str) -> bool:
        """Which parameters of the model learn (prompt learner and deep prompts by default)."""
        return name.startswith("prompt_learner.") or "VPT" in name

    def registered_module(self) -> nn.Module:
        """The module saved under :attr:`model_name` (the whole model unless overridden)."""
        return self.model

    def build_model(self) -> None:
        self.model = self.build_prompted_model(list(self.dm.dataset.classnames))
        for name, p in self.model.named_parameters():
            p.requires_grad_(self.is_trainable(name))
        cast_frozen(self.model, self.precision.frozen_dtype).to(self.device)
        enabled = sorted(n for n, p in self.model.named_parameters() if p.requires_grad)
        logger.info(f"Parameters to be updated: {enabled}")
        params = [p for p in self.model.parameters() if p.requires_grad]
        self.optim = build_optimizer(params, self.cfg.OPTIM)
        self.sched = build_lr_scheduler(self.optim, self.cfg.OPTIM)
        self.register_model(self.model_name, self.registered_module(), self.optim, self.sched)

    def forward_backward(self, batch: dict[str, Any]) -> dict[str, float]:
        images, labels = batch["img"].to(self.device), batch["label"].to(self.device)
        with self.precision.autocast():
            logits = self.model_ddp(images).float()
        loss = F.cross_entropy(logits, labels)
        self.model_backward_and_update(loss)
        return {"loss": loss.item(), "acc": compute_accuracy(logits, labels)[0].item()}

    def classifier_for(self, subset: EvalSubset) -> Callable[[torch.Tensor], torch.Tensor]:
        with self.precision.autocast():
            classify = self.model.classifier(subset.classnames)

        def logits(images: torch.Tensor) -> torch.Tensor:
            with self.precision.autocast():
                return classify(images).float()

        return logits

    # ------------------------------------------------------------------ teacher protocol
    @torch.no_grad()
    def teacher_class_vectors(self, classnames: Sequence[str]) -> torch.Tensor:
        self.set_model_mode("eval")

        def encode(names: list[str]) -> torch.Tensor:
            with self.precision.autocast():
                return self.model.text_features(names)

        return build_zero_shot_classifier(encode, classnames).cpu()

    def teacher_vision_prompts(self) -> dict[str, torch.Tensor]:
        return vision_prompts_of(self.model.image_encoder)

    def teacher_logit_scale(self) -> float:
        return float(self.model.logit_scale.detach().float().exp())

    def prompt_settings(self) -> dict[str, Any]:
        """The prompt settings recorded in the class-vector metadata."""
        return {k.lower(): v for k, v in self.node.items()} if self.node_name else {}

    def load_weights(self, path: str) -> str:
        """Load a run dir or checkpoint of this trainer (strict but for class-name buffers).

        Upstream files load too: a ``module.`` prefix and upstream PromptSRC's frozen
        ``ZS_image_encoder`` copy are dropped.
        """
        sd, file, epoch = read_teacher_state_dict(path, (self.model_name,))
        logger.info(f'Loading weights to {self.model_name} from "{file}" (epoch = {epoch})')
        load_teacher_state_dict(self.registered_module(), sd, file)
        self.results_epoch = epoch
        return file

    def load_model(self, directory: str, epoch: int | None = None) -> None:
        if not directory:
            logger.info("Note that load_model() is skipped as no pretrained model is given")
            return
        # The engine's one rule: model-best if the run selected by val, else its last save.
        self.load_weights(find_checkpoint(directory, self.model_name, epoch, purpose="final"))
