"""PromptSRC self-regulating losses and Gaussian-weighted prompt aggregation (GPA).

PromptSRC (Khattak et al., ICCV 2023) trains prompts with cross-entropy plus three
self-consistency terms against the frozen zero-shot CLIP:

- ``L_text``  = mean |t_prompted - t_frozen| (L1, mean over all elements), where the frozen text
  feature of a class is the mean over a template ensemble, L2-normalised;
- ``L_image`` = mean |v_prompted - v_frozen| (L1) of L2-normalised image features;
- ``L_logits`` = KL(p_zero-shot || p_prompted) summed and divided by the number of logits
  (``B * C``), i.e. upstream's ``kl_div(..., reduction="sum") / logits.numel()``.

Total = CE + L_logits + TEXT_LOSS_WEIGHT * L_text + IMAGE_LOSS_WEIGHT * L_image (the KL weight
is 1 upstream). GPA averages the prompt weights reached at the end of every epoch with weights
``N(e; GPA_MEAN, GPA_STD)`` for epochs ``e = 1..MAX_EPOCH``, normalised to sum to 1.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "scl_text_loss",
    "scl_image_loss",
    "scl_logits_loss",
    "PromptSRCLoss",
    "gpa_weights",
    "GaussianPromptAggregator",
]


def scl_text_loss(text_features: torch.Tensor, frozen_text_features: torch.Tensor) -> torch.Tensor:
    """L1 (mean) between prompted and frozen (template-ensemble) normalised text features."""
    return F.l1_loss(text_features.float(), frozen_text_features.float(), reduction="mean")


def scl_image_loss(
    image_features: torch.Tensor, frozen_image_features: torch.Tensor
) -> torch.Tensor:
    """L1 (mean) between prompted and frozen normalised image features."""
    return F.l1_loss(image_features.float(), frozen_image_features.float(), reduction="mean")


def scl_logits_loss(logits: torch.Tensor, zero_shot_logits: torch.Tensor) -> torch.Tensor:
    """KL(zero-shot || prompted), summed then divided by ``logits.numel()`` (upstream form)."""
    log_p = F.log_softmax(logits.float(), dim=1)
    log_q = F.log_softmax(zero_shot_logits.float(), dim=1)
    return F.kl_div(log_p, log_q, reduction="sum", log_target=True) / logits.numel()


class PromptSRCLoss(nn.Module):
    """CE + the three SCL terms; returns a dict of named losses with the total under ``"loss"``."""

    def __init__(
        self, text_weight: float = 25.0, image_weight: float = 10.0, logits_weight: float = 1.0
    ):
        super().__init__()
        self.text_weight = float(text_weight)
        self.image_weight = float(image_weight)
        self.logits_weight = float(logits_weight)

    def forward(
        self,
        logits: torch.Tensor,
        labels: torch.Tensor,
        text_features: torch.Tensor,
        frozen_text_features: torch.Tensor,
        image_features: torch.Tensor,
        frozen_image_features: torch.Tensor,
        zero_shot_logits: torch.Tensor,
    ) -> dict[str, torch.Tensor]:
        ce = F.cross_entropy(logits.float(), labels)
        l_text = scl_text_loss(text_features, frozen_text_features) * self.text_weight
        l_image = scl_image_loss(image_features, frozen_image_features) * self.image_weight
        l_logits = scl_logits_loss(logits, zero_shot_logits) * self.logits_weight
        total = ce + l_text + l_image + l_logits
        return {
            "loss": total,
            "loss_ce": ce,
            "loss_scl_text": l_text,
            "loss_scl_image": l_image,
            "loss_scl_logits": l_logits,
        }


def gpa_weights(max_epoch: int, mean: float, std: float) -> list[float]:
    """Normalised Gaussian weights of epochs ``1..max_epoch`` (index 0 = first epoch)."""
    if max_epoch < 1:
        raise ValueError(f"OPTIM.MAX_EPOCH must be >= 1 for GPA, got {max_epoch}")
    if std <= 0:
        raise ValueError(f"TRAINER.PROMPTSRC.GPA_STD must be > 0, got {std}")
    raw = [
        math.exp(-0.5 * ((e - mean) / std) ** 2) / (std * math.sqrt(2 * math.pi))
        for e in range(1, max_epoch + 1)
    ]
    total = sum(raw)
    if total == 0.0:  # every epoch is > ~38 std away from the mean
        raise ValueError(
            f"GPA weights underflow: GPA_MEAN={mean}, GPA_STD={std} put no weight on epochs "
            f"1..{max_epoch}; choose GPA_MEAN within the training epochs"
        )
    return [w / total for w in raw]


class GaussianPromptAggregator:
    """Running Gaussian-weighted sum of the trainable parameters at each epoch end.

    Only parameters with ``requires_grad`` are aggregated: frozen weights are constant, so
    their weighted sum is themselves (upstream sums the whole state dict, equal up to rounding).
    The running sum is kept in float32 on the parameters' device; ``state_dict`` makes it
    resumable.
    """

    def __init__(self, weights: list[float]):
        self.weights = list(weights)
        self.sum: dict[str, torch.Tensor] = {}
        self.epochs_seen: list[int] = []

    @torch.no_grad()
    def update(self, module: nn.Module, epoch: int) -> None:
        """Add ``weights[epoch] * param`` for every trainable parameter (epoch 0-based)."""
        w = self.weights[epoch]
        for name, p in module.named_parameters():
            if not p.requires_grad:
                continue
            term = p.detach().float() * w
            self.sum[name] = self.sum[name] + term if name in self.sum else term.clone()
        self.epochs_seen.append(epoch)

    @torch.no_grad()
    def apply(self, module: nn.Module) -> None:
        """Copy the aggregated values into ``module``'s trainable parameters."""
        if not self.sum:
            raise RuntimeError(
                "GPA has no aggregated epochs; call update() at each epoch end first"
            )
        params = dict(module.named_parameters())
        for name, value in self.sum.items():
            params[name].copy_(value.to(params[name].dtype))

    def state_dict(self) -> dict:
        return {
            "sum": {k: v.cpu() for k, v in self.sum.items()},
            "epochs_seen": list(self.epochs_seen),
        }

    def load_state_dict(self, state: dict, device: torch.device | str = "cpu") -> None:
        self.sum = {k: v.to(device) for k, v in state["sum"].items()}
        self.epochs_seen = list(state["epochs_seen"])
