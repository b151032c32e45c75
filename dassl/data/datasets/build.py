"""The dataset registry: dataset files register with ``@DATASET_REGISTRY.register()``."""

from __future__ import annotations

from typing import Any

from dassl.utils.errors import InputFileNotFoundError, UserInputError
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
    try:
        return DATASET_REGISTRY.get(cfg.DATASET.NAME)(cfg)
    except FileNotFoundError as e:
        # A file system call of a (possibly upstream) dataset file found no data on disk: the
        # data is the user's input. Errors without a file name stay bugs with a traceback.
        if isinstance(e, UserInputError) or e.filename is None:
            raise
        raise InputFileNotFoundError(
            f'{cfg.DATASET.NAME}: "{e.filename}" not found ({e.strerror}); check --root / '
            f'DATASET.ROOT ("{cfg.DATASET.ROOT}") and the dataset layout in docs/DATASETS.md'
        ) from e
