"""Upstream-compatibility config keys (CoOp / PromptSRC / PromptKD ``extend_cfg``).

Upstream YAMLs and sweep scripts set keys under ``TRAINER.COOP``, ``TRAINER.COCOOP``,
``TRAINER.MAPLE``, ``TRAINER.IVLP``, ``TRAINER.PROMPTSRC``, ``TRAINER.PROMPTKD`` and
``TRAINER.MODAL``; yacs rejects unknown keys, so they must all exist (with the upstream types)
before any YAML is merged. Values are upstream's, except ``TRAINER.PROMPTKD.TEACHER_NAME``
whose upstream default ``"ViT/L-14"`` is a typo (no such model) and is fixed here.

Keys that only our code reads live next to that code (e.g. ``add_promptkd_student_config``).
"""

from __future__ import annotations

from yacs.config import CfgNode as CN

__all__ = ["add_compat_config", "add_defaults", "ensure_node"]


def ensure_node(parent: CN, name: str) -> CN:
    """Return ``parent.<name>``, creating an empty node if absent (adders may run in any order)."""
    if name not in parent:
        parent[name] = CN()
    return parent[name]


def _set_default(node: CN, key: str, value: object) -> None:
    # Never clobber a value another adder (or a repeated call) already placed.
    if key not in node:
        node[key] = value


def add_defaults(parent: CN, name: str, defaults: dict[str, object]) -> CN:
    """Node ``parent.<name>`` (created if absent) with every missing key of ``defaults`` set."""
    node = ensure_node(parent, name)
    for key, value in defaults.items():
        _set_default(node, key, value)
    return node


def add_compat_config(cfg: CN) -> CN:
    """Add every upstream ``extend_cfg`` key (dassl_api.md 3.4) with upstream defaults."""
    _set_default(cfg.DATASET, "SUBSAMPLE_CLASSES", "all")  # all, base or new
    _set_default(cfg.TEST, "NO_TEST", False)

    add_defaults(
        cfg.TRAINER,
        "COOP",
        {
            "N_CTX": 16,
            "CSC": False,
            "CTX_INIT": "",
            "PREC": "fp16",
            "CLASS_TOKEN_POSITION": "end",
        },
    )

    add_defaults(
        cfg.TRAINER,
        "COCOOP",
        {"N_CTX": 16, "CTX_INIT": "", "PREC": "fp16"},
    )

    add_defaults(
        cfg.TRAINER,
        "MAPLE",
        {"N_CTX": 2, "CTX_INIT": "a photo of a", "PREC": "fp16", "PROMPT_DEPTH": 9},
    )

    add_defaults(
        cfg.TRAINER,
        "IVLP",
        {
            "N_CTX_VISION": 2,
            "N_CTX_TEXT": 2,
            "CTX_INIT": "a photo of a",
            "PREC": "fp16",
            "PROMPT_DEPTH_VISION": 9,
            "PROMPT_DEPTH_TEXT": 9,
        },
    )

    add_defaults(
        cfg.TRAINER,
        "PROMPTSRC",
        {
            "N_CTX_VISION": 4,
            "N_CTX_TEXT": 4,
            "CTX_INIT": "a photo of a",
            "PREC": "fp16",
            "PROMPT_DEPTH_VISION": 9,
            "PROMPT_DEPTH_TEXT": 9,
            "TEXT_LOSS_WEIGHT": 25,
            "IMAGE_LOSS_WEIGHT": 10,
            "GPA_MEAN": 15,
            "GPA_STD": 1,
        },
    )

    _set_default(cfg.TRAINER, "MODAL", "base2novel")  # base2novel or cross
    add_defaults(
        cfg.TRAINER,
        "PROMPTKD",
        {
            "N_CTX_VISION": 4,
            "N_CTX_TEXT": 4,
            "CTX_INIT": "a photo of a",
            "PREC": "fp16",
            "PROMPT_DEPTH_VISION": 9,
            "PROMPT_DEPTH_TEXT": 9,
            "PROJECT_LAYER": 2,
            "CE_WEIGHT": 0.0,
            "KD_WEIGHT": 1.0,
            "TEMPERATURE": 1.0,
            "TEACHER_NAME": "ViT-L/14",  # upstream default "ViT/L-14" is a typo
        },
    )
    return cfg
