from .defaults import add_ext_config, default_device, get_cfg
from .hash_exclusions import embedding_hash_exclusions, exclude_from_embedding_hash
from .lookup import config_roots, find_config, list_configs
from .moved_keys import register_moved_key
from .setup import PROJECT_ENTRY_POINT_GROUP, build_config, project_entry_points, register_projects
from .validate import register_validator, validate_config

__all__ = [
    "PROJECT_ENTRY_POINT_GROUP",
    "add_ext_config",
    "build_config",
    "config_roots",
    "find_config",
    "list_configs",
    "default_device",
    "embedding_hash_exclusions",
    "exclude_from_embedding_hash",
    "get_cfg",
    "project_entry_points",
    "register_moved_key",
    "register_projects",
    "register_validator",
    "validate_config",
]
