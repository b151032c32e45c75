"""Evaluators: ``build_evaluator(cfg, **kwargs)`` and the ``Classification`` evaluator."""

from .build import EVALUATOR_REGISTRY, build_evaluator
from .evaluator import Classification, EvaluatorBase, macro_f1_score

__all__ = [
    "EVALUATOR_REGISTRY",
    "Classification",
    "EvaluatorBase",
    "build_evaluator",
    "macro_f1_score",
]
