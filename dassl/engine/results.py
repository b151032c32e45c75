"""``<OUTPUT_DIR>/results.json``: the machine-readable outcome of a run's final evaluation.

Accuracies are in percent: ``base``, ``new``, ``hm`` (base-to-novel), ``accuracy`` (all
classes; for per-domain runs the mean over domains, with ``domains`` mapping each target domain
to its accuracy and ``target_domains`` listing them in config order), plus ``epoch``, ``seed``, ``dataset``, ``trainer`` and ``config_hash``.
``config_hash`` is the SHA-256 of the merged config dump with the run-specific keys
:data:`HASH_EXCLUDED_KEYS` removed (output/resume paths, the seed, the data root, worker count
and verbosity), so that seeds and machines of one setting share a hash. Written atomically,
rank 0 only.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Sequence
from typing import Any

from dassl.config import to_plain
from dassl.utils.logger import get_logger

from . import distributed as dist

__all__ = ["HASH_EXCLUDED_KEYS", "config_hash", "harmonic_mean", "write_results"]

logger = get_logger(__name__)

HASH_EXCLUDED_KEYS = (
    "OUTPUT_DIR",
    "RESUME",
    "SEED",
    "VERBOSE",
    "DATASET.ROOT",
    "DATALOADER.NUM_WORKERS",
)


def config_hash(cfg: Any, excluded: Sequence[str] = HASH_EXCLUDED_KEYS) -> str:
    """SHA-256 of the merged config without run-specific keys (see module docstring)."""
    tree = to_plain(cfg)
    for dotted in excluded:
        *parents, leaf = dotted.split(".")
        node = tree
        for p in parents:
            node = node.get(p, {}) if isinstance(node, dict) else {}
        if isinstance(node, dict):
            node.pop(leaf, None)
    blob = json.dumps(tree, sort_keys=True, default=str).encode("utf-8")
    return hashlib.sha256(blob).hexdigest()


def harmonic_mean(a: float, b: float) -> float:
    """HM of two accuracies (0 when both are 0)."""
    return 0.0 if a + b == 0 else 2.0 * a * b / (a + b)


def _rounded(value: Any) -> Any:
    if isinstance(value, (list, tuple, str)):  # e.g. target_domains (names, in config order)
        return list(value) if not isinstance(value, str) else value
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    return round(float(value), 4)


def write_results(
    output_dir: str, metrics: dict[str, Any], cfg: Any, epoch: int | None
) -> str | None:
    """Write ``<output_dir>/results.json`` atomically on rank 0; returns the path (None elsewhere)."""
    if not dist.is_main_process():
        return None
    record: dict[str, Any] = {k: _rounded(v) for k, v in metrics.items()}
    record.update(
        {
            "epoch": epoch,
            "seed": int(cfg.SEED),
            "dataset": cfg.DATASET.NAME,
            "trainer": cfg.TRAINER.NAME,
            "config_hash": config_hash(cfg),
        }
    )
    os.makedirs(output_dir, exist_ok=True)
    path = os.path.join(output_dir, "results.json")
    fd, tmp = tempfile.mkstemp(prefix=".results-", suffix=".tmp", dir=output_dir)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(record, f, indent=2, sort_keys=True)
            f.write("\n")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    logger.info(f"Results written to {path}")
    return path
