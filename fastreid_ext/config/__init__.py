from .defaults import add_ext_config, default_device, get_cfg

__all__ = ["add_ext_config", "default_device", "get_cfg"]
