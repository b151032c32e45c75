"""Data-free distillation of a CLIP teacher: style prompts, generators, surrogate-image synthesis.

Uses ``clip`` (never the reverse); the training engine knows nothing of this package. See
docs/DATAFREE.md.
"""

from .config import add_datafree_config, get_datafree_cfg
from .generators import GENERATOR_REGISTRY, build_generator, load_vqgan
from .styles import STRATEGY_REGISTRY, build_strategy
from .surrogate_set import read_surrogate_set, synthesize_set

__all__ = [
    "GENERATOR_REGISTRY",
    "STRATEGY_REGISTRY",
    "add_datafree_config",
    "build_generator",
    "build_strategy",
    "get_datafree_cfg",
    "load_vqgan",
    "read_surrogate_set",
    "synthesize_set",
]
