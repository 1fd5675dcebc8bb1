"""Building the full config of a run: host defaults + plugin keys + every project's keys.

Projects plug in through Python entry points: a project package declares, in its
distribution's metadata (``pyproject.toml``)::

    [project.entry-points."fastreid_ext.projects"]
    mypkg = "mypkg:add_mypkg_config"

:func:`register_projects` loads every entry point of the group ``fastreid_ext.projects``
(``importlib.metadata``): loading imports the package, which registers its meta-architecture,
heads, losses and datasets in the host's registries, and returns its ``add_<x>_config(cfg)``,
which adds the project's config keys. The core never names a project; removing a project is
removing its entry point.

The merged config is validated (:func:`.validate.validate_config`: the core's checks and every
project's registered validator) before it is returned.
"""
from __future__ import annotations

from importlib.metadata import EntryPoint, entry_points
from typing import Callable, List, Sequence

from fastreid.config import CfgNode

from .defaults import get_cfg
from .lookup import find_config
from .moved_keys import move_keys_in_opts, move_keys_in_tree
from .validate import validate_config

__all__ = ["PROJECT_ENTRY_POINT_GROUP", "build_config", "project_entry_points", "register_projects"]

#: The entry-point group every project declares itself in.
PROJECT_ENTRY_POINT_GROUP = "fastreid_ext.projects"


def project_entry_points() -> List[EntryPoint]:
    """The installed projects' entry points, sorted by name (one per name: the first found on
    ``sys.path`` wins, like an import)."""
    found = {}
    for ep in entry_points(group=PROJECT_ENTRY_POINT_GROUP):
        found.setdefault(ep.name, ep)
    return [found[name] for name in sorted(found)]


def register_projects() -> List[Callable[[CfgNode], CfgNode]]:
    """Load every project entry point (importing its package registers its components);
    return their config functions in entry-point name order.

    A project that fails to import, or whose entry point is not callable, raises
    ``ImportError`` naming the entry point: a broken project is never silently left out.
    """
    adders = []
    for ep in project_entry_points():
        try:
            adder = ep.load()
        except Exception as e:  # ImportError, AttributeError, errors raised by the package
            raise ImportError(f"project entry point {ep.name!r} = {ep.value!r} (group "
                              f"{PROJECT_ENTRY_POINT_GROUP!r}) failed to load: {e!r}") from e
        if not callable(adder):
            raise ImportError(f"project entry point {ep.name!r} = {ep.value!r} is not a config "
                              f"function add_<x>_config(cfg)")
        adders.append(adder)
    return adders


def build_config(config_file: str = "", opts: Sequence[str] = (), freeze: bool = True) -> CfgNode:
    """Host defaults + ``add_ext_config`` + each project's ``add_<x>_config``, then the YAML
    file (with ``_BASE_`` inheritance) and ``KEY VALUE`` overrides.

    ``config_file`` is a path or a shipped config's name (:func:`.lookup.find_config`); a missing
    one raises ``FileNotFoundError``, an unreadable one ``ValueError``, both in one line. An
    unknown key in the file or the overrides raises ``KeyError`` naming it; a bad value raises
    ``ValueError`` / ``KeyError`` naming the key (:func:`.validate.validate_config`).
    """
    if config_file:
        config_file = find_config(config_file)
    cfg = get_cfg()
    for adder in register_projects():
        adder(cfg)
    try:
        if config_file:
            _merge_file(cfg, config_file)
        if opts:
            cfg.merge_from_list(move_keys_in_opts(opts))
    except (KeyError, AssertionError) as e:  # yacs asserts on unknown keys in merge_from_list
        if isinstance(e, AssertionError) and "Non-existent" not in str(e):
            raise
        raise KeyError(f"{e.args[0] if e.args else e} (config file {config_file!r}; every key must exist "
                       f"in fastreid's defaults, fastreid_ext.config.add_ext_config or a project's "
                       f"add_<project>_config)") from None
    validate_config(cfg)
    if freeze:
        cfg.freeze()
    return cfg


def _merge_file(cfg: CfgNode, config_file: str) -> None:
    """``cfg.merge_from_file`` (moved keys read in their new spelling, :mod:`.moved_keys`) with
    unreadable files (permissions, not YAML, not a mapping, a missing ``_BASE_``) reported as
    one-line ``ValueError`` s naming the file."""
    import yaml

    try:  # the host's merge_from_file (_BASE_ inheritance), moved keys in their new spelling
        loaded = CfgNode.load_yaml_with_base(config_file)
        cfg.merge_from_other_cfg(type(cfg)(move_keys_in_tree(loaded, f"config file {config_file!r}")))
    except FileNotFoundError as e:  # a _BASE_ that does not exist
        raise FileNotFoundError(f"config file {config_file!r}: {e.filename or e} does not exist") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"config file {config_file!r} cannot be read: {e}") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        what = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ValueError(f"config file {config_file!r} is not valid YAML: {what}{where}") from None
    except (AttributeError, TypeError) as e:  # a YAML list / scalar instead of a mapping
        raise ValueError(f"config file {config_file!r} is not a mapping of config keys ({e})") from None
