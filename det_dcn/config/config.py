"""get_cfg() and a CfgNode that follows ``_BASE_`` and names the file and key when a value is wrong."""

import os
from typing import Any, List

import yaml
from yacs.config import CfgNode as _YacsCfgNode

BASE_KEY = "_BASE_"


class ConfigError(ValueError):
    """A config file or override that cannot be merged: the message names the file, the key and the value."""


class CfgNode(_YacsCfgNode):
    """yacs CfgNode with ``_BASE_`` inheritance and errors that say where the bad value came from."""

    @classmethod
    def load_yaml_with_base(cls, filename: str, _chain: tuple = ()) -> dict:
        """Read ``filename`` and, recursively, the ``_BASE_`` file it names (relative to itself).
        ``_chain``: the files that led here, to name a ``_BASE_`` cycle instead of recursing forever."""
        if os.path.realpath(filename) in (os.path.realpath(f) for f in _chain):
            raise ConfigError(f"{BASE_KEY} cycle: " + " -> ".join(_chain + (filename,)))
        if not os.path.isfile(filename):
            raise ConfigError(f"Config file '{filename}' does not exist")
        with open(filename, "r") as f:
            try:
                cfg = yaml.safe_load(f)
            except yaml.YAMLError as e:
                raise ConfigError(f"Config file '{filename}' is not valid YAML: {e}") from e
        if cfg is None:
            return {}
        if not isinstance(cfg, dict):
            raise ConfigError(f"Config file '{filename}' must hold a mapping of keys, got {type(cfg).__name__}")
        base = cfg.pop(BASE_KEY, None)
        if base is None:
            return cfg
        base_path = os.path.expanduser(base)
        if not os.path.isabs(base_path):
            base_path = os.path.join(os.path.dirname(filename), base_path)
        base_cfg = cls.load_yaml_with_base(base_path, _chain + (filename,))
        _merge_dicts(cfg, base_cfg)
        return base_cfg

    def merge_from_file(self, cfg_filename: str, allow_unsafe: bool = False) -> None:
        loaded = self.load_yaml_with_base(cfg_filename)
        try:
            self.merge_from_other_cfg(type(self)(loaded))
        except (KeyError, ValueError) as e:
            raise ConfigError(f"In config file '{cfg_filename}': {_message(e)}") from e

    def merge_from_list(self, cfg_list: List[Any]) -> None:
        if len(cfg_list) % 2 != 0:
            raise ConfigError(
                f"Overrides must be KEY VALUE pairs; got an odd number of items: {list(cfg_list)}"
            )
        try:
            super().merge_from_list(list(cfg_list))
        except (KeyError, ValueError, AssertionError) as e:
            raise ConfigError(f"In command-line overrides {list(cfg_list)}: {_message(e)}") from e

    def dump(self, **kwargs) -> str:
        return super().dump(**kwargs)


def _merge_dicts(src: dict, dst: dict) -> None:
    """Recursively write ``src`` over ``dst`` (plain dicts, as loaded from YAML)."""
    for k, v in src.items():
        if isinstance(v, dict) and isinstance(dst.get(k), dict):
            _merge_dicts(v, dst[k])
        else:
            dst[k] = v


def _message(e: Exception) -> str:
    return e.args[0] if e.args else repr(e)


def get_cfg() -> CfgNode:
    """A fresh copy of det_dcn's defaults (see det_dcn/config/defaults.py)."""
    from .defaults import _C

    return CfgNode(_C.clone())
