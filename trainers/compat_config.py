"""Upstream ``extend_cfg`` keys that belong to no single trainer.

Each trainer declares its own node (``config_defaults`` on its class: ``TRAINER.COOP`` in
:mod:`trainers.coop`, ``TRAINER.PROMPTKD`` and ``TRAINER.MODAL`` in
:mod:`trainers.promptkd_student`, ...); only the dataset/test keys every upstream code base adds
live here.
"""

from __future__ import annotations

from typing import Any

from dassl.engine.build import add_config_defaults

__all__ = ["add_compat_config"]


def add_compat_config(cfg: Any) -> Any:
    """``DATASET.SUBSAMPLE_CLASSES`` (all, base or new) and ``TEST.NO_TEST``."""
    return add_config_defaults(cfg, {"DATASET.SUBSAMPLE_CLASSES": "all", "TEST.NO_TEST": False})
