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

import functools
import os
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

import clip
from clip.preprocess import input_mismatches
from dassl.data.data_manager import build_data_loader
from dassl.data.transforms.view_replay import ViewPipeline
from dassl.engine import TRAINER_REGISTRY, TrainerX
from dassl.engine import distributed as dist
from dassl.engine.checkpointer import CheckpointMismatchError, run_dir_of
from dassl.engine.evaluation import EvalSubset, full_class_info
from dassl.engine.precision import cast_frozen
from dassl.optim import build_lr_scheduler, build_optimizer
from dassl.utils import InputFileNotFoundError, InvalidInputError, load_checkpoint
from dassl.utils.logger import get_logger

from .class_vectors import CLASS_VECTORS_FILE, ClassVectors, load_class_vectors, sha256_file
from .distillation import KD_NORMALIZATIONS, Distiller, KDLoss
from .image_source import read_image_folder
from .projector import PROJECTOR_TYPES, build_projector
from .prompt_trainer import ivlp_design_details, ivlp_prompt_defaults
from .teacher_cache import (
    CACHE_DTYPES,
    CacheSpec,
    ReplayDatasetWrapper,
    TeacherCache,
    build_shards,
    items_sha256,
    missing_shards,
    prepare_cache_dir,
)
from .teacher_io import (
    build_teacher_visual,
    clip_state_dict,
    is_clip_reference,
    read_teacher_state_dict,
    resolve_teacher_checkpoint,
    teacher_vision_design,
)

__all__ = [
    "StudentCLIP",
    "PromptKDStudent",
    "PromptKD",
    "build_teacher_visual",
    "teacher_vision_design",
]

logger = get_logger(__name__)

MODALS = ("base2novel", "cross")
MODEL_NAME = "VLPromptLearner"


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


@TRAINER_REGISTRY.register(builtin=True)
class PromptKDStudent(TrainerX):
    """PromptKD student: VPT image tower + projector distilled from pre-stored class vectors.

    ``TRAINER.PROMPTKD`` keys beyond upstream's:
    - ``TEACHER_WEIGHTS``: the teacher: a run dir or checkpoint of any prompt trainer (class
      vectors exported into it), or a CLIP name/path (its image tower, prompt-free).
    - ``CLASS_VECTORS``: ``.safetensors`` file; "" = ``<teacher run dir>/class_vectors.safetensors``.
    - ``KD_NORM``: ``official`` (sum / (B*C), upstream parity) or ``batchmean`` (= official * C).
    - ``PROJECTOR``: ``mlp`` (paper) or ``conv_bn`` (upstream Conv1x1-BN-ReLU-Conv1x1).
    """

    teacher_cache: TeacherCache | None = None  # opened in before_train with TEACHER_CACHE

    config_defaults = {
        "TRAINER.MODAL": "base2novel",  # base2novel or cross
        "TRAINER.PROMPTKD": {
            **ivlp_prompt_defaults(n_ctx=4),
            "PROJECT_LAYER": 2,
            "CE_WEIGHT": 0.0,
            "KD_WEIGHT": 1.0,
            "TEMPERATURE": 1.0,
            "TEACHER_NAME": "ViT-L/14",  # upstream default "ViT/L-14" is a typo
            "TEACHER_WEIGHTS": "",
            "CLASS_VECTORS": "",
            "KD_NORM": "official",
            "PROJECTOR": "mlp",
            # a folder of images to distil on instead of the dataset's train split (e.g. a
            # synthesized data-free set, trainers.image_source); "" = the dataset's train images
            "TRAIN_SOURCE": "",
            # teacher-output cache (trainers/teacher_cache.py): directory ("" = the teacher runs
            # every step), K seeded views per image, float32 (bit-identical) or float16 (half)
            "TEACHER_CACHE": "",
            "TEACHER_CACHE_VIEWS": 10,
            "TEACHER_CACHE_DTYPE": "float32",
        },
    }

    def check_cfg(self, cfg: Any) -> None:
        kd = cfg.TRAINER.PROMPTKD
        if cfg.TRAINER.MODAL not in MODALS:
            raise InvalidInputError(
                f"TRAINER.MODAL must be one of {list(MODALS)}, got {cfg.TRAINER.MODAL!r}"
            )
        if kd.KD_NORM not in KD_NORMALIZATIONS:
            raise InvalidInputError(
                f"TRAINER.PROMPTKD.KD_NORM must be one of {list(KD_NORMALIZATIONS)}, got {kd.KD_NORM!r}"
            )
        if kd.PROJECTOR not in PROJECTOR_TYPES:
            raise InvalidInputError(
                f"TRAINER.PROMPTKD.PROJECTOR must be one of {list(PROJECTOR_TYPES)}, got {kd.PROJECTOR!r}"
            )
        if kd.CE_WEIGHT != 0.0:
            raise InvalidInputError(
                "TRAINER.PROMPTKD.CE_WEIGHT must be 0.0: the PromptKD student is unsupervised and "
                "never reads labels (upstream also ignores this key)"
            )
        if kd.TEACHER_CACHE:
            ViewPipeline.from_cfg(cfg)  # the training views must be replayable
            if kd.TEACHER_CACHE_DTYPE not in CACHE_DTYPES or int(kd.TEACHER_CACHE_VIEWS) < 1:
                raise InvalidInputError(
                    f"TRAINER.PROMPTKD.TEACHER_CACHE_DTYPE must be one of {list(CACHE_DTYPES)} "
                    f"(got {kd.TEACHER_CACHE_DTYPE!r}) and TEACHER_CACHE_VIEWS >= 1 (got "
                    f"{kd.TEACHER_CACHE_VIEWS})"
                )
        if not kd.CLASS_VECTORS and not kd.TEACHER_WEIGHTS:
            raise InvalidInputError(
                "PromptKDStudent needs the teacher: set TRAINER.PROMPTKD.TEACHER_WEIGHTS (teacher run "
                "dir or checkpoint) and/or TRAINER.PROMPTKD.CLASS_VECTORS (.safetensors)"
            )

    def get_precision_name(self, cfg: Any) -> str:
        return cfg.TRAINER.PROMPTKD.PREC

    def eval_protocol(self) -> str:
        """Per target domain (``DATASET.TARGET_DOMAINS``), else by ``TRAINER.MODAL``."""
        if self.cfg.DATASET.TARGET_DOMAINS:
            return "domains"
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
        if is_clip_reference(weights):
            raise InvalidInputError(
                f"TRAINER.PROMPTKD.TEACHER_WEIGHTS {weights!r} is a CLIP: set "
                "TRAINER.PROMPTKD.CLASS_VECTORS to its exported class vectors (tools/"
                "export_class_vectors.py --trainer ZeroshotCLIP --teacher-weights ...)"
            )
        # The side file sits in the teacher's run directory (the engine's run-dir rule).
        return os.path.join(run_dir_of(weights, MODEL_NAME), CLASS_VECTORS_FILE)

    def load_init_weights(self) -> None:
        """``MODEL.INIT_WEIGHTS`` (as the official student reads it in build_model): the
        tensors whose names and shapes match the student; none matching is an error."""
        path = self.cfg.MODEL.INIT_WEIGHTS
        if not path:
            return
        if not os.path.isfile(path):
            raise InputFileNotFoundError(
                f"MODEL.INIT_WEIGHTS {path} does not exist: give a student checkpoint file or "
                "leave the key empty"
            )
        ckpt = load_checkpoint(path, legacy="auto")
        sd = ckpt.get("state_dict", ckpt) if isinstance(ckpt, dict) else {}
        own = self.model.state_dict()
        matched = {}
        for k, v in sd.items():
            k = k[len("module.") :] if k.startswith("module.") else k
            if k in own and torch.is_tensor(v) and v.shape == own[k].shape:
                matched[k] = v
        if not matched:
            raise CheckpointMismatchError(
                f"MODEL.INIT_WEIGHTS {path}: no tensor matches the student's names and shapes; "
                "give a checkpoint of this student (same backbone and prompt settings)"
            )
        self.model.load_state_dict(matched, strict=False)
        logger.info(f"MODEL.INIT_WEIGHTS: {len(matched)} tensors initialised from {path}")

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
        for problem in input_mismatches(cfg.INPUT, student_clip.preprocess_cfg):
            logger.warning(f"{problem} ({cfg.MODEL.BACKBONE.NAME}'s own preprocessing)")
        res = visual.input_resolution
        if cfg.INPUT.SIZE[0] != res:
            raise InvalidInputError(
                f"INPUT.SIZE {tuple(cfg.INPUT.SIZE)} does not match the student's input resolution {res}"
            )
        projector = build_projector(
            kd.PROJECTOR, visual.output_dim, self.class_vectors.dim, kd.PROJECT_LAYER
        )
        self.model = StudentCLIP(visual, projector, student_clip.logit_scale)
        self.load_init_weights()
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
        self.vectors = self.class_vectors.vectors.to(self.device)
        self.kd_loss = KDLoss(kd.TEMPERATURE, kd.KD_NORM)
        self.distiller: Distiller | None = None  # built in before_train: never at eval-only
        self.teacher_cache: TeacherCache | None = None  # opened in before_train

    def teacher_image_tower(self) -> tuple[nn.Module, float]:
        """The frozen teacher image tower and its logit scale (see :mod:`trainers.teacher_io`)."""
        kd = self.cfg.TRAINER.PROMPTKD
        cv = self.class_vectors
        if is_clip_reference(kd.TEACHER_WEIGHTS):
            logger.info(f"Loading teacher image encoder: CLIP {kd.TEACHER_WEIGHTS} (no prompts)")
            sd = clip_state_dict(kd.TEACHER_WEIGHTS)
            visual = build_teacher_visual(
                {"image_encoder." + k[7:]: v for k, v in sd.items() if k.startswith("visual.")},
                teacher_vision_design({}, kd.TEACHER_WEIGHTS),
                kd.TEACHER_WEIGHTS,
                kd.TEACHER_WEIGHTS,  # the architecture of a converted CLIP
            )
            return visual, float(sd["logit_scale"].float().exp())
        if cv.vision_prompts is not None:
            base = cv.teacher_backbone
            if not is_clip_reference(base):
                base = kd.TEACHER_NAME
            logger.info(
                f"Loading teacher image encoder ({base}) with the {len(cv.vision_prompts)} vision "
                f"prompts of {cv.path} (teacher {cv.teacher_trainer or 'unknown'})"
            )
            design = teacher_vision_design(cv.vision_prompts, cv.path)
            visual = build_teacher_visual(cv.vision_prompts, design, cv.path, base)
            return visual, cv.logit_scale
        if not kd.TEACHER_WEIGHTS:
            raise InvalidInputError(
                "Training needs TRAINER.PROMPTKD.TEACHER_WEIGHTS (teacher run dir or checkpoint)"
            )
        sd, file, _ = read_teacher_state_dict(kd.TEACHER_WEIGHTS, (MODEL_NAME,))
        logger.info(f"Loading teacher image encoder ({kd.TEACHER_NAME}) from {file}")
        design = teacher_vision_design(sd, file)
        logger.info(
            f"Teacher vision prompts (from the checkpoint): depth {design['vision_depth']}, "
            f"{design['vision_ctx']} tokens"
        )
        recorded = self.class_vectors.teacher_backbone
        if recorded and recorded != kd.TEACHER_NAME and clip.clip.source_kind(recorded) != "openai":
            raise CheckpointMismatchError(
                f"the class vectors come from teacher {recorded!r}, but TRAINER.PROMPTKD."
                f"TEACHER_NAME is {kd.TEACHER_NAME!r}; set it to {recorded!r} (a converted "
                "teacher's architecture is read from that name, not from the checkpoint)"
            )
        visual = build_teacher_visual(sd, design, file, kd.TEACHER_NAME)
        if "logit_scale" not in sd:
            raise CheckpointMismatchError(f"Teacher checkpoint {file} has no logit_scale")
        return visual, float(sd["logit_scale"].float().exp())

    def build_distiller(self) -> Distiller:
        """Frozen teacher image tower + the class vectors."""
        visual, scale = self.teacher_image_tower()
        self.class_vectors.validate(dim=visual.output_dim)
        visual.to(self.precision.frozen_dtype)
        distiller = Distiller(visual, self.class_vectors.vectors, scale, self.kd_loss)
        return distiller.to(self.device)

    # ------------------------------------------------------------------ training
    def before_train(self) -> None:
        super().before_train()
        if self.start_epoch >= self.max_epoch:
            return
        if self.cfg.TRAINER.PROMPTKD.TEACHER_CACHE:
            self.teacher_cache = self.open_teacher_cache()
        else:
            self.distiller = self.build_distiller()

    def teacher_fingerprint(self) -> str:
        """What identifies the teacher image tower, in ``teacher_image_tower``'s precedence."""
        kd = self.cfg.TRAINER.PROMPTKD
        if is_clip_reference(kd.TEACHER_WEIGHTS):
            path = kd.TEACHER_WEIGHTS
            return sha256_file(path) if os.path.isfile(path) else f"clip:{path}"
        if self.class_vectors.vision_prompts is not None:  # covered by the class-vector hash
            return f"vision prompts of the class vectors on {kd.TEACHER_NAME}"
        return sha256_file(resolve_teacher_checkpoint(kd.TEACHER_WEIGHTS, (MODEL_NAME,)))

    def open_teacher_cache(self) -> TeacherCache:
        """Validate (or build the missing shards of) the teacher cache; replay its views."""
        cfg = self.cfg
        kd = cfg.TRAINER.PROMPTKD
        source = self.train_data_source()
        pipeline = ViewPipeline.from_cfg(cfg)
        spec = CacheSpec(
            dataset=cfg.DATASET.NAME,
            num_items=len(source),
            items_sha256=items_sha256([d.impath for d in source]),
            teacher_sha256=self.teacher_fingerprint(),
            class_vectors_sha256=sha256_file(self.class_vectors.path),
            transform=pipeline.fingerprint(),
            views=int(kd.TEACHER_CACHE_VIEWS),
            seed=max(int(cfg.SEED), 0),
            dim=self.class_vectors.dim,
            dtype=kd.TEACHER_CACHE_DTYPE,
        )
        directory = kd.TEACHER_CACHE
        if missing_shards(directory, spec):
            distiller = self.build_distiller()
            prepare_cache_dir(directory, spec, distiller.logit_scale)

            def features(images: torch.Tensor) -> torch.Tensor:
                with self.precision.autocast():
                    return distiller.teacher_features(images)

            build_shards(
                directory,
                spec,
                source,
                pipeline,
                features,
                cfg.DATALOADER.TRAIN_X.BATCH_SIZE,
                dist.get_rank(),
                dist.get_world_size(),
                cfg.DATALOADER.NUM_WORKERS,
                self.device,
            )
            del distiller
        dist.barrier()
        cache = TeacherCache.open(directory, spec)
        logger.info(
            f"Student epochs replay {spec.views} cached teacher views per image from {directory}"
        )
        dl = cfg.DATALOADER
        self.train_loader_x = build_data_loader(
            cfg,
            sampler_type=dl.TRAIN_X.SAMPLER,
            data_source=source,
            batch_size=dl.TRAIN_X.BATCH_SIZE,
            n_domain=dl.TRAIN_X.N_DOMAIN,
            n_ins=dl.TRAIN_X.N_INS,
            is_train=True,
            dataset_wrapper=functools.partial(ReplayDatasetWrapper, pipeline=pipeline, cache=cache),
            generator=self.dm.train_generator,
        )
        return cache

    def parse_batch_train(self, batch: dict[str, Any]) -> torch.Tensor:
        """Images only: the student never sees labels."""
        return batch["img"].to(self.device)

    def teacher_logits(self, images: torch.Tensor, batch: dict[str, Any]) -> torch.Tensor:
        """Soft labels for ``images``: the teacher's, or its cached outputs for (index, view)."""
        if self.teacher_cache is not None:
            cache = self.teacher_cache
            feats = cache.features(batch["index"], batch["view"]).to(self.device)
            with self.precision.autocast():
                return (cache.logit_scale * feats @ self.vectors.t()).float()
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
        loss = self.cfg.TRAINER.PROMPTKD.KD_WEIGHT * self.kd_loss(s_logits, t_logits.detach())
        terms = {"loss_kd": loss, "student_logits_max": s_logits.detach().abs().max()}
        self.model_backward_and_update(loss, terms=terms)
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


@TRAINER_REGISTRY.register(builtin=True)
class PromptKD(PromptKDStudent):
    """Alias so upstream scripts' ``--trainer PromptKD`` run the student."""
