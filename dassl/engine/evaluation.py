"""The one evaluation loop, and the class/domain subsets a final evaluation reports.

Every evaluation (per-epoch validation, the final test, base/new classes, target domains) runs
:func:`run_evaluation` over a loader with a trainer's classifier, a function
``images -> logits`` over the subset's classes. Trainers provide that function through their
``classifier_for(subset)`` seam (``dassl.engine.trainer.SimpleTrainer``).

Protocols (``eval_subsets``):
- ``"base_new"``: base-class test images vs base classes, new-class ones vs new classes;
- ``"domains"``: all classes, one subset per target domain (Dassl DG datasets: test items
  carry the index of their domain in ``DATASET.TARGET_DOMAINS``);
- ``"all"``: the whole test set vs all classes.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from tqdm import tqdm

from dassl.utils.logger import get_logger

from . import distributed as dist

__all__ = ["EvalSubset", "eval_subsets", "full_class_info", "run_evaluation", "PROTOCOLS"]

logger = get_logger(__name__)

PROTOCOLS = ("base_new", "domains", "all")


@dataclass
class EvalSubset:
    """Images of some classes, relabelled 0..k-1, and those classes' names.

    ``items`` is None when the subset is a loader the trainer already has (its val or test
    split over the classes it was built for).
    """

    name: str  # "base", "new", "all", "val" or a domain name
    items: list | None
    classnames: list[str]
    class_range: range  # positions of the classes in the dataset's full class list


def full_class_info(dataset: Any) -> tuple[list[str], range, range, dict[str, list] | None]:
    """``(all_classnames, base_range, new_range, full_splits or None)`` of a dataset.

    Uses the attributes of ``datasets/`` datasets; for a plain upstream ``DatasetBase`` they
    are derived from its (all-class) ``classnames`` with the same ceil(n/2) rule.
    """
    from datasets.base_new import base_new_ranges

    names = getattr(dataset, "all_classnames", None)
    if names is None:
        names = list(dataset.classnames)
        base, new = base_new_ranges(len(names))
        return list(names), base, new, None
    return (
        list(names),
        dataset.base_classes,
        dataset.new_classes,
        getattr(dataset, "full_splits", None),
    )


def _own_classes(dataset: Any, name: str = "all") -> EvalSubset:
    names = list(dataset.classnames)
    return EvalSubset(name, None, names, range(0, len(names)))


def eval_subsets(
    dataset: Any,
    protocol: str,
    subsample: str = "all",
    target_domains: Sequence[str] = (),
) -> list[EvalSubset]:
    """The subsets a final evaluation reports (see the module docstring for ``protocol``)."""
    from datasets.base_new import select_classes

    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown evaluation protocol {protocol!r} (expected one of {PROTOCOLS})")
    if protocol == "domains":
        names = list(dataset.classnames)
        test = list(dataset.test)
        present = sorted({d.domain for d in test})
        labels = list(target_domains) or list(getattr(dataset, "domains", []))
        return [
            EvalSubset(
                labels[k] if k < len(labels) else f"domain{k}",
                [d for d in test if d.domain == k],
                names,
                range(0, len(names)),
            )
            for k in present
        ]
    names, base, new, full = full_class_info(dataset)
    if protocol == "base_new":
        if full is None and subsample != "all":
            logger.warning(
                "Dataset %s has no full_splits: cannot evaluate base and new classes separately "
                "with DATASET.SUBSAMPLE_CLASSES=%s; evaluating its test split only",
                type(dataset).__name__,
                subsample,
            )
            return [_own_classes(dataset)]
        test = list(dataset.test) if full is None else list(full["test"])
        return [
            EvalSubset("base", select_classes(test, base), names[base.start : base.stop], base),
            EvalSubset("new", select_classes(test, new), names[new.start : new.stop], new),
        ]
    if subsample != "all" or full is None:
        return [_own_classes(dataset)]  # the dataset's own (possibly subsampled) test split
    return [EvalSubset("all", list(full["test"]), names, range(0, len(names)))]


@torch.no_grad()
def run_evaluation(
    classify: Callable[[torch.Tensor], torch.Tensor],
    loader: Iterable[Any],
    parse_batch: Callable[[Any], tuple[torch.Tensor, torch.Tensor]],
    evaluator: Any,
) -> dict[str, float]:
    """Score every batch of ``loader`` with ``classify``; shards are merged when distributed."""
    evaluator.reset()
    bar = tqdm(loader, file=sys.stderr, disable=not dist.is_main_process(), leave=False)
    for batch in bar:
        images, labels = parse_batch(batch)
        evaluator.process(classify(images), labels)
    if dist.get_world_size() > 1:
        if not hasattr(evaluator, "sync"):
            raise RuntimeError(
                f"{type(evaluator).__name__} has no sync(gather_fn): it cannot merge the shards "
                "of a distributed evaluation"
            )
        evaluator.sync(dist.all_gather_object)
    return dict(evaluator.evaluate())
