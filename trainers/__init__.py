"""Prompt trainers. Importing this package registers every trainer in TRAINER_REGISTRY.

Every module of this package is imported here (so a trainer file dropped into ``trainers/`` is
registered with no other edit). A trainer registers its class with
``@TRAINER_REGISTRY.register()`` and declares its config keys on the class
(``config_defaults``); :func:`extend_cfg` adds the keys of every registered trainer (plus the
few upstream keys of no single trainer), so upstream YAMLs merge unchanged.
"""

import importlib
import pkgutil

from dassl.engine.build import add_trainer_configs

from .compat_config import add_compat_config

for _module in sorted(m.name for m in pkgutil.iter_modules(__path__)):
    importlib.import_module(f"{__name__}.{_module}")


def extend_cfg(cfg):
    """Add every registered trainer's config keys (and the upstream dataset/test keys) to ``cfg``."""
    add_compat_config(cfg)
    add_trainer_configs(cfg)
    return cfg
