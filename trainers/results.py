"""Final evaluation protocol shared by every evaluating trainer, and the ``results.json`` writer.

Base-to-novel runs end by evaluating the base-class test images against the base classes and
the new-class test images against the new classes (each with the standard Dassl result block,
preceded by a line naming the subset); other runs evaluate the whole test set against all
classes. Trainers plug in through :class:`SubsetEvaluationMixin`, providing only
``classifier_for(subset)`` (a function images -> logits over ``subset.classnames``).

``<OUTPUT_DIR>/results.json`` (written atomically, rank 0 only) holds accuracies in percent:
``base``, ``new``, ``hm`` (base-to-novel) or ``accuracy``; multi-domain datasets (those with
``test_domains``, :mod:`datasets.domain_base`) add ``domains`` = ``{domain: accuracy}`` and
``accuracy`` is then the mean over the target domains (``target_domains`` lists them in config
order, as the json keys are sorted). Plus ``epoch``, ``seed``,
``dataset``, ``trainer`` and ``config_hash``. ``config_hash`` is the SHA-256 of the merged
config dump with the run-specific keys :data:`HASH_EXCLUDED_KEYS` removed (output/resume paths,
the seed, the data root, worker count and verbosity), so that seeds and machines of one setting
share a hash.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from dassl.utils.logger import get_logger

__all__ = [
    "HASH_EXCLUDED_KEYS",
    "EvalSubset",
    "SubsetEvaluationMixin",
    "config_hash",
    "harmonic_mean",
    "write_results",
    "full_class_info",
    "eval_subsets",
    "domain_subsets",
]

logger = get_logger(__name__)

HASH_EXCLUDED_KEYS = (
    "OUTPUT_DIR",
    "RESUME",
    "SEED",
    "VERBOSE",
    "DATASET.ROOT",
    "DATALOADER.NUM_WORKERS",
)


def _plain(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _plain(v) for k, v in node.items()}
    if isinstance(node, (list, tuple)):
        return [_plain(v) for v in node]
    return node


def config_hash(cfg: Any, excluded: Sequence[str] = HASH_EXCLUDED_KEYS) -> str:
    """SHA-256 of the merged config without run-specific keys (see module docstring)."""
    tree = _plain(cfg)
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


def write_results(
    output_dir: str, metrics: dict[str, float], cfg: Any, epoch: int | None
) -> str | None:
    """Write ``<output_dir>/results.json`` atomically on rank 0; returns the path (None elsewhere)."""
    from dassl.engine import distributed as dist

    if not dist.is_main_process():
        return None
    record: dict[str, Any] = {}
    for k, v in metrics.items():
        if isinstance(v, dict):  # per-domain accuracies; their order is kept in target_domains
            record[k] = {d: round(float(a), 4) for d, a in v.items()}
            record["target_domains"] = list(v)
        else:
            record[k] = round(float(v), 4)
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


@dataclass
class EvalSubset:
    """Test images of some classes, relabelled 0..k-1, and those classes' names."""

    name: str  # "base", "new" or "all"
    items: list
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


def eval_subsets(dataset: Any, protocol: str, subsample: str = "all") -> list[EvalSubset]:
    """The subsets a final evaluation reports: ``protocol`` is ``"base_new"`` or ``"all"``."""
    from datasets.base_new import select_classes

    names, base, new, full = full_class_info(dataset)
    if protocol == "base_new":
        if full is None:
            if subsample != "all":
                logger.warning(
                    "Dataset %s has no full_splits: cannot evaluate base and new classes separately "
                    "with DATASET.SUBSAMPLE_CLASSES=%s; evaluating its test split only",
                    type(dataset).__name__,
                    subsample,
                )
                return [
                    EvalSubset(
                        "all",
                        list(dataset.test),
                        list(dataset.classnames),
                        range(0, len(dataset.classnames)),
                    )
                ]
            test = list(dataset.test)
        else:
            test = list(full["test"])
        return [
            EvalSubset("base", select_classes(test, base), names[base.start : base.stop], base),
            EvalSubset("new", select_classes(test, new), names[new.start : new.stop], new),
        ]
    if protocol != "all":
        raise ValueError(f"unknown evaluation protocol {protocol!r} (expected 'base_new' or 'all')")
    if subsample != "all" or full is None:
        # the dataset's own (possibly subsampled) test split and class list
        return [
            EvalSubset(
                "all",
                list(dataset.test),
                list(dataset.classnames),
                range(0, len(dataset.classnames)),
            )
        ]
    return [EvalSubset("all", list(full["test"]), names, range(0, len(names)))]


def domain_subsets(subset: EvalSubset, domain_names: Sequence[str]) -> list[EvalSubset]:
    """Split ``subset`` by its items' ``domain`` (an index into ``domain_names``), in that order.

    Every domain gets a subset (possibly empty), with the same classes as ``subset``.
    """
    groups: dict[int, list] = {i: [] for i in range(len(domain_names))}
    for item in subset.items:
        if item.domain not in groups:
            raise ValueError(
                f"test image {item.impath} has domain index {item.domain}, but the dataset names "
                f"only {len(domain_names)} target domains {list(domain_names)}"
            )
        groups[item.domain].append(item)
    return [
        EvalSubset(name, groups[i], subset.classnames, subset.class_range)
        for i, name in enumerate(domain_names)
    ]


class SubsetEvaluationMixin:
    """Gives a ``TrainerX`` the final base/new (or all-class) evaluation and ``results.json``.

    The host trainer implements ``classifier_for(subset) -> Callable[[images], logits]`` and may
    override ``eval_protocol()``. ``test(split="val")`` keeps the engine's per-epoch validation.
    """

    results_epoch: int | None = None

    def eval_protocol(self) -> str:
        """``"base_new"`` when the run trains on a class half (SUBSAMPLE_CLASSES base/new)."""
        return "base_new" if self.cfg.DATASET.SUBSAMPLE_CLASSES in ("base", "new") else "all"

    def classifier_for(self, subset: EvalSubset) -> Callable[[torch.Tensor], torch.Tensor]:
        raise NotImplementedError

    @torch.no_grad()
    def evaluate_subset(self, subset: EvalSubset) -> dict[str, float]:
        """Evaluate one subset; prints the subset line and the Dassl result block."""
        from dassl.data.data_manager import build_data_loader
        from dassl.engine import distributed as dist
        from dassl.evaluation import build_evaluator

        cfg = self.cfg
        self.set_model_mode("eval")
        logger.info(
            f"Evaluate on the *test* set: {subset.name}"
            f"{' classes' if subset.name in ('base', 'new', 'all') else ' domain'} "
            f"({len(subset.classnames)} classes, "
            f"{len(subset.items):,} images)"
        )
        loader = build_data_loader(
            cfg,
            sampler_type=cfg.DATALOADER.TEST.SAMPLER,
            data_source=subset.items,
            batch_size=cfg.DATALOADER.TEST.BATCH_SIZE,
            tfm=self.dm.tfm_test,
            is_train=False,
        )
        evaluator = build_evaluator(cfg, lab2cname=dict(enumerate(subset.classnames)))
        classify = self.classifier_for(subset)
        for batch in loader:
            images, labels = self.parse_batch_test(batch)
            evaluator.process(classify(images), labels)
        if dist.get_world_size() > 1:
            evaluator.sync(dist.all_gather_object)
        results = evaluator.evaluate()
        for k, v in results.items():
            self.write_scalar(f"test_{subset.name}/{k}", v, self.epoch)
        if getattr(self, "_writer", None) is not None:
            self._writer.log_test(f"test_{subset.name}", self.epoch + 1, results)
        return dict(results)

    def final_evaluation(self) -> dict[str, float]:
        """Evaluate every subset of the protocol and write ``results.json``; returns the metrics."""
        subsets = eval_subsets(
            self.dm.dataset, self.eval_protocol(), self.cfg.DATASET.SUBSAMPLE_CLASSES
        )
        domains = getattr(self.dm.dataset, "test_domains", None)
        if domains and [s.name for s in subsets] == ["all"]:
            return self._final_domain_evaluation(subsets[0], domains)
        accs = {s.name: self.evaluate_subset(s)["accuracy"] for s in subsets}
        if "base" in accs and "new" in accs:
            metrics = {
                "base": accs["base"],
                "new": accs["new"],
                "hm": harmonic_mean(accs["base"], accs["new"]),
            }
            logger.info(
                f"=> base-to-novel: base {metrics['base']:.2f}%, new {metrics['new']:.2f}%, "
                f"HM {metrics['hm']:.2f}%"
            )
        else:
            metrics = {"accuracy": accs["all"]}
        epoch = self.results_epoch if self.results_epoch is not None else self.epoch + 1
        write_results(self.cfg.OUTPUT_DIR, metrics, self.cfg, epoch)
        return metrics

    def _final_domain_evaluation(self, subset: EvalSubset, domains: Sequence[str]) -> dict:
        """One accuracy per target domain; ``accuracy`` = their mean (empty domains fail)."""
        parts = domain_subsets(subset, domains)
        empty = [p.name for p in parts if not p.items]
        if empty:
            raise ValueError(f"target domains {empty} have no test images (DATASET.TARGET_DOMAINS)")
        per_domain = {p.name: self.evaluate_subset(p)["accuracy"] for p in parts}
        mean = sum(per_domain.values()) / len(per_domain)
        table = ", ".join(f"{d} {a:.2f}%" for d, a in per_domain.items())
        logger.info(f"=> per domain: {table}; mean over {len(per_domain)} domains {mean:.2f}%")
        metrics = {"accuracy": mean, "domains": per_domain}
        epoch = self.results_epoch if self.results_epoch is not None else self.epoch + 1
        write_results(self.cfg.OUTPUT_DIR, metrics, self.cfg, epoch)
        return metrics

    def test(self, split: str | None = None) -> float:
        if split is None:
            split = self.cfg.TEST.SPLIT
        if split == "val":
            return super().test(split)  # engine's per-epoch validation (model_inference)
        metrics = self.final_evaluation()
        return next(iter(metrics.values()))
