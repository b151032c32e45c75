"""The trainer registry: trainer files register with ``@TRAINER_REGISTRY.register()``."""

from __future__ import annotations

from typing import Any

from dassl.utils.logger import get_logger
from dassl.utils.registry import Registry
from dassl.utils.tools import check_availability

__all__ = ["TRAINER_REGISTRY", "build_trainer"]

logger = get_logger(__name__)

TRAINER_REGISTRY = Registry("TRAINER")


def build_trainer(cfg: Any) -> Any:
    """Instantiate ``cfg.TRAINER.NAME``; an unknown name raises ValueError listing valid names."""
    avai_trainers = TRAINER_REGISTRY.registered_names()
    check_availability(cfg.TRAINER.NAME, avai_trainers)
    if cfg.VERBOSE:
        logger.info(f"Loading trainer: {cfg.TRAINER.NAME}")
    return TRAINER_REGISTRY.get(cfg.TRAINER.NAME)(cfg)
