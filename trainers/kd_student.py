"""A compact non-CLIP student (e.g. ResNet-18) distilled from a CLIP teacher's class vectors.

What the data-free literature distils into: a plain image backbone, a projector onto the
teacher's class-vector space, and the L2-normalised projection scored against the pre-stored
class vectors with a learnable logit scale::

    logits = exp(s) * normalize(projector(backbone(x))) @ V^T

Everything else is :class:`~trainers.promptkd_student.PromptKDStudent`'s: the same
``TRAINER.PROMPTKD`` keys (teacher, class vectors, KD loss, temperature, weight, projector),
the same :class:`~trainers.distillation.Distiller`, the same image source
(``TRAIN_SOURCE``: e.g. a synthesized folder; labels are never read), the same evaluation and
``results.json``. Unlike the prompt student, the whole backbone trains.

Backbones (``MODEL.BACKBONE.NAME``): any torchvision classification model by name
(``resnet18``, ``mobilenet_v3_small``, ...; its last Linear layer is dropped) or ``tiny_cnn``
(three conv blocks, for the 32x32 toy world). Weights never come from the network:
``MODEL.INIT_WEIGHTS`` (a local ``.pth``/``.safetensors`` state dict of the torchvision model),
else torchvision's own cache (``$TORCH_HOME/hub/checkpoints``) when ``MODEL.BACKBONE.PRETRAINED``
is true, else random initialisation (logged).
"""

from __future__ import annotations

import math
import os

import torch
from torch import nn

from dassl.engine import TRAINER_REGISTRY
from dassl.optim import build_lr_scheduler, build_optimizer
from dassl.utils.logger import get_logger

from .class_vectors import load_class_vectors
from .distillation import KDLoss
from .projector import build_projector
from .promptkd_student import PromptKDStudent
from .results import full_class_info

__all__ = ["KDStudent", "KDStudentModel", "TinyCNN", "build_backbone", "MODEL_NAME"]

logger = get_logger(__name__)

MODEL_NAME = "KDStudent"
_MAX_LOGIT_SCALE = math.log(100.0)


class TinyCNN(nn.Module):
    """Three conv-BN-ReLU blocks and global average pooling: a small student for 32x32 images."""

    def __init__(self, width: int = 32):
        super().__init__()

        def block(c_in: int, c_out: int) -> list[nn.Module]:
            return [
                nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
                nn.BatchNorm2d(c_out),
                nn.ReLU(),
            ]

        self.features = nn.Sequential(
            *block(3, width),
            nn.MaxPool2d(2),
            *block(width, 2 * width),
            nn.MaxPool2d(2),
            *block(2 * width, 4 * width),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.output_dim = 4 * width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)


def _read_state_dict(path: str) -> dict[str, torch.Tensor]:
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file

        return load_file(path)
    sd = torch.load(path, map_location="cpu", weights_only=True)
    return sd.get("state_dict", sd) if isinstance(sd, dict) else sd


def _torchvision_cache_file(name: str) -> str | None:
    """torchvision's cached file of ``name``'s default weights, if it is on disk."""
    import torchvision

    try:
        url = torchvision.models.get_model_weights(name).DEFAULT.url
    except (ValueError, AttributeError):
        return None
    path = os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(url))
    return path if os.path.isfile(path) else None


def _drop_last_linear(model: nn.Module) -> int:
    """Replace the model's last ``nn.Linear`` (its classifier) by Identity; return its in-dim."""
    linears = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError(f"{type(model).__name__} has no Linear classifier to replace")
    name, layer = linears[-1]
    parent = model.get_submodule(name.rsplit(".", 1)[0]) if "." in name else model
    setattr(parent, name.rsplit(".", 1)[-1], nn.Identity())
    return layer.in_features


def build_backbone(name: str, init_weights: str = "", pretrained: bool = False) -> nn.Module:
    """A feature extractor with ``output_dim`` (see the module docstring for the weight rule)."""
    if name == "tiny_cnn":
        model = TinyCNN()
        if init_weights:
            model.load_state_dict(_read_state_dict(init_weights))
        return model
    import torchvision

    available = torchvision.models.list_models(module=torchvision.models)
    if name not in available:
        raise ValueError(
            f"Unknown KDStudent backbone {name!r} (MODEL.BACKBONE.NAME); use 'tiny_cnn' or a "
            f"torchvision classification model, e.g. resnet18 (all: {sorted(available)})"
        )
    model = torchvision.models.get_model(name, weights=None)
    source = init_weights or (_torchvision_cache_file(name) if pretrained else None)
    if init_weights and not os.path.isfile(init_weights):
        raise FileNotFoundError(f"MODEL.INIT_WEIGHTS {init_weights} does not exist")
    if source:
        model.load_state_dict(_read_state_dict(source))  # strict
        logger.info(f"Backbone {name}: weights from {source}")
    else:
        reason = "not in torchvision's cache" if pretrained else "MODEL.BACKBONE.PRETRAINED False"
        logger.warning(
            f"Backbone {name}: random initialisation ({reason}; set MODEL.INIT_WEIGHTS to a local "
            "state dict to start from pretrained weights)"
        )
    model.output_dim = _drop_last_linear(model)
    return model


class KDStudentModel(nn.Module):
    """Backbone + projector; ``forward`` returns L2-normalised features in class-vector space."""

    def __init__(self, backbone: nn.Module, projector: nn.Module, init_logit_scale: float):
        super().__init__()
        self.backbone = backbone
        self.projector = projector
        self.logit_scale = nn.Parameter(torch.tensor(math.log(init_logit_scale)))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        feats = self.projector(self.backbone(images)).float()
        with torch.no_grad():
            self.logit_scale.clamp_(max=_MAX_LOGIT_SCALE)
        return feats / feats.norm(dim=-1, keepdim=True)


@TRAINER_REGISTRY.register(builtin=True)
class KDStudent(PromptKDStudent):
    """Plain backbone student (``MODEL.BACKBONE.NAME``) distilled like PromptKDStudent."""

    def build_model(self) -> None:
        cfg = self.cfg
        kd = cfg.TRAINER.PROMPTKD
        names, _, _, _ = full_class_info(self.dm.dataset)
        self.class_vectors = load_class_vectors(self.class_vectors_path(), classnames=names)
        logger.info(
            f"Class vectors: {self.class_vectors.num_classes} classes x {self.class_vectors.dim} "
            f"from {self.class_vectors.path} (teacher {self.class_vectors.teacher_backbone})"
        )
        backbone = build_backbone(
            cfg.MODEL.BACKBONE.NAME, cfg.MODEL.INIT_WEIGHTS, bool(cfg.MODEL.BACKBONE.PRETRAINED)
        )
        projector = build_projector(
            kd.PROJECTOR, backbone.output_dim, self.class_vectors.dim, kd.PROJECT_LAYER
        )
        self.model = KDStudentModel(backbone, projector, init_logit_scale=1 / 0.07).to(self.device)
        n_params = sum(p.numel() for p in self.model.parameters())
        logger.info(f"KDStudent {cfg.MODEL.BACKBONE.NAME}: {n_params:,} trainable parameters")
        self.optim = build_optimizer(self.model, cfg.OPTIM)
        self.sched = build_lr_scheduler(self.optim, cfg.OPTIM)
        self.register_model(MODEL_NAME, self.model, self.optim, self.sched)
        self.vectors = self.class_vectors.vectors.to(self.device)
        self.kd_loss = KDLoss(kd.TEMPERATURE, kd.KD_NORM)
        self.distiller = None
