"""Precision: the one place that knows fp32 / fp16 / amp / bf16 and the device.

=====  =============  ================  ======================  ===========
name   frozen weights  trainable params  autocast                grad scaler
=====  =============  ================  ======================  ===========
fp32   fp32           fp32              off                     no
fp16   fp16 (CUDA)    fp32 (master)     fp16 (CUDA)             yes (CUDA)
amp    fp32           fp32              fp16 CUDA / bf16 CPU    CUDA only
bf16   bf16           fp32              bf16                    no
=====  =============  ================  ======================  ===========

On CPU ``fp16`` falls back to ``fp32`` with one warning (CPU half matmuls are slow or missing).
Trainers never branch on the name: they use ``frozen_dtype``, ``autocast()`` and the engine's
``model_backward_and_update`` (which calls :meth:`Precision.backward` / :meth:`Precision.step`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import torch

from dassl.utils.logger import get_logger

__all__ = ["PRECISIONS", "Precision", "cast_frozen", "resolve_device"]

logger = get_logger(__name__)

PRECISIONS = ("fp32", "fp16", "amp", "bf16")


def resolve_device(use_cuda: bool = True) -> torch.device:
    """The device of this process: its local GPU under torchrun, ``cuda`` or ``cpu``.

    ``use_cuda`` is ``cfg.USE_CUDA``. Every trainer and tool resolves its device here.
    """
    if not (use_cuda and torch.cuda.is_available()):
        return torch.device("cpu")
    from dassl.engine import distributed as dist_utils

    if dist_utils.get_world_size() > 1:
        return torch.device("cuda", dist_utils.get_local_rank())
    return torch.device("cuda")


def cast_frozen(module: torch.nn.Module, dtype: torch.dtype) -> torch.nn.Module:
    """Cast ``module`` to ``dtype`` (``Precision.frozen_dtype``) but keep trainable parameters
    in float32: they are the master weights the optimizer steps."""
    module.to(dtype)
    for p in module.parameters():
        if p.requires_grad:
            p.data = p.data.float()
    return module


class Precision:
    """Resolved precision policy for one device (see the module table)."""

    def __init__(
        self,
        name: str,
        device: torch.device | str,
        frozen_dtype: torch.dtype,
        autocast_dtype: torch.dtype | None,
        use_scaler: bool,
        requested: str | None = None,
    ):
        self.name = name
        self.requested = requested or name
        self.device = torch.device(device)
        self.frozen_dtype = frozen_dtype
        self.autocast_dtype = autocast_dtype
        self.scaler = torch.amp.GradScaler("cuda") if use_scaler else None

    @classmethod
    def from_name(cls, name: str, device: torch.device | str) -> Precision:
        """Resolve ``name`` (case-insensitive) for ``device``; unknown names raise ValueError."""
        key = str(name).lower()
        if key not in PRECISIONS:
            raise ValueError(f'Unknown precision "{name}"; choose from {list(PRECISIONS)}')
        device = torch.device(device)
        cuda = device.type == "cuda"
        if key == "fp16" and not cuda:
            logger.warning(
                'Precision "fp16" needs CUDA; running in fp32 on %s (set PREC to "fp32", '
                '"amp" or "bf16" to silence this)',
                device.type,
            )
            return cls("fp32", device, torch.float32, None, False, requested="fp16")
        if key == "fp32":
            return cls("fp32", device, torch.float32, None, False)
        if key == "fp16":
            return cls("fp16", device, torch.float16, torch.float16, True)
        if key == "amp":
            return cls(
                "amp", device, torch.float32, torch.float16 if cuda else torch.bfloat16, cuda
            )
        return cls("bf16", device, torch.bfloat16, torch.bfloat16, False)

    @contextlib.contextmanager
    def autocast(self) -> Iterator[None]:
        """Context for forward passes (a no-op in fp32)."""
        if self.autocast_dtype is None:
            yield
            return
        with torch.autocast(device_type=self.device.type, dtype=self.autocast_dtype):
            yield

    def uses_scaler(self, optimizers: Iterable[torch.optim.Optimizer] = ()) -> bool:
        """Whether the grad scaler applies to ``optimizers``.

        A scaler can only unscale fp32 gradients; upstream trainer files keep their trainable
        prompts in fp16 and step them unscaled, so any non-fp32 parameter disables it.
        """
        if self.scaler is None:
            return False
        for optim in optimizers:
            if optim is None:
                continue
            for group in optim.param_groups:
                if any(p.dtype != torch.float32 for p in group["params"]):
                    return False
        return True

    def backward(
        self, loss: torch.Tensor, optimizers: Iterable[torch.optim.Optimizer] = ()
    ) -> None:
        """Backward, scaled when the grad scaler applies to ``optimizers``."""
        if self.uses_scaler(optimizers):
            self.scaler.scale(loss).backward()
        else:
            loss.backward()

    def step(self, optimizers: Iterable[torch.optim.Optimizer]) -> None:
        """Step every optimizer (through the scaler, which may skip inf/NaN steps)."""
        optimizers = [o for o in optimizers if o is not None]
        if not self.uses_scaler(optimizers):
            for optim in optimizers:
                optim.step()
            return
        for optim in optimizers:
            self.scaler.step(optim)
        self.scaler.update()

    def backward_and_step(
        self,
        loss: torch.Tensor,
        optimizers: Iterable[torch.optim.Optimizer],
        before_step: Callable[[], None] | None = None,
    ) -> None:
        """``backward(loss)``, then ``before_step()`` (e.g. gradient all-reduce), then step."""
        optimizers = [o for o in optimizers if o is not None]
        self.backward(loss, optimizers)
        if before_step is not None:
            before_step()
        self.step(optimizers)

    def state_dict(self) -> dict[str, Any]:
        """Grad-scaler state (empty without a scaler), for exact resume."""
        out: dict[str, Any] = {"name": self.name}
        if self.scaler is not None:
            out["scaler"] = self.scaler.state_dict()
        return out

    def load_state_dict(self, state: dict[str, Any] | None) -> None:
        if not state:
            return
        if self.scaler is not None and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])

    def __repr__(self) -> str:
        extra = f", requested={self.requested!r}" if self.requested != self.name else ""
        return f"Precision({self.name!r}, device={self.device}{extra})"
