"""Shipped configs found by name.

``build_config("Video-Baseline/mars.yml")`` works from any directory, from a source checkout
and from an installed wheel: a config name that is not an existing file is looked up under
each *config root*, the folder that holds ``configs/`` and ``projects/<Name>/configs/``:

- a source checkout: the repository (the folder above the ``fastreid_ext`` package);
- an installed wheel: ``fastreid_ext/_configs/`` (the build copies the two trees there with
  their relative layout, so ``_BASE_: ../../../../configs/...`` still resolves; ``setup.py``).

Under a root a name is tried as given (``configs/Video-Baseline/mars.yml``,
``projects/<Name>/configs/<rest>``), under ``configs/`` (``Video-Baseline/mars.yml``) and under
``projects/<Name>/configs/`` as ``<Name>/<rest>``; ``.yml`` may be left out.
"""
from __future__ import annotations

import glob
import os
from typing import List

__all__ = ["config_roots", "find_config", "list_configs"]

_PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def config_roots() -> List[str]:
    """The folders holding ``configs/`` (source checkout first, then the installed copy)."""
    roots = [os.path.dirname(_PACKAGE), os.path.join(_PACKAGE, "_configs")]
    return [r for r in roots if os.path.isdir(os.path.join(r, "configs"))]


def _candidates(root: str, name: str) -> List[str]:
    head, _, rest = name.partition("/")
    out = [os.path.join(root, name), os.path.join(root, "configs", name)]
    if rest:
        out.append(os.path.join(root, "projects", head, "configs", rest))
    return out


def find_config(name: str) -> str:
    """The path of the config ``name``: ``name`` itself when it is a file, else the first shipped
    config it names (see the module docstring). Raises ``FileNotFoundError`` in one line."""
    if os.path.isfile(name):
        return name
    names = [name] if name.endswith((".yml", ".yaml")) else [name, name + ".yml"]
    if not os.path.isabs(name):
        for root in config_roots():
            for n in names:
                for path in _candidates(root, n.replace(os.sep, "/")):
                    if os.path.isfile(path):
                        return path
    raise FileNotFoundError(f"config file {name!r} does not exist (neither a file nor a shipped config "
                            f"name; `fastreid-ext configs` lists the shipped ones)")


def list_configs() -> List[str]:
    """The shipped config names, as :func:`find_config` accepts them (``Video-Baseline/mars.yml``,
    ``<Name>/<rest>`` for ``projects/<Name>/configs/<rest>``); base configs included."""
    roots = config_roots()
    if not roots:
        return []
    root = roots[0]
    names = [os.path.relpath(p, os.path.join(root, "configs"))
             for p in glob.glob(os.path.join(root, "configs", "**", "*.yml"), recursive=True)]
    for p in glob.glob(os.path.join(root, "projects", "*", "configs", "**", "*.yml"), recursive=True):
        project = os.path.relpath(p, os.path.join(root, "projects")).split(os.sep)[0]
        rel = os.path.relpath(p, os.path.join(root, "projects", project, "configs"))
        names.append(f"{project}/{rel}")
    return sorted(n.replace(os.sep, "/") for n in names)
