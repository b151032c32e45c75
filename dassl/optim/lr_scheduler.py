"""``build_lr_scheduler(optimizer, optim_cfg)`` with resumable warm-up wrappers (spec 6.2).

With W = WARMUP_EPOCH and e = number of ``step()`` calls so far, the warm-up wrappers give
lr(e) = warm-up value for e < W (constant: WARMUP_CONS_LR; linear: WARMUP_MIN_LR at e = 0,
LR * e / W after), the successor's initial lr at e = W, and from then on forward ``step()`` to
the successor, i.e. epoch e >= W follows the successor's schedule at e - W (with the default
WARMUP_RECOUNT=True).

Unlike upstream (spec P1/P2): no ``verbose`` argument (removed in torch 2.7), and
``state_dict()`` nests the successor's own ``state_dict()`` instead of pickling the successor
object (and with it the optimizer), so the state loads with ``torch.load(weights_only=True)``
and ``load_state_dict`` restores the *live* successor: a resumed run continues exactly.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.optim.lr_scheduler import LRScheduler

__all__ = [
    "AVAI_SCHEDS",
    "ConstantWarmupScheduler",
    "LinearWarmupScheduler",
    "build_lr_scheduler",
]

AVAI_SCHEDS = ["single_step", "multi_step", "cosine"]


class _BaseWarmupScheduler(LRScheduler):
    """Warm up for ``warmup_epoch`` steps, then hand over to ``successor``."""

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        successor: LRScheduler,
        warmup_epoch: int,
        last_epoch: int = -1,
    ) -> None:
        if successor.optimizer is not optimizer:
            raise ValueError("the successor scheduler must drive the same optimizer")
        self.successor = successor
        self.warmup_epoch = warmup_epoch
        super().__init__(optimizer, last_epoch)

    def _warmup_lr(self) -> list[float]:
        raise NotImplementedError

    def get_lr(self) -> list[float]:  # type: ignore[override]
        if self.last_epoch >= self.warmup_epoch:
            return list(self.successor.get_last_lr())
        return self._warmup_lr()

    def step(self, epoch: int | None = None) -> None:
        if epoch is not None:
            raise TypeError(
                "step(epoch) is not supported by the warm-up schedulers; call step() once per epoch"
            )
        if self.last_epoch >= self.warmup_epoch:
            self.successor.step()
            self._last_lr = list(self.successor.get_last_lr())
        else:
            super().step()

    def state_dict(self) -> dict[str, Any]:
        """Plain state (numbers/lists) plus the successor's own state dict under "successor"."""
        state = {k: v for k, v in self.__dict__.items() if k not in ("optimizer", "successor")}
        state["successor"] = self.successor.state_dict()
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        state = dict(state_dict)
        successor_state = state.pop("successor", None)
        if not isinstance(successor_state, dict):
            raise TypeError(
                "warm-up scheduler state has no nested 'successor' state dict (got "
                f"{type(successor_state).__name__}); a state saved by upstream Dassl pickles the "
                "successor object and cannot be resumed exactly: restart the schedule instead"
            )
        self.__dict__.update(state)
        self.successor.load_state_dict(successor_state)


class ConstantWarmupScheduler(_BaseWarmupScheduler):
    """lr = ``cons_lr`` during the first ``warmup_epoch`` epochs."""

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        successor: LRScheduler,
        warmup_epoch: int,
        cons_lr: float,
        last_epoch: int = -1,
    ) -> None:
        self.cons_lr = cons_lr
        super().__init__(optimizer, successor, warmup_epoch, last_epoch)

    def _warmup_lr(self) -> list[float]:
        return [self.cons_lr for _ in self.base_lrs]


class LinearWarmupScheduler(_BaseWarmupScheduler):
    """lr = ``min_lr`` at epoch 0, then ``base_lr * e / warmup_epoch`` until the hand-over."""

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        successor: LRScheduler,
        warmup_epoch: int,
        min_lr: float,
        last_epoch: int = -1,
    ) -> None:
        self.min_lr = min_lr
        super().__init__(optimizer, successor, warmup_epoch, last_epoch)

    def _warmup_lr(self) -> list[float]:
        if self.last_epoch == 0:
            return [self.min_lr for _ in self.base_lrs]
        return [lr * self.last_epoch / self.warmup_epoch for lr in self.base_lrs]


def build_lr_scheduler(optimizer: torch.optim.Optimizer, optim_cfg: Any) -> LRScheduler:
    """Build the scheduler of ``optim_cfg.LR_SCHEDULER`` (stepped once per epoch)."""
    name = optim_cfg.LR_SCHEDULER
    stepsize = optim_cfg.STEPSIZE
    gamma = optim_cfg.GAMMA
    max_epoch = optim_cfg.MAX_EPOCH

    if name not in AVAI_SCHEDS:
        raise ValueError(f"OPTIM.LR_SCHEDULER must be one of {AVAI_SCHEDS}, but got {name!r}")

    if name == "single_step":
        if isinstance(stepsize, (list, tuple)):
            stepsize = stepsize[-1]
        if not isinstance(stepsize, int) or isinstance(stepsize, bool):
            raise TypeError(
                "For single_step lr_scheduler, OPTIM.STEPSIZE must be an int (or a list/tuple "
                f"ending with one), but got {type(stepsize).__name__} {stepsize!r}"
            )
        if stepsize <= 0:
            stepsize = max_epoch
        scheduler: LRScheduler = torch.optim.lr_scheduler.StepLR(
            optimizer, step_size=stepsize, gamma=gamma
        )
    elif name == "multi_step":
        if not isinstance(stepsize, (list, tuple)):
            raise TypeError(
                "For multi_step lr_scheduler, OPTIM.STEPSIZE must be a list/tuple, but got "
                f"{type(stepsize).__name__} {stepsize!r}"
            )
        scheduler = torch.optim.lr_scheduler.MultiStepLR(
            optimizer, milestones=list(stepsize), gamma=gamma
        )
    else:
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=float(max_epoch))

    if optim_cfg.WARMUP_EPOCH > 0:
        if not optim_cfg.WARMUP_RECOUNT:
            scheduler.last_epoch = optim_cfg.WARMUP_EPOCH
        if optim_cfg.WARMUP_TYPE == "constant":
            scheduler = ConstantWarmupScheduler(
                optimizer, scheduler, optim_cfg.WARMUP_EPOCH, optim_cfg.WARMUP_CONS_LR
            )
        elif optim_cfg.WARMUP_TYPE == "linear":
            scheduler = LinearWarmupScheduler(
                optimizer, scheduler, optim_cfg.WARMUP_EPOCH, optim_cfg.WARMUP_MIN_LR
            )
        else:
            raise ValueError(
                "OPTIM.WARMUP_TYPE must be 'constant' or 'linear', but got "
                f"{optim_cfg.WARMUP_TYPE!r}"
            )
    return scheduler
