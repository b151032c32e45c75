"""The trainer registry: trainer files register with ``@TRAINER_REGISTRY.register()``.

A trainer brings its config keys with it (``config_defaults`` / ``add_config`` on the class):
:func:`add_trainer_configs` adds those of every trainer class, so importing a trainer module is
the only step needed to use it.
"""

from __future__ import annotations

from typing import Any

from yacs.config import CfgNode as CN

from dassl.utils.logger import get_logger
from dassl.utils.registry import Registry
from dassl.utils.tools import check_availability

__all__ = ["TRAINER_REGISTRY", "build_trainer", "add_config_defaults", "add_trainer_configs"]

logger = get_logger(__name__)

TRAINER_REGISTRY = Registry("TRAINER")


def _node(parent: Any, name: str) -> Any:
    if name not in parent:
        parent[name] = CN()
    return parent[name]


def add_config_defaults(cfg: Any, defaults: dict[str, Any]) -> Any:
    """Add ``{"A.B": {"KEY": value}}`` (node keys) or ``{"A.KEY": value}`` entries to ``cfg``.

    Existing keys are never overwritten, so trainers sharing a node (e.g. ``TRAINER.PROMPTSRC``
    read by PromptSRC and PromptKDTeacher) may each declare it.
    """
    for dotted, value in defaults.items():
        *parents, leaf = dotted.split(".")
        node = cfg
        for name in parents:
            node = _node(node, name)
        if isinstance(value, dict):
            sub = _node(node, leaf)
            for key, v in value.items():
                if key not in sub:
                    sub[key] = v
        elif leaf not in node:
            node[leaf] = value
    return cfg


def _trainer_classes() -> list[type]:
    from .trainer import TrainerBase

    seen: dict[type, None] = {}
    stack = [TrainerBase]
    while stack:
        cls = stack.pop(0)
        for sub in cls.__subclasses__():
            if sub not in seen:
                seen[sub] = None
                stack.append(sub)
    for _, cls in TRAINER_REGISTRY:
        seen.setdefault(cls, None)
    return list(seen)


def add_trainer_configs(cfg: Any) -> Any:
    """Add the config keys (``cls.add_config(cfg)``) of every trainer class defined so far.

    Registered or not: a trainer file written for the upstream code base may take the name of
    one of ours in the registry and still read the config node our class declares.
    """
    for cls in _trainer_classes():
        add = getattr(cls, "add_config", None)
        if add is not None:
            add(cfg)
    return cfg


def build_trainer(cfg: Any) -> Any:
    """Instantiate ``cfg.TRAINER.NAME``; an unknown name raises ValueError listing valid names."""
    avai_trainers = TRAINER_REGISTRY.registered_names()
    check_availability(cfg.TRAINER.NAME, avai_trainers)
    if cfg.VERBOSE:
        logger.info(f"Loading trainer: {cfg.TRAINER.NAME}")
    return TRAINER_REGISTRY.get(cfg.TRAINER.NAME)(cfg)
