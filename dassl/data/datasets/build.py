"""The dataset registry: dataset files register with ``@DATASET_REGISTRY.register()``."""

from __future__ import annotations

from typing import Any

from dassl.utils.logger import get_logger
from dassl.utils.registry import Registry
from dassl.utils.tools import check_availability

__all__ = ["DATASET_REGISTRY", "build_dataset"]

logger = get_logger(__name__)

DATASET_REGISTRY = Registry("DATASET")


def build_dataset(cfg: Any) -> Any:
    """Instantiate ``cfg.DATASET.NAME``; an unknown name raises ValueError listing valid names."""
    avai_datasets = DATASET_REGISTRY.registered_names()
    check_availability(cfg.DATASET.NAME, avai_datasets)
    if cfg.VERBOSE:
        logger.info(f"Loading dataset: {cfg.DATASET.NAME}")
    return DATASET_REGISTRY.get(cfg.DATASET.NAME)(cfg)
