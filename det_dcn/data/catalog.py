"""Name -> dataset registries.

``DatasetCatalog`` maps a dataset name to a zero-argument function that returns the list of dataset dicts
(loading is lazy: nothing is read until ``get``). ``MetadataCatalog`` maps the same name to a ``Metadata``
object holding what the rest of the framework needs to know about the dataset (class names, the mapping from
dataset category ids to contiguous class indices, the annotation file for evaluation).
"""

import copy
from typing import Any, Callable, Dict, List


class _DatasetCatalog:
    """Registry of dataset name -> function returning ``List[dict]`` (see det_dcn/data/coco.py for the format)."""

    def __init__(self):
        self._fns: Dict[str, Callable[[], List[dict]]] = {}

    def register(self, name: str, fn: Callable[[], List[dict]]) -> None:
        if not isinstance(name, str) or not name:
            raise ValueError(f"DatasetCatalog.register: name must be a non-empty string, got {name!r}")
        if not callable(fn):
            raise ValueError(f"DatasetCatalog.register({name!r}): fn must be callable, got {type(fn).__name__}")
        if name in self._fns:
            raise ValueError(f"DatasetCatalog.register: dataset {name!r} is already registered")
        self._fns[name] = fn

    def get(self, name: str) -> List[dict]:
        """Call the registered function (every call loads anew, so callers may mutate the result)."""
        if name not in self._fns:
            raise KeyError(
                f"Dataset {name!r} is not registered. Registered datasets: {', '.join(sorted(self._fns))}. "
                "Register your own with det_dcn.data.register_coco_instances(name, json_file, image_root)."
            )
        dicts = self._fns[name]()
        if not isinstance(dicts, list):
            raise ValueError(f"The loader of dataset {name!r} returned {type(dicts).__name__}, expected a list")
        return dicts

    def list(self) -> List[str]:
        return sorted(self._fns)

    def remove(self, name: str) -> None:
        self._fns.pop(name, None)

    def __contains__(self, name: str) -> bool:
        return name in self._fns


class Metadata:
    """Attribute bag for one dataset. Setting an attribute twice to different values is an error (it would
    silently change e.g. the class order of a dataset other code already used)."""

    def __init__(self, name: str):
        object.__setattr__(self, "name", name)

    def __getattr__(self, key: str) -> Any:
        # Only called when normal lookup fails: name the dataset and what is there.
        known = sorted(k for k in self.__dict__ if k != "name")
        raise AttributeError(
            f"Metadata of dataset {self.__dict__.get('name')!r} has no attribute {key!r}; it has: {known}"
        )

    def __setattr__(self, key: str, value: Any) -> None:
        if key == "name":
            raise AttributeError("Metadata.name is fixed at creation")
        if key in self.__dict__ and self.__dict__[key] != value:
            raise ValueError(
                f"Metadata of dataset {self.name!r}: attribute {key!r} is already {self.__dict__[key]!r}, "
                f"refusing to change it to {value!r}"
            )
        object.__setattr__(self, key, value)

    def set(self, **kwargs) -> "Metadata":
        for k, v in kwargs.items():
            setattr(self, k, v)
        return self

    def get(self, key: str, default: Any = None) -> Any:
        return self.__dict__.get(key, default)

    def as_dict(self) -> Dict[str, Any]:
        return copy.copy(self.__dict__)

    def __repr__(self) -> str:
        return f"Metadata({self.__dict__})"


class _MetadataCatalog:
    """Registry of dataset name -> ``Metadata``; ``get`` creates an empty one on first use."""

    def __init__(self):
        self._metas: Dict[str, Metadata] = {}

    def get(self, name: str) -> Metadata:
        if name not in self._metas:
            self._metas[name] = Metadata(name)
        return self._metas[name]

    def remove(self, name: str) -> None:
        self._metas.pop(name, None)

    def list(self) -> List[str]:
        return sorted(self._metas)


DatasetCatalog = _DatasetCatalog()
MetadataCatalog = _MetadataCatalog()
