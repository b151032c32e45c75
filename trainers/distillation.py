"""Knowledge distillation as a module that owns a frozen teacher.

``KDLoss`` is PromptKD's temperature-scaled KL(teacher || student) * T^2. Normalisation:

- ``"official"`` (default, parity with upstream): ``kl_div(reduction="sum") / (B * C)``, i.e.
  ``batchmean / C`` with C = number of classes scored. The effective weight of ``KD_WEIGHT``
  therefore shrinks with the class count (promptkd_facts.md, defect 3).
- ``"batchmean"``: the mathematically standard per-sample KL; ``official = batchmean / C``.

``Distiller`` owns the frozen teacher IMAGE tower (with its trained vision prompts) and the
pre-stored class vectors; it never has a text tower. It is frozen at construction
(``requires_grad=False``), stays in eval mode even when a trainer calls ``.train()`` on it, runs
under ``torch.no_grad()`` and must never be DDP-wrapped. Trainers obtain soft labels through
:meth:`Distiller.teacher_logits`, which is the seam for a later teacher-output cache.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["KDLoss", "KD_NORMALIZATIONS", "Distiller"]

KD_NORMALIZATIONS = ("official", "batchmean")


class KDLoss(nn.Module):
    """``T^2 * KL(softmax(t/T) || softmax(s/T))`` with the chosen normalisation."""

    def __init__(self, temperature: float = 1.0, normalization: str = "official"):
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"TRAINER.PROMPTKD.TEMPERATURE must be > 0, got {temperature}")
        if normalization not in KD_NORMALIZATIONS:
            raise ValueError(
                f"Unknown KD normalisation {normalization!r} (TRAINER.PROMPTKD.KD_NORM); "
                f"choose one of {list(KD_NORMALIZATIONS)}"
            )
        self.temperature = float(temperature)
        self.normalization = normalization

    def forward(self, student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
        t = self.temperature
        log_s = F.log_softmax(student_logits.float() / t, dim=1)
        log_t = F.log_softmax(teacher_logits.float() / t, dim=1)
        kl = F.kl_div(log_s, log_t, reduction="sum", log_target=True) * (t * t)
        if self.normalization == "official":
            return kl / student_logits.numel()
        return kl / student_logits.shape[0]


class Distiller(nn.Module):
    """Frozen teacher image tower + class vectors -> teacher logits (soft labels).

    Args:
        teacher_visual: the teacher's image encoder (e.g. ``clip.model.build_visual(...)``),
            already carrying its trained vision prompts.
        class_vectors: (C, D) L2-normalised teacher text features of all classes.
        logit_scale: the teacher's ``logit_scale.exp()``.
        kd_loss: the loss comparing student and teacher logits.
    """

    def __init__(
        self,
        teacher_visual: nn.Module,
        class_vectors: torch.Tensor,
        logit_scale: float,
        kd_loss: KDLoss,
    ):
        super().__init__()
        self.teacher = teacher_visual
        self.register_buffer("class_vectors", class_vectors.detach().float().clone())
        self.logit_scale = float(logit_scale)
        self.kd_loss = kd_loss
        for p in self.teacher.parameters():
            p.requires_grad_(False)
        super().train(False)

    def train(self, mode: bool = True) -> Distiller:
        """The teacher is always in eval mode (dropout/BN frozen), whatever the trainer asks."""
        return super().train(False)

    @torch.no_grad()
    def teacher_features(self, images: torch.Tensor) -> torch.Tensor:
        """L2-normalised teacher image features (float32)."""
        dtype = next(self.teacher.parameters()).dtype
        feats = self.teacher(images.to(dtype)).float()
        return feats / feats.norm(dim=-1, keepdim=True)

    @torch.no_grad()
    def teacher_logits(
        self, images: torch.Tensor, class_range: range | None = None
    ) -> torch.Tensor:
        """Teacher logits against the class vectors (all classes, or ``class_range``)."""
        vectors = self.class_vectors
        if class_range is not None:
            vectors = vectors[class_range.start : class_range.stop]
        return self.logit_scale * self.teacher_features(images) @ vectors.t()

    def forward(self, student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
        """KD loss of ``student_logits`` against (detached) ``teacher_logits``."""
        return self.kd_loss(student_logits, teacher_logits.detach())
