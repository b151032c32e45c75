"""Stage 2 of PromptKD: unsupervised distillation into a small CLIP image tower.

The student is a CLIP image tower (``MODEL.BACKBONE.NAME``) with learnable deep vision prompts
(``TRAINER.PROMPTKD`` depth/ctx) and a projector onto the teacher's class-vector space; its
L2-normalised output is scored against the pre-stored class vectors::

    logits = logit_scale * f_s @ V^T        (logit_scale = the student CLIP's, as upstream)

Soft labels come from a :class:`~trainers.distillation.Distiller` owning the frozen teacher
IMAGE tower (with its trained vision prompts, strictly loaded from the teacher checkpoint's
``image_encoder.*`` keys) scored against the same vectors. The teacher text encoder is never
built; at ``--eval-only`` time no teacher is loaded at all (the Distiller is built in
``before_train``). Training never reads labels.

Settings (``TRAINER.MODAL``):
- ``base2novel`` (transductive): train on ALL unlabelled train images of all classes; report
  base test images vs base vectors, new test images vs new vectors, and HM;
- ``cross``: the target dataset's test set vs all its class vectors (vectors exported with a
  teacher trained on another dataset, e.g. ImageNet).

Model selection never uses a test split: the final model is the last epoch. Upstream configs
set ``TEST.FINAL_MODEL best_val`` (which upstream evaluates on the *test* split); it is accepted,
logged and ignored.

Extension seams: :meth:`PromptKDStudent.train_data_source` (the unlabelled images; e.g. a
synthesized data-free set) and :meth:`PromptKDStudent.teacher_logits` (e.g. a teacher-output
cache).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

import clip
from clip.model import build_visual
from dassl.data.data_manager import build_data_loader
from dassl.engine import TRAINER_REGISTRY, TrainerX
from dassl.optim import build_lr_scheduler, build_optimizer
from dassl.utils.logger import get_logger

from .class_vectors import ClassVectors, load_class_vectors
from .compat_config import add_defaults
from .distillation import KD_NORMALIZATIONS, Distiller, KDLoss
from .image_source import read_image_folder
from .projector import PROJECTOR_TYPES, build_projector
from .promptkd_teacher import (
    CLASS_VECTORS_FILE,
    MODEL_NAME,
    cast_frozen,
    ivlp_design_details,
    read_teacher_state_dict,
    resolve_teacher_checkpoint,
)
from .results import EvalSubset, SubsetEvaluationMixin, full_class_info

__all__ = [
    "add_promptkd_student_config",
    "StudentCLIP",
    "PromptKDStudent",
    "PromptKD",
    "build_teacher_visual",
    "teacher_vision_design",
]

logger = get_logger(__name__)

MODALS = ("base2novel", "cross")


def add_promptkd_student_config(cfg: Any) -> Any:
    """Our keys under ``TRAINER.PROMPTKD`` (upstream ones are in :mod:`trainers.compat_config`).

    - ``TEACHER_WEIGHTS``: teacher run dir (``<dir>/VLPromptLearner/...``) or checkpoint file.
    - ``CLASS_VECTORS``: ``.safetensors`` file; "" = ``<teacher run dir>/class_vectors.safetensors``.
    - ``KD_NORM``: ``official`` (sum / (B*C), upstream parity) or ``batchmean`` (= official * C).
    - ``PROJECTOR``: ``mlp`` (paper) or ``conv_bn`` (upstream Conv1x1-BN-ReLU-Conv1x1).
    - ``TRAIN_SOURCE``: a folder of images to distil on instead of the dataset's train split
      (e.g. a synthesized data-free set, :func:`trainers.image_source.read_image_folder`);
      "" = the dataset's unlabelled train images. Evaluation stays on ``DATASET.NAME``.
    """
    add_defaults(
        cfg.TRAINER,
        "PROMPTKD",
        {
            "TEACHER_WEIGHTS": "",
            "CLASS_VECTORS": "",
            "KD_NORM": "official",
            "PROJECTOR": "mlp",
            "TRAIN_SOURCE": "",
        },
    )
    return cfg


class StudentCLIP(nn.Module):
    """Upstream student ``CustomCLIP`` layout: ``image_encoder``, ``VPT_image_trans``, ``logit_scale``."""

    def __init__(self, visual: nn.Module, projector: nn.Module, logit_scale: nn.Parameter):
        super().__init__()
        self.image_encoder = visual
        self.VPT_image_trans = projector
        self.logit_scale = logit_scale

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """L2-normalised projected image features (float32)."""
        dtype = self.image_encoder.conv1.weight.dtype
        feats = self.image_encoder(images.to(dtype))
        feats = self.VPT_image_trans(feats.to(next(self.VPT_image_trans.parameters()).dtype))
        feats = feats.float()
        return feats / feats.norm(dim=-1, keepdim=True)


def build_teacher_visual(
    state_dict: dict[str, torch.Tensor],
    design_details: dict[str, Any],
    source: str,
    base_clip: str | None = None,
) -> nn.Module:
    """The teacher's image tower from its checkpoint's ``image_encoder.*`` keys, strictly.

    Every parameter of the tower (prompts included) must be in the checkpoint; when the
    checkpoint holds prompts only, the frozen weights come from ``base_clip`` (a CLIP name or
    path). The text tower is never built.
    """
    prefix = "image_encoder."
    visual_sd = {
        "visual." + k[len(prefix) :]: v for k, v in state_dict.items() if k.startswith(prefix)
    }
    if not visual_sd:
        raise RuntimeError(f"Teacher checkpoint {source} has no image_encoder.* keys")
    if "visual.conv1.weight" not in visual_sd:
        if not base_clip:
            raise RuntimeError(
                f"Teacher checkpoint {source} holds only prompt weights; set "
                "TRAINER.PROMPTKD.TEACHER_NAME to the teacher's CLIP to take frozen weights from"
            )
        from clip.clip import _MODELS, _download, read_state_dict

        path = _download(_MODELS[base_clip]) if base_clip in _MODELS else base_clip
        base_sd, _ = read_state_dict(path)
        merged = {k: v for k, v in base_sd.items() if k.startswith("visual.")}
        merged.update(visual_sd)
        visual_sd = merged
    try:
        visual = build_visual(visual_sd, design_details)
    except ValueError as err:
        raise RuntimeError(
            f"Teacher checkpoint {source} does not fit the teacher prompt settings "
            f"{design_details}: {err}"
        ) from err
    missing = [k for k in visual.state_dict() if "visual." + k not in visual_sd]
    if missing:
        raise RuntimeError(
            f"Teacher checkpoint {source} lacks image-encoder keys {missing} required by the "
            f"teacher prompt settings {design_details}; a missing prompt would silently stay random"
        )
    return visual


_VISION_PROMPT_KEY = re.compile(r"image_encoder\.transformer\.resblocks\.(\d+)\.VPT_shallow")


def teacher_vision_design(state_dict: dict[str, torch.Tensor], source: str) -> dict[str, Any]:
    """IVLP vision-prompt settings of a teacher, read off its checkpoint's keys.

    ``image_encoder.VPT`` gives the context length, the ``VPT_shallow`` layers 1..d-1 the depth.
    The student thus needs no copy of the teacher's prompt config (upstream hard-codes depth 9,
    defect 7); gaps in the layers or differing shapes are errors, never silently random prompts.
    """
    design = {"trainer": "IVLP", "language_depth": 0, "language_ctx": 0}
    vpt = state_dict.get("image_encoder.VPT")
    if vpt is None:
        return {**design, "vision_depth": 0, "vision_ctx": 0}
    layers = sorted(
        int(m.group(1)) for k in state_dict if (m := _VISION_PROMPT_KEY.fullmatch(k)) is not None
    )
    depth = 1 + len(layers)
    if layers != list(range(1, depth)):
        raise RuntimeError(
            f"Teacher checkpoint {source}: deep vision prompts exist for layers {layers}, which "
            f"are not the contiguous layers 1..{depth - 1} an IVLP teacher has"
        )
    for n in layers:
        shape = tuple(state_dict[f"image_encoder.transformer.resblocks.{n}.VPT_shallow"].shape)
        if shape != tuple(vpt.shape):
            raise RuntimeError(
                f"Teacher checkpoint {source}: layer-{n} vision prompts have shape {shape}, "
                f"image_encoder.VPT has {tuple(vpt.shape)}"
            )
    return {**design, "vision_depth": depth, "vision_ctx": int(vpt.shape[0])}


@TRAINER_REGISTRY.register()
class PromptKDStudent(SubsetEvaluationMixin, TrainerX):
    """PromptKD student: VPT image tower + projector distilled from pre-stored class vectors."""

    def check_cfg(self, cfg: Any) -> None:
        kd = cfg.TRAINER.PROMPTKD
        if cfg.TRAINER.MODAL not in MODALS:
            raise ValueError(
                f"TRAINER.MODAL must be one of {list(MODALS)}, got {cfg.TRAINER.MODAL!r}"
            )
        if kd.KD_NORM not in KD_NORMALIZATIONS:
            raise ValueError(
                f"TRAINER.PROMPTKD.KD_NORM must be one of {list(KD_NORMALIZATIONS)}, got {kd.KD_NORM!r}"
            )
        if kd.PROJECTOR not in PROJECTOR_TYPES:
            raise ValueError(
                f"TRAINER.PROMPTKD.PROJECTOR must be one of {list(PROJECTOR_TYPES)}, got {kd.PROJECTOR!r}"
            )
        if kd.CE_WEIGHT != 0.0:
            raise ValueError(
                "TRAINER.PROMPTKD.CE_WEIGHT must be 0.0: the PromptKD student is unsupervised and "
                "never reads labels (upstream also ignores this key)"
            )
        if not kd.CLASS_VECTORS and not kd.TEACHER_WEIGHTS:
            raise ValueError(
                "PromptKDStudent needs the teacher: set TRAINER.PROMPTKD.TEACHER_WEIGHTS (teacher run "
                "dir or checkpoint) and/or TRAINER.PROMPTKD.CLASS_VECTORS (.safetensors)"
            )

    def get_precision_name(self, cfg: Any) -> str:
        return cfg.TRAINER.PROMPTKD.PREC

    def eval_protocol(self) -> str:
        return "base_new" if self.cfg.TRAINER.MODAL == "base2novel" else "all"

    # ------------------------------------------------------------------ data
    def train_data_source(self) -> list:
        """The unlabelled training images: every train image of every class (transductive).

        ``TRAINER.PROMPTKD.TRAIN_SOURCE`` replaces them by the images of a folder (e.g.
        synthesized images). Labels of the returned items are never read.
        """
        if self.cfg.TRAINER.PROMPTKD.TRAIN_SOURCE:
            return read_image_folder(self.cfg.TRAINER.PROMPTKD.TRAIN_SOURCE)
        full = getattr(self.dm.dataset, "full_splits", None)
        return list(full["train"]) if full is not None else list(self.dm.dataset.train_x)

    def build_data_loader(self) -> None:
        super().build_data_loader()
        source = self.train_data_source()
        if source is not self.dm.dataset.train_x and [d.impath for d in source] != [
            d.impath for d in self.dm.dataset.train_x
        ]:
            dl = self.cfg.DATALOADER
            self.train_loader_x = build_data_loader(
                self.cfg,
                sampler_type=dl.TRAIN_X.SAMPLER,
                data_source=source,
                batch_size=dl.TRAIN_X.BATCH_SIZE,
                n_domain=dl.TRAIN_X.N_DOMAIN,
                n_ins=dl.TRAIN_X.N_INS,
                tfm=self.dm.tfm_train,
                is_train=True,
                generator=self.dm.train_generator,
            )
            logger.info(f"Distilling on {len(source):,} unlabelled training images")

    # ------------------------------------------------------------------ model
    def class_vectors_path(self) -> str:
        kd = self.cfg.TRAINER.PROMPTKD
        if kd.CLASS_VECTORS:
            return kd.CLASS_VECTORS
        weights = kd.TEACHER_WEIGHTS
        run_dir = (
            weights
            if os.path.isdir(weights)
            else os.path.dirname(os.path.dirname(os.path.abspath(weights)))
        )
        if os.path.basename(os.path.normpath(run_dir)) == MODEL_NAME:
            run_dir = os.path.dirname(os.path.normpath(run_dir))
        return os.path.join(run_dir, CLASS_VECTORS_FILE)

    def build_model(self) -> None:
        cfg = self.cfg
        kd = cfg.TRAINER.PROMPTKD
        names, _, _, _ = full_class_info(self.dm.dataset)
        self.class_vectors: ClassVectors = load_class_vectors(
            self.class_vectors_path(), classnames=names
        )
        logger.info(
            f"Class vectors: {self.class_vectors.num_classes} classes x {self.class_vectors.dim} "
            f"from {self.class_vectors.path} (teacher {self.class_vectors.teacher_backbone})"
        )
        if cfg.TEST.FINAL_MODEL == "best_val":
            logger.warning(
                "TEST.FINAL_MODEL best_val is ignored by PromptKDStudent: upstream selects it on the "
                "test split; the last-epoch model is deployed"
            )

        logger.info(f"Loading CLIP (backbone: {cfg.MODEL.BACKBONE.NAME})")
        student_clip, _ = clip.load(
            cfg.MODEL.BACKBONE.NAME, device="cpu", design_details=ivlp_design_details(kd)
        )
        visual = student_clip.visual
        res = visual.input_resolution
        if cfg.INPUT.SIZE[0] != res:
            raise ValueError(
                f"INPUT.SIZE {tuple(cfg.INPUT.SIZE)} does not match the student's input resolution {res}"
            )
        projector = build_projector(
            kd.PROJECTOR, visual.output_dim, self.class_vectors.dim, kd.PROJECT_LAYER
        )
        self.model = StudentCLIP(visual, projector, student_clip.logit_scale)
        for name, p in self.model.named_parameters():
            p.requires_grad_("VPT" in name or name.startswith("VPT_image_trans."))
        cast_frozen(self.model, self.precision.frozen_dtype).to(self.device)
        enabled = sorted(n for n, p in self.model.named_parameters() if p.requires_grad)
        logger.info(f"Parameters to be updated: {enabled}")
        logger.info(f"Parameters count: {len(enabled)}")

        params = [p for p in self.model.parameters() if p.requires_grad]
        self.optim = build_optimizer(params, cfg.OPTIM)
        self.sched = build_lr_scheduler(self.optim, cfg.OPTIM)
        self.register_model(MODEL_NAME, self.model, self.optim, self.sched)
        self.model_ddp = self.wrap_ddp(self.model)
        self.vectors = self.class_vectors.vectors.to(self.device)
        self.kd_loss = KDLoss(kd.TEMPERATURE, kd.KD_NORM)
        self.distiller: Distiller | None = None  # built in before_train: never at eval-only

    def build_distiller(self) -> Distiller:
        """Frozen teacher image tower (from TEACHER_WEIGHTS) + the class vectors."""
        cfg = self.cfg
        kd = cfg.TRAINER.PROMPTKD
        if not kd.TEACHER_WEIGHTS:
            raise ValueError(
                "Training needs TRAINER.PROMPTKD.TEACHER_WEIGHTS (teacher run dir or checkpoint)"
            )
        path = resolve_teacher_checkpoint(kd.TEACHER_WEIGHTS)
        sd, file, _ = read_teacher_state_dict(path)
        logger.info(f"Loading teacher image encoder ({kd.TEACHER_NAME}) from {file}")
        design = teacher_vision_design(sd, file)
        logger.info(
            f"Teacher vision prompts (from the checkpoint): depth {design['vision_depth']}, "
            f"{design['vision_ctx']} tokens"
        )
        visual = build_teacher_visual(sd, design, file, kd.TEACHER_NAME)
        self.class_vectors.validate(dim=visual.output_dim)
        if "logit_scale" not in sd:
            raise RuntimeError(f"Teacher checkpoint {file} has no logit_scale")
        scale = float(sd["logit_scale"].float().exp())
        visual.to(self.precision.frozen_dtype)
        distiller = Distiller(visual, self.class_vectors.vectors, scale, self.kd_loss)
        return distiller.to(self.device)

    # ------------------------------------------------------------------ training
    def before_train(self) -> None:
        super().before_train()
        if self.start_epoch < self.max_epoch:
            self.distiller = self.build_distiller()

    def parse_batch_train(self, batch: dict[str, Any]) -> torch.Tensor:
        """Images only: the student never sees labels."""
        return batch["img"].to(self.device)

    def teacher_logits(self, images: torch.Tensor, batch: dict[str, Any]) -> torch.Tensor:
        """Soft labels for ``images`` (the seam for a teacher-output cache keyed by batch["index"])."""
        with self.precision.autocast():
            return self.distiller.teacher_logits(images).float()

    def student_logits(
        self, images: torch.Tensor, vectors: torch.Tensor, module: nn.Module | None = None
    ) -> torch.Tensor:
        """``logit_scale * f_s @ vectors^T``; training passes the DDP wrapper as ``module``."""
        with self.precision.autocast():
            feats = (module or self.model)(images)
        return self.model.logit_scale.exp().float() * feats @ vectors.t()

    def forward_backward(self, batch: dict[str, Any]) -> dict[str, float]:
        images = self.parse_batch_train(batch)
        t_logits = self.teacher_logits(images, batch)
        s_logits = self.student_logits(images, self.vectors, self.model_ddp)
        loss = self.cfg.TRAINER.PROMPTKD.KD_WEIGHT * self.distiller(s_logits, t_logits)
        self.model_backward_and_update(loss)
        if (self.batch_idx + 1) == self.num_batches:
            self.update_lr()
        return {"loss": loss.item()}

    def selects_best_val(self) -> bool:
        """Never: upstream's "val" is the base *test* split; the last epoch is deployed."""
        return False

    def after_train(self) -> None:
        self.distiller = None  # free the teacher before the final evaluation
        super().after_train()

    # ------------------------------------------------------------------ evaluation
    def model_inference(self, images: torch.Tensor) -> torch.Tensor:
        return self.student_logits(images, self.vectors)

    def classifier_for(self, subset: EvalSubset) -> Callable[[torch.Tensor], torch.Tensor]:
        vectors = self.class_vectors.subset(subset.class_range).to(self.device)
        return lambda images: self.student_logits(images, vectors)

    def load_model(self, directory: str, epoch: int | None = None) -> None:
        super().load_model(directory, epoch)
        if directory:
            self.results_epoch = epoch


@TRAINER_REGISTRY.register()
class PromptKD(PromptKDStudent):
    """Alias so upstream scripts' ``--trainer PromptKD`` run the student."""
