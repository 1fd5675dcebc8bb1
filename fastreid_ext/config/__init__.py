from .defaults import add_ext_config, default_device, get_cfg
from .setup import PROJECTS, build_config, register_projects

__all__ = ["PROJECTS", "add_ext_config", "build_config", "default_device", "get_cfg", "register_projects"]
