"""The evaluator registry and its builder (name from ``cfg.TEST.EVALUATOR``)."""

from __future__ import annotations

from typing import Any

from dassl.utils import Registry, check_availability, get_logger

__all__ = ["EVALUATOR_REGISTRY", "build_evaluator"]

log = get_logger(__name__)

EVALUATOR_REGISTRY = Registry("EVALUATOR")


def build_evaluator(cfg: Any, **kwargs: Any) -> Any:
    """Instantiate the evaluator named by ``cfg.TEST.EVALUATOR`` with ``(cfg, **kwargs)``."""
    name = cfg.TEST.EVALUATOR
    check_availability(name, EVALUATOR_REGISTRY.registered_names())
    if cfg.VERBOSE:
        log.info("Loading evaluator: %s", name)
    return EVALUATOR_REGISTRY.get(name)(cfg, **kwargs)
