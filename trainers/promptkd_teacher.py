"""Stage 1 of PromptKD: a large CLIP teacher trained with PromptSRC (IVLP deep prompts).

``PromptKDTeacher`` reads ``TRAINER.PROMPTSRC`` (upstream ``vit_l14_c2_ep20_batch8_4+4ctx.yaml``
merges unchanged) and trains text + vision prompts of ``MODEL.BACKBONE.NAME`` (any ``clip``
name or checkpoint path) on labelled base-class data with CE + self-regulating consistency
(:mod:`trainers.promptsrc_losses`) and Gaussian prompt aggregation. The model is registered as
``VLPromptLearner`` and is upstream's ``CustomCLIP`` key for key, so checkpoints are
interchangeable with upstream teachers (the upstream-only ``prompt_learner.ZS_image_encoder.*``
copy of the frozen image tower is dropped when reading; we keep that tower outside the saved
model).

After training it stores the class vectors of ALL classes (base and new) of the dataset in
``<OUTPUT_DIR>/class_vectors.safetensors`` (:mod:`trainers.class_vectors`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

import clip
from dassl.engine import TRAINER_REGISTRY, TrainerX
from dassl.engine import distributed as dist
from dassl.engine.checkpointer import CheckpointMismatchError, find_checkpoint
from dassl.metrics import compute_accuracy
from dassl.optim import build_lr_scheduler, build_optimizer
from dassl.utils import InputFileNotFoundError, InvalidInputError, load_checkpoint
from dassl.utils.logger import get_logger

from .class_vectors import save_class_vectors, sha256_file
from .imagenet_templates import IMAGENET_TEMPLATES
from .prompt_learner import PromptedCLIP, VLPromptLearner, _normalize, fixed_buffer_keys
from .promptsrc_losses import GaussianPromptAggregator, PromptSRCLoss, gpa_weights
from .results import EvalSubset, SubsetEvaluationMixin, full_class_info

__all__ = [
    "MODEL_NAME",
    "TeacherCLIP",
    "PromptKDTeacher",
    "ivlp_design_details",
    "prompt_settings",
    "resolve_teacher_checkpoint",
    "read_teacher_state_dict",
    "load_teacher_state_dict",
    "compute_class_vectors",
    "store_class_vectors",
    "cast_frozen",
]

logger = get_logger(__name__)

MODEL_NAME = "VLPromptLearner"
ZS_PREFIX = "prompt_learner.ZS_image_encoder."
CLASS_VECTORS_FILE = "class_vectors.safetensors"


def ivlp_design_details(node: Any) -> dict[str, Any]:
    """IVLP ``design_details`` from a PROMPTSRC/PROMPTKD-style config node."""
    return {
        "trainer": "IVLP",
        "vision_depth": int(node.PROMPT_DEPTH_VISION),
        "language_depth": int(node.PROMPT_DEPTH_TEXT),
        "vision_ctx": int(node.N_CTX_VISION),
        "language_ctx": int(node.N_CTX_TEXT),
    }


def prompt_settings(node: Any) -> dict[str, Any]:
    """Prompt settings recorded in the class-vector metadata."""
    return {
        "n_ctx_text": int(node.N_CTX_TEXT),
        "n_ctx_vision": int(node.N_CTX_VISION),
        "depth_text": int(node.PROMPT_DEPTH_TEXT),
        "depth_vision": int(node.PROMPT_DEPTH_VISION),
        "ctx_init": str(node.CTX_INIT),
    }


def cast_frozen(module: nn.Module, dtype: torch.dtype) -> nn.Module:
    """Cast ``module`` to ``dtype`` but keep trainable parameters in float32 (master weights)."""
    module.to(dtype)
    for p in module.parameters():
        if p.requires_grad:
            p.data = p.data.float()
    return module


class TeacherCLIP(PromptedCLIP):
    """The prompted teacher: upstream ``CustomCLIP`` with an IVLP text prompt learner."""

    def __init__(self, clip_model: nn.Module, classnames: Sequence[str], n_ctx: int, ctx_init: str):
        super().__init__(clip_model, VLPromptLearner(classnames, clip_model, n_ctx, ctx_init))


@torch.no_grad()
def compute_class_vectors(
    model: TeacherCLIP, classnames: Sequence[str], autocast: Callable[[], Any], chunk: int = 256
) -> torch.Tensor:
    """L2-normalised teacher text features of ``classnames`` (float32, CPU), in chunks."""
    was_training = model.training
    model.eval()
    out = []
    for i in range(0, len(classnames), chunk):
        with autocast():
            out.append(model.text_features(list(classnames[i : i + chunk])).float().cpu())
    model.train(was_training)
    return torch.cat(out, dim=0)


def store_class_vectors(
    model: TeacherCLIP,
    cfg: Any,
    dataset: Any,
    output: str,
    checkpoint: str | None,
    autocast: Callable[[], Any],
) -> str:
    """Compute the class vectors of ALL classes of ``dataset`` and write them with metadata.

    Shared by the teacher (after training) and ``tools/export_class_vectors.py`` so both write
    the same file; ``checkpoint`` (the teacher weights file) is recorded by its SHA-256.
    """
    names, base, new, _ = full_class_info(dataset)
    vectors = compute_class_vectors(model, names, autocast)
    save_class_vectors(
        output,
        vectors,
        names,
        base_classes=base,
        new_classes=new,
        dataset=cfg.DATASET.NAME,
        teacher_backbone=cfg.MODEL.BACKBONE.NAME,
        teacher_checkpoint_sha256=sha256_file(checkpoint) if checkpoint else "",
        prompt=prompt_settings(cfg.TRAINER.PROMPTSRC),
        logit_scale=float(model.logit_scale.detach().float().exp()),
    )
    logger.info(f"Class vectors of {len(names)} classes ({vectors.shape[1]}-d) saved to {output}")
    return output


def resolve_teacher_checkpoint(path: str) -> str:
    """A checkpoint file from a file path or a run dir (``<dir>/VLPromptLearner/...``).

    The engine's one rule (:func:`dassl.engine.checkpointer.find_checkpoint`, "final"): in a
    directory ``model-best.pth.tar`` (the deployed weights of a ``best_val`` run), else the
    latest save named by the ``checkpoint`` pointer, else the highest ``model.pth.tar-N``.
    """
    if not os.path.exists(path):
        raise InputFileNotFoundError(
            f"Teacher weights not found: {path} (TRAINER.PROMPTKD.TEACHER_WEIGHTS / "
            f"--teacher-weights must be a teacher run dir or a checkpoint file)"
        )
    return find_checkpoint(path, MODEL_NAME, purpose="final")


def read_teacher_state_dict(path: str) -> tuple[dict[str, torch.Tensor], str, int | None]:
    """Read a (possibly upstream, pickled) teacher checkpoint: ``(state_dict, file, epoch)``.

    Drops a leading ``module.``, the class-name-dependent token buffers and upstream's frozen
    ``prompt_learner.ZS_image_encoder.*`` copy; everything else is kept for a strict load.
    """
    file = resolve_teacher_checkpoint(path)
    ckpt = load_checkpoint(file, legacy="auto")
    sd = ckpt.get("state_dict", ckpt) if isinstance(ckpt, dict) else None
    if not isinstance(sd, dict):
        raise InvalidInputError(f"{file} holds no state dict (expected a Dassl checkpoint)")
    fixed = set(fixed_buffer_keys())
    out = {}
    for k, v in sd.items():
        k = k[len("module.") :] if k.startswith("module.") else k
        if k in fixed or k.startswith(ZS_PREFIX):
            continue
        out[k] = v
    epoch = ckpt.get("epoch") if isinstance(ckpt, dict) else None
    return out, file, epoch


def load_teacher_state_dict(
    model: nn.Module, state_dict: dict[str, torch.Tensor], source: str
) -> None:
    """Strict load except the token buffers; missing prompts or shape mismatches are errors."""
    fixed = set(fixed_buffer_keys())
    expected = model.state_dict()
    missing = [k for k in expected if k not in state_dict and k not in fixed]
    unexpected = [k for k in state_dict if k not in expected]
    shapes = [
        f"{k}: checkpoint {tuple(v.shape)} vs model {tuple(expected[k].shape)}"
        for k, v in state_dict.items()
        if k in expected and tuple(v.shape) != tuple(expected[k].shape)
    ]
    if missing or unexpected or shapes:
        raise CheckpointMismatchError(
            f"Teacher checkpoint {source} does not match the teacher built from the config "
            f"(TRAINER.PROMPTSRC N_CTX_*/PROMPT_DEPTH_*, MODEL.BACKBONE.NAME): missing keys "
            f"{missing[:10]}{' ...' if len(missing) > 10 else ''}, unexpected keys "
            f"{unexpected[:10]}{' ...' if len(unexpected) > 10 else ''}, shape mismatches {shapes[:10]}"
        )
    model.load_state_dict({k: v for k, v in state_dict.items()}, strict=False)


@TRAINER_REGISTRY.register()
class PromptKDTeacher(SubsetEvaluationMixin, TrainerX):
    """PromptSRC teacher (IVLP prompts, SCL losses, GPA) that also writes the class vectors."""

    def check_cfg(self, cfg: Any) -> None:
        node = cfg.TRAINER.PROMPTSRC
        if node.PROMPT_DEPTH_TEXT < 1 or node.N_CTX_TEXT < 1:
            raise InvalidInputError(
                "PromptKDTeacher needs text prompts: TRAINER.PROMPTSRC.PROMPT_DEPTH_TEXT >= 1 and "
                f"N_CTX_TEXT >= 1 (got {node.PROMPT_DEPTH_TEXT}, {node.N_CTX_TEXT})"
            )

    def get_precision_name(self, cfg: Any) -> str:
        return cfg.TRAINER.PROMPTSRC.PREC

    # ------------------------------------------------------------------ model
    def build_teacher(self, classnames: Sequence[str]) -> TeacherCLIP:
        """The prompted teacher CLIP (fp32 on CPU) for ``classnames``."""
        cfg = self.cfg
        node = cfg.TRAINER.PROMPTSRC
        logger.info(f"Loading CLIP (backbone: {cfg.MODEL.BACKBONE.NAME})")
        clip_model, _ = clip.load(
            cfg.MODEL.BACKBONE.NAME, device="cpu", design_details=ivlp_design_details(node)
        )
        res = clip_model.visual.input_resolution
        if cfg.INPUT.SIZE[0] != res:
            raise InvalidInputError(
                f"INPUT.SIZE {tuple(cfg.INPUT.SIZE)} does not match the CLIP input resolution {res} "
                f"of {cfg.MODEL.BACKBONE.NAME}"
            )
        model = TeacherCLIP(clip_model, classnames, node.N_CTX_TEXT, node.CTX_INIT)
        for name, p in model.named_parameters():
            p.requires_grad_(name.startswith("prompt_learner.") or "VPT" in name)
        return model

    def build_model(self) -> None:
        cfg = self.cfg
        node = cfg.TRAINER.PROMPTSRC
        classnames = list(self.dm.dataset.classnames)
        self.model = self.build_teacher(classnames)
        cast_frozen(self.model, self.precision.frozen_dtype).to(self.device)
        enabled = sorted(n for n, p in self.model.named_parameters() if p.requires_grad)
        logger.info(f"Parameters to be updated: {enabled}")
        logger.info(f"Parameters count: {len(enabled)}")

        # Frozen zero-shot CLIP: image tower + template-ensemble text features (PromptSRC SCL).
        zs_clip, _ = clip.load(cfg.MODEL.BACKBONE.NAME, device="cpu")
        zs_clip.requires_grad_(False)
        zs_clip.to(self.precision.frozen_dtype).to(self.device).eval()
        self.zs_visual = zs_clip.visual
        self.fixed_text_features = self._template_features(zs_clip, classnames)

        params = [p for p in self.model.parameters() if p.requires_grad]
        self.optim = build_optimizer(params, cfg.OPTIM)
        self.sched = build_lr_scheduler(self.optim, cfg.OPTIM)
        self.register_model(MODEL_NAME, self.model, self.optim, self.sched)
        self.criterion = PromptSRCLoss(node.TEXT_LOSS_WEIGHT, node.IMAGE_LOSS_WEIGHT)
        self.gpa = GaussianPromptAggregator(
            gpa_weights(cfg.OPTIM.MAX_EPOCH, node.GPA_MEAN, node.GPA_STD)
        )

    @torch.no_grad()
    def _template_features(self, zs_clip: nn.Module, classnames: Sequence[str]) -> torch.Tensor:
        """Mean over IMAGENET_TEMPLATES of frozen CLIP text features, then L2-normalised."""
        names = [c.replace("_", " ") for c in classnames]
        total = None
        for template in IMAGENET_TEMPLATES:
            tokens = clip.tokenize([template.format(n) for n in names]).to(self.device)
            with self.precision.autocast():
                feats = zs_clip.encode_text(tokens).float()
            total = feats if total is None else total + feats
        return _normalize(total / len(IMAGENET_TEMPLATES))

    # ------------------------------------------------------------------ training
    def parse_batch_train(self, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        return batch["img"].to(self.device), batch["label"].to(self.device)

    def forward_backward(self, batch: dict[str, Any]) -> dict[str, float]:
        images, labels = self.parse_batch_train(batch)
        model = self.model
        with self.precision.autocast():
            scale = model.logit_scale.exp().float()
            text = model.text_features()
            feats = model.image_features(images)
            logits = scale * feats @ text.t()
            with torch.no_grad():
                zs_feats = _normalize(self.zs_visual(images.to(self.precision.frozen_dtype)))
                zs_logits = scale * zs_feats @ self.fixed_text_features.t()
        losses = self.criterion(
            logits, labels, text, self.fixed_text_features, feats, zs_feats, zs_logits
        )
        self.model_backward_and_update(losses["loss"])
        summary = {k: v.item() for k, v in losses.items()}
        summary["acc"] = compute_accuracy(logits, labels)[0].item()
        if (self.batch_idx + 1) == self.num_batches:
            self.update_lr()
        return summary

    def trainer_state_dict(self) -> dict[str, Any]:
        """GPA's running aggregate lives inside every checkpoint (resume drops later epochs)."""
        return {"gpa": self.gpa.state_dict()}

    def load_trainer_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("gpa") is not None:
            self.gpa.load_state_dict(state["gpa"], self.device)
            logger.info(f"Resumed GPA state (epochs {self.gpa.epochs_seen})")

    def before_train(self) -> None:
        super().before_train()
        if self.start_epoch > 0 and not self.gpa.epochs_seen:
            logger.warning(
                f"Resuming at epoch {self.start_epoch} from a checkpoint without GPA state: "
                "GPA restarts and ignores the epochs trained before"
            )

    def after_epoch(self) -> None:
        # GPA: accumulate the epoch-end prompts; the last epoch deploys the aggregate, which is
        # then evaluated on val like any epoch (so best_val may select it) and saved.
        self.gpa.update(self.model, self.epoch)
        if (self.epoch + 1) == self.max_epoch:
            logger.info("Using GPA model for final inference...")
            self.gpa.apply(self.model)
        super().after_epoch()

    def after_train(self) -> None:
        super().after_train()
        self.write_class_vectors()

    # ------------------------------------------------------------------ class vectors
    def write_class_vectors(self, path: str | None = None) -> str | None:
        """Store the teacher text features of ALL classes (rank 0); returns the file path.

        They come from the weights deployed for the final evaluation: ``model-best`` under
        ``TEST.FINAL_MODEL best_val`` (the best of the single epochs and the GPA aggregate on
        val), else the last save (GPA applied). The metadata's SHA-256 is that file's, which
        holds exactly the weights in memory here.
        """
        if not dist.is_main_process():
            return None
        try:
            ckpt = resolve_teacher_checkpoint(self.output_dir)
        except FileNotFoundError:
            ckpt = None
        path = path or os.path.join(self.output_dir, CLASS_VECTORS_FILE)
        return store_class_vectors(
            self.model, self.cfg, self.dm.dataset, path, ckpt, self.precision.autocast
        )

    # ------------------------------------------------------------------ evaluation / loading
    def model_inference(self, images: torch.Tensor) -> torch.Tensor:
        with self.precision.autocast():
            return self.model(images).float()

    def classifier_for(self, subset: EvalSubset) -> Callable[[torch.Tensor], torch.Tensor]:
        with torch.no_grad(), self.precision.autocast():
            text = self.model.text_features(subset.classnames)
        scale = self.model.logit_scale.exp().float()

        def classify(images: torch.Tensor) -> torch.Tensor:
            with self.precision.autocast():
                return (scale * self.model.image_features(images) @ text.t()).float()

        return classify

    def load_model(self, directory: str, epoch: int | None = None) -> None:
        if not directory:
            logger.info("Note that load_model() is skipped as no pretrained model is given")
            return
        path = find_checkpoint(directory, MODEL_NAME, epoch=epoch, purpose="final")
        sd, _, ckpt_epoch = read_teacher_state_dict(path)
        logger.info(f'Loading weights to {MODEL_NAME} from "{path}" (epoch = {ckpt_epoch})')
        load_teacher_state_dict(self.model, sd, path)
        self.evaluated_epoch = ckpt_epoch
