"""Configuration: the upstream default tree (a real yacs ``CfgNode``) and merge helpers.

``merge_cfg_file``/``merge_cfg_list`` keep yacs semantics (values decoded with
``ast.literal_eval``; unknown keys and type changes rejected; an int is *not* accepted for a
float key) but turn yacs' bare KeyError/AssertionError/ValueError into one
:class:`ConfigError` naming the file, the full key, the expected type and a fix.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Sequence
from typing import Any

import yaml
from yacs.config import CfgNode

from dassl.utils.errors import UserInputError

from .defaults import _C

__all__ = [
    "ConfigError",
    "get_cfg_default",
    "clean_cfg",
    "merge_cfg_file",
    "merge_cfg_list",
    "to_plain",
]


class ConfigError(ValueError, UserInputError):
    """A config file or command-line override cannot be merged into the config tree."""


def get_cfg_default() -> CfgNode:
    """Return a fresh (cloned, unfrozen) copy of the default tree."""
    return _C.clone()


def clean_cfg(cfg: CfgNode, trainer_name: str) -> None:
    """Drop every ``cfg.TRAINER`` child except ``NAME`` and the node of ``trainer_name``."""
    keep = {"NAME", trainer_name.upper()}
    for key in list(cfg.TRAINER.keys()):
        if key not in keep:
            cfg.TRAINER.pop(key, None)


# ------------------------------------------------------------------------------------------
# Error reporting


def to_plain(node: Any) -> Any:
    """A config (sub)tree as plain dicts and lists, for JSON, hashing and comparisons."""
    if isinstance(node, dict):
        return {k: to_plain(v) for k, v in node.items()}
    if isinstance(node, (list, tuple)):
        return [to_plain(v) for v in node]
    return node


def _flat_keys(node: CfgNode, prefix: str = "") -> list[str]:
    keys = []
    for k, v in node.items():
        full = f"{prefix}{k}"
        keys.append(full)
        if isinstance(v, CfgNode):
            keys.extend(_flat_keys(v, full + "."))
    return keys


def _lookup(tree: Any, full_key: str) -> tuple[bool, Any]:
    node = tree
    for part in full_key.split("."):
        if not isinstance(node, dict) or part not in node:
            return False, None
        node = node[part]
    return True, node


def _unknown_key_message(cfg: CfgNode, full_key: str, where: str) -> str:
    keys = _flat_keys(cfg)
    close = difflib.get_close_matches(full_key, keys, n=1, cutoff=0.5)
    msg = f"{where}unknown config key {full_key}."
    if close:
        msg += f" Did you mean {close[0]}?"
    parent = full_key.rpartition(".")[0]
    found, node = _lookup(cfg, parent) if parent else (True, cfg)
    if found and isinstance(node, CfgNode):
        msg += f" Valid keys under {parent or '<root>'}: {sorted(node.keys())}."
    msg += (
        " (Keys of a trainer are declared by its class, config_defaults, and added by trainers.extend_cfg; "
        "merge after calling it.)"
    )
    return msg


def _type_message(cfg: CfgNode, full_key: str, value: Any, where: str) -> str:
    _, expected = _lookup(cfg, full_key)
    exp_t, got_t = type(expected).__name__, type(value).__name__
    msg = f"{where}{full_key} expects {exp_t}, got {got_t} {value!r}"
    if isinstance(expected, float) and isinstance(value, int) and not isinstance(value, bool):
        msg += f": write {float(value)!r}"
    elif isinstance(expected, str):
        msg += ": quote it to keep it a string"
    elif isinstance(expected, (list, tuple)):
        msg += f": write a list or tuple, e.g. {list(expected)!r}"
    else:
        msg += f" (default value: {expected!r})"
    return msg


def _key_from_message(text: str, marker: str) -> str | None:
    idx = text.rfind(marker)
    if idx < 0:
        return None
    return text[idx + len(marker) :].strip().strip("'\"")


# ------------------------------------------------------------------------------------------
# Merges


def _check_not_frozen(cfg: CfgNode, where: str) -> None:
    # yacs' merges assign items directly and would silently modify a frozen tree
    if cfg.is_frozen():
        raise ConfigError(f"{where}cannot merge into a frozen config (merge before cfg.freeze())")


def merge_cfg_file(cfg: CfgNode, path: str) -> None:
    """``cfg.merge_from_file(path)`` with a :class:`ConfigError` on any problem."""
    path = os.fspath(path)
    where = f"{path}: "
    _check_not_frozen(cfg, where)
    if not os.path.isfile(path):
        raise ConfigError(f"Config file not found: {path} (check the --config-file path)")
    try:
        with open(path, encoding="utf-8") as f:
            loaded = CfgNode.load_cfg(f)
    except yaml.YAMLError as e:
        raise ConfigError(f"{where}invalid YAML: {' '.join(str(e).split())}") from e
    try:
        cfg.merge_from_file(path)
    except KeyError as e:
        key = _key_from_message(str(e.args[0]) if e.args else "", "Non-existent config key:")
        raise ConfigError(_unknown_key_message(cfg, key or str(e), where)) from e
    except ValueError as e:
        key = _key_from_message(str(e), "for config key:")
        if key is None:
            raise ConfigError(f"{where}{e}") from e
        _, value = _lookup(loaded, key)
        raise ConfigError(_type_message(cfg, key, value, where)) from e
    except AttributeError as e:
        raise ConfigError(f"{where}cannot merge into a frozen config ({e})") from e


def merge_cfg_list(cfg: CfgNode, opts: Sequence[str]) -> None:
    """``cfg.merge_from_list(opts)`` (``KEY VALUE`` pairs) with a :class:`ConfigError`."""
    opts = list(opts)
    where = "command-line opts: "
    _check_not_frozen(cfg, where)
    if len(opts) % 2 != 0:
        raise ConfigError(
            f"{where}expected KEY VALUE pairs, got an odd number of items: {opts} "
            f"(last key without value: {opts[-1]!r})"
        )
    for key in opts[0::2]:
        found, node = _lookup(cfg, key)
        if not found:
            raise ConfigError(_unknown_key_message(cfg, key, where))
    try:
        cfg.merge_from_list(opts)
    except ValueError as e:
        key = _key_from_message(str(e), "for config key:")
        if key is None:
            raise ConfigError(f"{where}{e}") from e
        raw = opts[2 * opts[0::2].index(key) + 1] if key in opts[0::2] else None
        value = CfgNode._decode_cfg_value(raw) if raw is not None else raw
        raise ConfigError(_type_message(cfg, key, value, where)) from e
    except (AssertionError, KeyError) as e:
        raise ConfigError(f"{where}{e}") from e
    except AttributeError as e:
        raise ConfigError(f"{where}cannot merge into a frozen config ({e})") from e
