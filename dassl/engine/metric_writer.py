"""Run metrics: TensorBoard scalars (optional dependency) and ``<out>/metrics.jsonl``.

One JSON object per line, e.g.::

    {"type": "train", "epoch": 1, "losses": {"loss": 0.69, "acc": 50.0}, "lr": 0.002}
    {"type": "test", "split": "val", "epoch": 1, "results": {"accuracy": 75.0, ...}}

Only the main process writes (the engine creates the writer on rank 0 only).
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Mapping
from typing import Any

from dassl.utils.logger import get_logger

__all__ = ["MetricWriter"]

logger = get_logger(__name__)

_TB_WARNED = False


def _plain(value: Any) -> Any:
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # JSON has no inf/nan
    return value


class MetricWriter:
    """Writes scalars to TensorBoard (if installed) and epoch summaries to a JSON-lines file."""

    def __init__(self, tb_dir: str | None, jsonl_path: str | None):
        self._tb = None
        if tb_dir is not None:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                global _TB_WARNED
                if not _TB_WARNED:
                    logger.warning(
                        "tensorboard is not installed: TensorBoard logging is disabled "
                        "(pip install tensorboard to enable it)"
                    )
                    _TB_WARNED = True
            else:
                self._tb = SummaryWriter(log_dir=tb_dir)
        self._jsonl = None
        if jsonl_path is not None:
            os.makedirs(os.path.dirname(os.path.abspath(jsonl_path)), exist_ok=True)
            self._jsonl = open(jsonl_path, "a", encoding="utf-8")  # noqa: SIM115

    def add_scalar(self, tag: str, value: Any, global_step: int | None = None) -> None:
        if self._tb is not None:
            self._tb.add_scalar(tag, _plain(value), global_step)

    def write_record(self, record: Mapping[str, Any]) -> None:
        """Append one JSON line (flushed immediately so a crash keeps finished epochs)."""
        if self._jsonl is None:
            return
        rec = {k: _plain(v) for k, v in record.items()}
        rec.setdefault("time", round(time.time(), 3))
        self._jsonl.write(json.dumps(rec, default=_plain) + "\n")
        self._jsonl.flush()

    def log_train_epoch(self, epoch: int, losses: Mapping[str, float], lr: float | None) -> None:
        self.write_record(
            {
                "type": "train",
                "epoch": epoch,
                "losses": {k: _plain(v) for k, v in losses.items()},
                "lr": lr,
            }
        )

    def log_test(self, split: str, epoch: int, results: Mapping[str, Any]) -> None:
        self.write_record(
            {
                "type": "test",
                "split": split,
                "epoch": epoch,
                "results": {k: _plain(v) for k, v in results.items()},
            }
        )

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
            self._tb = None
        if self._jsonl is not None:
            self._jsonl.close()
            self._jsonl = None
