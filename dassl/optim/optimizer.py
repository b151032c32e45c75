"""``build_optimizer(model, optim_cfg, param_groups=None)`` (spec 6.1)."""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from typing import Any

import torch
import torch.nn as nn

__all__ = ["AVAI_OPTIMS", "build_optimizer"]

AVAI_OPTIMS = ["adam", "amsgrad", "sgd", "rmsprop", "radam", "adamw"]


def _staged_groups(model: Any, optim_cfg: Any) -> list[dict[str, Any]]:
    """Two groups: children named in NEW_LAYERS at LR, the others at LR * BASE_LR_MULT."""
    if not isinstance(model, nn.Module):
        raise TypeError(
            "When OPTIM.STAGED_LR is True, the model given to build_optimizer() must be an "
            f"nn.Module, got {type(model).__name__}"
        )
    if isinstance(model, (nn.DataParallel, nn.parallel.DistributedDataParallel)):
        model = model.module
    new_layers = optim_cfg.NEW_LAYERS
    if isinstance(new_layers, str):
        new_layers = [new_layers]
    new_layers = list(new_layers) if new_layers is not None else []
    if not new_layers:
        warnings.warn(
            "OPTIM.STAGED_LR is True but OPTIM.NEW_LAYERS is empty: every layer gets the "
            "reduced lr LR * BASE_LR_MULT",
            stacklevel=3,
        )
    children = dict(model.named_children())
    missing = [n for n in new_layers if n not in children]
    if missing:
        raise ValueError(
            f"OPTIM.NEW_LAYERS names {missing}, which are not children of the model "
            f"(children: {sorted(children)})"
        )
    base_params, new_params = [], []
    for name, module in children.items():
        (new_params if name in new_layers else base_params).extend(module.parameters())
    return [
        {"params": base_params, "lr": optim_cfg.LR * optim_cfg.BASE_LR_MULT},
        {"params": new_params},
    ]


def build_optimizer(
    model: nn.Module | Iterable[Any], optim_cfg: Any, param_groups: list[dict] | None = None
) -> torch.optim.Optimizer:
    """Build the optimizer named by ``optim_cfg.NAME`` for ``model``.

    Args:
        model: an ``nn.Module`` or an iterable of parameters / param-group dicts. Frozen
            parameters are fine: they never get gradients.
        optim_cfg: the ``cfg.OPTIM`` node.
        param_groups: explicit groups; take precedence over ``model`` and STAGED_LR.
    """
    name = optim_cfg.NAME
    if name not in AVAI_OPTIMS:
        raise ValueError(f"OPTIM.NAME must be one of {AVAI_OPTIMS}, but got {name!r}")
    lr = optim_cfg.LR
    wd = optim_cfg.WEIGHT_DECAY

    if param_groups is not None:
        if optim_cfg.STAGED_LR:
            warnings.warn(
                "OPTIM.STAGED_LR is ignored because param_groups were given explicitly",
                stacklevel=2,
            )
        params: Any = param_groups
    elif optim_cfg.STAGED_LR:
        params = _staged_groups(model, optim_cfg)
    elif isinstance(model, nn.Module):
        params = model.parameters()
    else:
        params = model

    betas = (optim_cfg.ADAM_BETA1, optim_cfg.ADAM_BETA2)
    if name in ("adam", "amsgrad"):
        return torch.optim.Adam(
            params, lr=lr, weight_decay=wd, betas=betas, amsgrad=name == "amsgrad"
        )
    if name == "sgd":
        return torch.optim.SGD(
            params,
            lr=lr,
            momentum=optim_cfg.MOMENTUM,
            weight_decay=wd,
            dampening=optim_cfg.SGD_DAMPNING,
            nesterov=optim_cfg.SGD_NESTEROV,
        )
    if name == "rmsprop":
        return torch.optim.RMSprop(
            params,
            lr=lr,
            momentum=optim_cfg.MOMENTUM,
            weight_decay=wd,
            alpha=optim_cfg.RMSPROP_ALPHA,
        )
    if name == "radam":
        return torch.optim.RAdam(params, lr=lr, weight_decay=wd, betas=betas)
    return torch.optim.AdamW(params, lr=lr, weight_decay=wd, betas=betas)
