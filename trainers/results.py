"""Where ``results.json`` and the evaluation subsets used to live; kept as an import path.

The writer is :mod:`dassl.engine.results`, the subsets and the one evaluation loop are
:mod:`dassl.engine.evaluation` (the engine runs every trainer's final evaluation).
"""

from dassl.engine.evaluation import EvalSubset, eval_subsets, full_class_info
from dassl.engine.results import HASH_EXCLUDED_KEYS, config_hash, harmonic_mean, write_results

__all__ = [
    "HASH_EXCLUDED_KEYS",
    "EvalSubset",
    "config_hash",
    "eval_subsets",
    "full_class_info",
    "harmonic_mean",
    "write_results",
]
