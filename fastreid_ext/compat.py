"""Narrow shims for the host ``fastreid==1.4.0`` on Python >= 3.10, torch >= 2, numpy 2.

Only what *cannot* be avoided at import time lives here. Everything else the host gets wrong on
today's stack (CUDA-only ``DataLoaderX``, run-time Cython build, CUDA-only AMP, GPU-only
re-ranking, double normalisation in flip test, hard-coded test workers) is avoided by our own
trainer hooks in :mod:`fastreid_ext.engine` and never by editing the installed host.

Each shim names the host file:line it addresses, checks whether it is still needed, and is
applied at most once. :func:`apply` returns the names of the shims it installed in this call.
"""
from __future__ import annotations

import collections
import collections.abc
import importlib
import logging
import sys
import types
from typing import List

logger = logging.getLogger(__name__)

_APPLIED: List[str] = []


def _needs_torch_six() -> bool:
    """``fastreid/data/build.py:11`` does ``from torch._six import string_classes``;
    ``torch._six`` was removed in torch 2.0."""
    try:
        mod = importlib.import_module("torch._six")
    except ModuleNotFoundError:
        return True
    return not hasattr(mod, "string_classes")


def _shim_torch_six() -> None:
    six = types.ModuleType("torch._six")
    six.string_classes = (str, bytes)
    six.__doc__ = "fastreid_ext.compat shim for fastreid/data/build.py:11 (removed in torch 2.0)"
    six.__fastreid_ext_shim__ = True
    sys.modules["torch._six"] = six
    import torch

    torch._six = six  # attribute access mirrors the import


def _needs_collections_mapping() -> bool:
    """``fastreid/data/build.py:12`` and ``fastreid/evaluation/testing.py:5`` do
    ``from collections import Mapping``, removed from ``collections`` in Python 3.10."""
    return not hasattr(collections, "Mapping")


def _shim_collections_mapping() -> None:
    collections.Mapping = collections.abc.Mapping


_SHIMS = (
    ("torch._six", _needs_torch_six, _shim_torch_six),
    ("collections.Mapping", _needs_collections_mapping, _shim_collections_mapping),
)


def needed() -> List[str]:
    """Names of the shims the running interpreter still needs."""
    return [name for name, need, _ in _SHIMS if need()]


def apply() -> List[str]:
    """Install the shims that are needed and not installed yet; idempotent.

    Returns the names installed by this call (empty on a second call, or when the host and
    the stack already agree).
    """
    installed = []
    for name, need, shim in _SHIMS:
        if name in _APPLIED or not need():
            continue
        shim()
        _APPLIED.append(name)
        installed.append(name)
        logger.debug("fastreid_ext.compat: installed shim %s", name)
    return installed


def applied() -> List[str]:
    """All shims installed in this process so far."""
    return list(_APPLIED)
