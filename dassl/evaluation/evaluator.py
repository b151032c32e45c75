"""Classification evaluator: accuracy, error rate, macro F1, per-class table, confusion matrix.

The printed block (spec 2.10) is what ``parse_test_res.py`` greps in log.txt, so its text is
byte-exact with upstream. Distributed evaluation: every rank processes its shard, then calls
``evaluator.sync(gather_fn)`` (``gather_fn(obj) -> list of obj from all ranks``, e.g. a wrapper
of ``torch.distributed.all_gather_object``) so that each rank holds the union before
``evaluate()``; totals then equal those of a single-process run.
"""

from __future__ import annotations

import os
from collections import OrderedDict, defaultdict
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from dassl.utils import atomic_write, get_logger, mkdir_if_missing

from .build import EVALUATOR_REGISTRY

__all__ = ["EvaluatorBase", "Classification", "macro_f1_score", "confusion_matrix"]

log = get_logger(__name__)


def macro_f1_score(y_true: Sequence[int], y_pred: Sequence[int]) -> float:
    """Unweighted mean F1 over the labels present in ``y_true`` (in [0, 1]).

    Equivalent to sklearn's ``f1_score(average="macro", labels=unique(y_true))``: a class that is
    never predicted correctly scores 0; predictions of labels absent from ``y_true`` count only
    as false positives of nothing (they lower the recall of the true class).
    """
    t = np.asarray(y_true, dtype=np.int64)
    p = np.asarray(y_pred, dtype=np.int64)
    if t.size == 0:
        raise ValueError("macro_f1_score: no samples")
    labels = np.unique(t)
    tp = np.array([np.sum((t == c) & (p == c)) for c in labels], dtype=np.float64)
    fp = np.array([np.sum((t != c) & (p == c)) for c in labels], dtype=np.float64)
    fn = np.array([np.sum((t == c) & (p != c)) for c in labels], dtype=np.float64)
    denom = 2 * tp + fp + fn
    f1 = np.divide(2 * tp, denom, out=np.zeros_like(tp), where=denom > 0)
    return float(f1.mean())


def confusion_matrix(y_true: Sequence[int], y_pred: Sequence[int]) -> np.ndarray:
    """Row-normalised confusion matrix over the sorted union of labels (rows = truth)."""
    t = np.asarray(y_true, dtype=np.int64)
    p = np.asarray(y_pred, dtype=np.int64)
    labels = np.union1d(t, p)
    index = {int(c): i for i, c in enumerate(labels)}
    cmat = np.zeros((len(labels), len(labels)), dtype=np.float64)
    for a, b in zip(t.tolist(), p.tolist()):
        cmat[index[a], index[b]] += 1
    row = cmat.sum(axis=1, keepdims=True)
    return np.divide(cmat, row, out=np.zeros_like(cmat), where=row > 0)


class EvaluatorBase:
    """Interface: ``reset()``, ``process(model_output, ground_truth)``, ``evaluate()``."""

    def __init__(self, cfg: Any = None) -> None:
        self.cfg = cfg

    def reset(self) -> None:
        raise NotImplementedError

    def process(self, mo: torch.Tensor, gt: torch.Tensor) -> None:
        raise NotImplementedError

    def evaluate(self) -> OrderedDict:
        raise NotImplementedError


@EVALUATOR_REGISTRY.register()
class Classification(EvaluatorBase):
    """Accumulates predictions of a classifier and reports the upstream result block.

    Args:
        cfg: config; reads ``TEST.PER_CLASS_RESULT``, ``TEST.COMPUTE_CMAT`` and ``OUTPUT_DIR``.
            May be None when the keyword arguments below are given.
        lab2cname: label -> class name (required for the per-class table).
        per_class_result, compute_cmat, output_dir: override the cfg values when not None.
    """

    def __init__(
        self,
        cfg: Any = None,
        lab2cname: dict[int, str] | None = None,
        per_class_result: bool | None = None,
        compute_cmat: bool | None = None,
        output_dir: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(cfg)
        if per_class_result is None:
            per_class_result = bool(cfg.TEST.PER_CLASS_RESULT) if cfg is not None else False
        if compute_cmat is None:
            compute_cmat = bool(cfg.TEST.COMPUTE_CMAT) if cfg is not None else False
        if output_dir is None and cfg is not None:
            output_dir = cfg.OUTPUT_DIR
        if per_class_result and lab2cname is None:
            raise ValueError("lab2cname must be provided when the per-class result is enabled")
        if compute_cmat and not output_dir:
            raise ValueError("output_dir (cfg.OUTPUT_DIR) is needed to save the confusion matrix")
        self._lab2cname = lab2cname
        self.per_class_result = per_class_result
        self.compute_cmat = compute_cmat
        self.output_dir = output_dir
        self.reset()

    def reset(self) -> None:
        self._correct = 0
        self._total = 0
        self._y_true: list[int] = []
        self._y_pred: list[int] = []
        self._per_class_res: defaultdict[int, list[int]] | None = (
            defaultdict(list) if self.per_class_result else None
        )

    def process(self, mo: torch.Tensor, gt: torch.Tensor) -> None:
        """Add a batch: ``mo`` logits (batch, classes), ``gt`` labels (batch,)."""
        pred = mo.max(1)[1]
        matches = pred.eq(gt).int()
        self._correct += int(matches.sum().item())
        self._total += int(gt.shape[0])
        gt_list = gt.detach().cpu().tolist()
        self._y_true.extend(gt_list)
        self._y_pred.extend(pred.detach().cpu().tolist())
        if self._per_class_res is not None:
            for label, m in zip(gt_list, matches.cpu().tolist()):
                self._per_class_res[int(label)].append(int(m))

    # -- distributed -----------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        """The accumulated state as plain python objects (picklable, mergeable)."""
        return {
            "correct": self._correct,
            "total": self._total,
            "y_true": list(self._y_true),
            "y_pred": list(self._y_pred),
            "per_class": dict(self._per_class_res) if self._per_class_res is not None else None,
        }

    def merge(self, states: Sequence[dict[str, Any]]) -> None:
        """Replace the state by the union of ``states`` (outputs of :meth:`state`)."""
        self.reset()
        for st in states:
            self._correct += st["correct"]
            self._total += st["total"]
            self._y_true.extend(st["y_true"])
            self._y_pred.extend(st["y_pred"])
            if self._per_class_res is not None and st["per_class"] is not None:
                for label, ms in st["per_class"].items():
                    self._per_class_res[int(label)].extend(ms)

    def sync(self, gather_fn: Callable[[Any], list[Any]]) -> None:
        """Gather the state of every rank (``gather_fn(obj) -> [obj_rank0, ...]``) and merge.

        Call it on all ranks after the last ``process()`` and before ``evaluate()``.
        """
        self.merge(gather_fn(self.state()))

    # -- report ----------------------------------------------------------------------------

    def evaluate(self) -> OrderedDict:
        """Compute and print the metrics; keys: accuracy, error_rate, macro_f1[, perclass_accuracy]."""
        if self._total == 0:
            raise RuntimeError("Classification.evaluate() called before any process() call")
        results: OrderedDict[str, float] = OrderedDict()
        acc = 100.0 * self._correct / self._total
        err = 100.0 - acc
        macro_f1 = 100.0 * macro_f1_score(self._y_true, self._y_pred)
        results["accuracy"] = acc
        results["error_rate"] = err
        results["macro_f1"] = macro_f1

        log.info(
            "=> result\n"
            f"* total: {self._total:,}\n"
            f"* correct: {self._correct:,}\n"
            f"* accuracy: {acc:.1f}%\n"
            f"* error: {err:.1f}%\n"
            f"* macro_f1: {macro_f1:.1f}%"
        )

        if self._per_class_res is not None:
            assert self._lab2cname is not None
            lines = ["=> per-class result"]
            accs = []
            for label in sorted(self._per_class_res):
                res = self._per_class_res[label]
                correct, total = sum(res), len(res)
                cls_acc = 100.0 * correct / total
                accs.append(cls_acc)
                classname = self._lab2cname.get(label, "?")
                lines.append(
                    f"* class: {label} ({classname})\ttotal: {total:,}\t"
                    f"correct: {correct:,}\tacc: {cls_acc:.1f}%"
                )
            mean_acc = float(np.mean(accs))
            lines.append(f"* average: {mean_acc:.1f}%")
            log.info("\n".join(lines))
            results["perclass_accuracy"] = mean_acc

        if self.compute_cmat:
            cmat = confusion_matrix(self._y_true, self._y_pred)
            assert self.output_dir
            mkdir_if_missing(self.output_dir)
            save_path = os.path.join(self.output_dir, "cmat.pt")
            with atomic_write(save_path, "wb") as f:  # ranks may save concurrently
                torch.save(cmat, f)
            log.info(f"Confusion matrix is saved to {save_path}")

        return results
