"""A name -> object registry: how configs select classes and functions, and how plugins add new ones."""

from typing import Any, Callable, Dict, Iterator, Optional, Tuple


class Registry:
    """Maps names to objects (classes or builder functions).

    Usage, as a decorator or a call::

        BACKBONE_REGISTRY = Registry("BACKBONE")

        @BACKBONE_REGISTRY.register()
        class MyBackbone(nn.Module): ...

        BACKBONE_REGISTRY.register(MyBackbone, name="other_name")
        cls = BACKBONE_REGISTRY.get("MyBackbone")
    """

    def __init__(self, name: str):
        self._name = name
        self._obj_map: Dict[str, Any] = {}

    def _do_register(self, name: str, obj: Any) -> None:
        if name in self._obj_map and self._obj_map[name] is not obj:
            raise KeyError(f"An object named '{name}' is already registered in the '{self._name}' registry")
        self._obj_map[name] = obj

    def register(self, obj: Any = None, name: Optional[str] = None) -> Any:
        if obj is None:
            def decorator(func_or_class: Any) -> Any:
                self._do_register(name or func_or_class.__name__, func_or_class)
                return func_or_class

            return decorator
        self._do_register(name or obj.__name__, obj)
        return obj

    def get(self, name: str) -> Any:
        if name not in self._obj_map:
            raise KeyError(
                f"No object named '{name}' in the '{self._name}' registry; "
                f"registered names: {sorted(self._obj_map)}"
            )
        return self._obj_map[name]

    def get_configured(self, key: str, name: str) -> Any:
        """The object registered as ``name``, which the config key ``key`` selects; ValueError naming the key, the
        value and the registered names when there is none."""
        if name not in self._obj_map:
            raise ValueError(f"{key}={name!r} is not registered; registered: {sorted(self._obj_map)}")
        return self._obj_map[name]

    def __contains__(self, name: str) -> bool:
        return name in self._obj_map

    def __iter__(self) -> Iterator[Tuple[str, Any]]:
        return iter(self._obj_map.items())

    def __repr__(self) -> str:
        return f"Registry({self._name}: {sorted(self._obj_map)})"
