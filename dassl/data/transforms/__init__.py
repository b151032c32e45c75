"""Transform pipelines: ``build_transform(cfg, is_train, choices)`` and ``INTERPOLATION_MODES``."""

from .transforms import INTERPOLATION_MODES, build_transform

__all__ = ["INTERPOLATION_MODES", "build_transform"]
