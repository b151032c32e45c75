"""Prompt trainers. Importing this package registers every trainer in TRAINER_REGISTRY.

Each trainer module owns its config keys in an ``add_<trainer>_config(cfg)`` function;
``extend_cfg`` calls them all so that ``train.py`` never owns method keys. The
upstream-compatibility keys (``TRAINER.COOP/COCOOP/MAPLE/IVLP/PROMPTSRC/PROMPTKD``,
``TRAINER.MODAL``) come first so that upstream YAMLs merge unchanged.
"""

from . import coop, kd_student, promptkd_student, promptkd_teacher, zsclip  # noqa: F401
from .compat_config import add_compat_config
from .promptkd_student import add_promptkd_student_config

_CONFIG_ADDERS = [add_compat_config, add_promptkd_student_config]


def extend_cfg(cfg):
    """Add every registered trainer's config keys (and upstream-compatibility keys) to ``cfg``."""
    for add in _CONFIG_ADDERS:
        add(cfg)
    return cfg
