"""Name -> class registries (one per extension point: trainers, datasets, evaluators).

A name clash raises ``KeyError`` as in upstream Dassl, except against a *built-in* entry
(``register(builtin=True)``, used by this repository's own trainers): a file written for the
upstream code bases registers ``MaPLe``, ``IVLP``, ``PromptSRC``, ... with the plain decorator,
so dropping it into ``trainers/`` under any file name gives it the name, whatever the import
order, while the built-in class stays defined (and keeps declaring its config node).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .logger import get_logger
from .tools import get_most_similar_str_to_a_from_b

__all__ = ["Registry"]

logger = get_logger(__name__)


def _qualname(obj: Any) -> str:
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', obj)}"


class Registry:
    """Maps a class ``__name__`` to the class; used as ``@REG.register()`` or ``REG.register(C)``.

    Registering an existing name raises KeyError unless ``force=True`` or exactly one of the two
    is ``builtin``: then the other one holds the name (a warning names both).
    """

    def __init__(self, name: str) -> None:
        self._name = name
        self._obj_map: dict[str, Any] = {}
        self._builtin: set[str] = set()

    def _do_register(self, name: str, obj: Any, force: bool = False, builtin: bool = False) -> None:
        if name in self._obj_map and not force:
            old_builtin = name in self._builtin
            if old_builtin == builtin:
                raise KeyError(
                    f'An object named "{name}" was already registered in "{self._name}" '
                    f"registry by {_qualname(self._obj_map[name])} (pass force=True to replace "
                    "it, or give the new class another name)"
                )
            kept, other = (obj, self._obj_map[name]) if old_builtin else (self._obj_map[name], obj)
            logger.warning(
                f'{self._name} "{name}": using {_qualname(kept)} instead of the built-in '
                f"{_qualname(other)}"
            )
            if not old_builtin:
                return
        self._obj_map[name] = obj
        if builtin:
            self._builtin.add(name)
        else:
            self._builtin.discard(name)

    def register(self, obj: Any = None, force: bool = False, builtin: bool = False) -> Any:
        if obj is None:

            def wrapper(fn_or_class: Any) -> Any:
                self._do_register(fn_or_class.__name__, fn_or_class, force=force, builtin=builtin)
                return fn_or_class

            return wrapper
        self._do_register(obj.__name__, obj, force=force, builtin=builtin)
        return obj

    def get(self, name: str) -> Callable[..., Any]:
        if name not in self._obj_map:
            closest = get_most_similar_str_to_a_from_b(name, list(self._obj_map))
            hint = f' Did you mean "{closest}"?' if closest is not None else ""
            raise KeyError(
                f'Object name "{name}" does not exist in "{self._name}" registry; registered '
                f"names: {self.registered_names()}.{hint}"
            )
        return self._obj_map[name]

    def registered_names(self) -> list[str]:
        return list(self._obj_map.keys())

    def __contains__(self, name: object) -> bool:
        return name in self._obj_map

    def __iter__(self):  # noqa: ANN204
        return iter(self._obj_map.items())

    def __len__(self) -> int:
        return len(self._obj_map)

    def __repr__(self) -> str:
        return f"Registry(name={self._name!r}, names={self.registered_names()})"
