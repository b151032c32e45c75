"""Upstream ``extend_cfg`` keys that must not depend on one of our trainer modules.

Each trainer declares its own node (``config_defaults`` on its class; ``TRAINER.PROMPTKD`` and
``TRAINER.MODAL`` in :mod:`trainers.promptkd_student`, ...). Two kinds live here instead: the
dataset/test keys every upstream code base adds, and the nodes of the upstream trainers whose
upstream file names are also ours (``coop.py``, ``cocoop.py``, ``maple.py``, ``vpt.py``,
``promptsrc.py``): our classes declare those from :data:`UPSTREAM_NODES`, and
:func:`add_compat_config` adds them too, so an upstream file copied *over* ours still finds its
node (upstream's defaults).
"""

from __future__ import annotations

from typing import Any

from dassl.engine.build import add_config_defaults

from .prompt_trainer import ivlp_prompt_defaults

__all__ = ["UPSTREAM_NODES", "add_compat_config"]

UPSTREAM_NODES: dict[str, dict[str, Any]] = {
    "TRAINER.COOP": {
        "N_CTX": 16,
        "CSC": False,
        "CTX_INIT": "",
        "PREC": "fp16",
        "CLASS_TOKEN_POSITION": "end",
    },
    "TRAINER.COCOOP": {"N_CTX": 16, "CTX_INIT": "", "PREC": "fp16"},
    "TRAINER.MAPLE": {"N_CTX": 2, "CTX_INIT": "a photo of a", "PREC": "fp16", "PROMPT_DEPTH": 9},
    "TRAINER.VPT": {
        "N_CTX_VISION": 2,
        "CTX_INIT": "a photo of a",
        "PREC": "fp16",
        "PROMPT_DEPTH_VISION": 1,
    },
    "TRAINER.PROMPTSRC": {
        **ivlp_prompt_defaults(n_ctx=4),
        "TEXT_LOSS_WEIGHT": 25,
        "IMAGE_LOSS_WEIGHT": 10,
        "GPA_MEAN": 15,
        "GPA_STD": 1,
    },
}


def add_compat_config(cfg: Any) -> Any:
    """``DATASET.SUBSAMPLE_CLASSES`` (all, base or new), ``TEST.NO_TEST`` and the nodes above."""
    add_config_defaults(cfg, UPSTREAM_NODES)
    return add_config_defaults(cfg, {"DATASET.SUBSAMPLE_CLASSES": "all", "TEST.NO_TEST": False})
