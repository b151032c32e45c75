"""Prompt trainers. Importing this package registers every trainer in TRAINER_REGISTRY.

Each trainer module owns its config keys in an ``add_<trainer>_config(cfg)`` function;
``extend_cfg`` calls them all so that ``train.py`` never owns method keys.
"""

_CONFIG_ADDERS = []


def extend_cfg(cfg):
    """Add every registered trainer's config keys (and upstream-compatibility keys) to ``cfg``."""
    for add in _CONFIG_ADDERS:
        add(cfg)
    return cfg
