"""Name -> class registries (one per extension point: trainers, datasets, evaluators)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .tools import get_most_similar_str_to_a_from_b

__all__ = ["Registry"]


class Registry:
    """Maps a class ``__name__`` to the class; used as ``@REG.register()`` or ``REG.register(C)``.

    Registering an existing name raises KeyError unless ``force=True``.
    """

    def __init__(self, name: str) -> None:
        self._name = name
        self._obj_map: dict[str, Any] = {}

    def _do_register(self, name: str, obj: Any, force: bool = False) -> None:
        if name in self._obj_map and not force:
            raise KeyError(
                f'An object named "{name}" was already registered in "{self._name}" registry '
                "(pass force=True to replace it)"
            )
        self._obj_map[name] = obj

    def register(self, obj: Any = None, force: bool = False) -> Any:
        if obj is None:

            def wrapper(fn_or_class: Any) -> Any:
                self._do_register(fn_or_class.__name__, fn_or_class, force=force)
                return fn_or_class

            return wrapper
        self._do_register(obj.__name__, obj, force=force)
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
