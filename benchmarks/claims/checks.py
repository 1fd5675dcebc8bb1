"""Mechanism measures of the claims: a small registry filled by the core and by the projects.

A measure runs on a trained row's model over the evaluation's test clips with the generator's
frame marks (``frame_marks.json``) and returns numbers (reported beside the verdict, not part of
it). Each entry: ``CheckSpec(row, measure, passes, description, granularity)`` with
``measure(model, clips, data) -> dict``: ``clips()`` yields ``(images (B, T, C, H, W), marks)``
(``marks[b][t]``: the frame's mark, ``{}`` when unmarked) and ``data`` is the claim's generator
arguments. The core registers its own checks (:mod:`benchmarks.claims.runner`); a project puts
its checks in ``<package>/claims_checks.py`` as ``CLAIM_CHECKS = {name: CheckSpec-like tuple}``,
found through the plugin's project registry (entry points ``fastreid_ext.projects``).
"""
from __future__ import annotations

import collections
import importlib
from typing import Callable, Dict, Optional

__all__ = ["CheckSpec", "register_check", "get_check", "all_checks"]

CheckSpec = collections.namedtuple("CheckSpec", "row measure passes description granularity")
CheckSpec.__new__.__defaults__ = (None,)  # granularity: the node granularity a check reads (report)

_CHECKS: Dict[str, CheckSpec] = {}
_PROJECTS_LOADED = False


def register_check(name: str, row: str, measure: Callable, passes: Callable[[Dict], bool], description: str,
                   granularity: Optional[int] = None) -> None:
    if name in _CHECKS:
        raise KeyError(f"claims check {name!r} registered twice")
    _CHECKS[name] = CheckSpec(row, measure, passes, description, granularity)


def _load_projects() -> None:
    """Import ``<package>.claims_checks`` of every installed project that has one."""
    global _PROJECTS_LOADED
    if _PROJECTS_LOADED:
        return
    _PROJECTS_LOADED = True
    from fastreid_ext.config import project_entry_points

    for ep in project_entry_points():
        package = ep.value.split(":")[0]
        if importlib.util.find_spec(package) is None:
            continue
        try:
            module = importlib.import_module(f"{package}.claims_checks")
        except ModuleNotFoundError as e:
            if e.name != f"{package}.claims_checks":
                raise
            continue
        for name, spec in getattr(module, "CLAIM_CHECKS", {}).items():
            register_check(name, *spec)


def all_checks() -> Dict[str, CheckSpec]:
    _load_projects()
    return dict(_CHECKS)


def get_check(name: str) -> CheckSpec:
    checks = all_checks()
    if name not in checks:
        raise KeyError(f"unknown claims check {name!r}; registered: {', '.join(sorted(checks))}")
    return checks[name]
