from .config import CfgNode, ConfigError, get_cfg
from .schedule import scale_schedule

__all__ = ["CfgNode", "ConfigError", "get_cfg", "scale_schedule"]
