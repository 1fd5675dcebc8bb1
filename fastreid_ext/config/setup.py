"""Building the full config of a run: host defaults + plugin keys + every project's keys."""
from __future__ import annotations

import importlib
from typing import Iterable, Sequence

from fastreid.config import CfgNode

from .defaults import get_cfg

#: (package, config function) of the projects shipped with the plugin; each package registers
#: its meta-architecture, heads and losses when imported.
PROJECTS: Sequence[tuple] = (
    ("fgreid", "add_fgreid_config"),
    ("mgrafa", "add_mgrafa_config"),
    ("mgre", "add_mgre_config"),
)


def register_projects(projects: Iterable[tuple] = PROJECTS) -> list:
    """Import every project package; return the config functions they provide."""
    adders = []
    for package, fn in projects:
        module = importlib.import_module(package)
        adder = getattr(module, fn, None)
        if adder is not None:
            adders.append(adder)
    return adders


def build_config(config_file: str = "", opts: Sequence[str] = (), freeze: bool = True) -> CfgNode:
    """Host defaults + ``add_ext_config`` + each project's ``add_<x>_config``, then the YAML
    file (with ``_BASE_`` inheritance) and ``KEY VALUE`` overrides.

    An unknown key in the file or the overrides raises ``KeyError`` naming it.
    """
    cfg = get_cfg()
    for adder in register_projects():
        adder(cfg)
    try:
        if config_file:
            cfg.merge_from_file(config_file)
        if opts:
            cfg.merge_from_list(list(opts))
    except (KeyError, AssertionError) as e:  # yacs asserts on unknown keys in merge_from_list
        if isinstance(e, AssertionError) and "Non-existent" not in str(e):
            raise
        raise KeyError(f"{e.args[0] if e.args else e} (config file {config_file!r}; every key must exist "
                       f"in fastreid's defaults, fastreid_ext.config.add_ext_config or a project's "
                       f"add_<project>_config)") from None
    if freeze:
        cfg.freeze()
    return cfg
