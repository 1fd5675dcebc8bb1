"""Config keys that moved: the old spelling keeps loading, with a warning naming the new one.

A project that moves a node of its keys declares it next to the keys it adds, e.g.::

    from fastreid_ext.config import register_moved_key
    register_moved_key("TEST.MYSTAT", "MYPKG.MYSTAT")

:func:`~.setup.build_config` then reads ``TEST.MYSTAT.X`` in a YAML file (``_BASE_`` files
included) or in the ``KEY VALUE`` overrides as ``MYPKG.MYSTAT.X`` (logging one warning that
lists them); a file that sets both spellings keeps the new one. Old run folders' ``config.yaml`` (every
key written out) therefore still load.
"""
from __future__ import annotations

import logging
from typing import Dict, List, Optional, Sequence

__all__ = ["moved_key", "move_keys_in_opts", "move_keys_in_tree", "register_moved_key"]

logger = logging.getLogger(__name__)

_MOVED: Dict[str, str] = {}  # old dotted node or key -> new one


def register_moved_key(old: str, new: str) -> None:
    """Read the dotted key or node ``old`` (and everything below it) as ``new`` (idempotent)."""
    _MOVED[old] = new


def moved_key(key: str) -> Optional[str]:
    """The new spelling of the dotted ``key`` when it, or a node above it, moved; else ``None``."""
    for old, new in _MOVED.items():
        if key == old or key.startswith(old + "."):
            return new + key[len(old):]
    return None


def _warn(moves: List[str], where: str) -> None:
    if moves:
        logger.warning("%s: moved config keys read in their new spelling: %s", where, "; ".join(moves))


def move_keys_in_opts(opts: Sequence[str]) -> List[str]:
    """``KEY VALUE`` overrides with every moved key in its new spelling."""
    out, moves = list(opts), []
    for i in range(0, len(out) - 1, 2):
        new = moved_key(out[i])
        if new is not None:
            moves.append(f"{out[i]} -> {new}")
            out[i] = new
    _warn(moves, "command-line overrides")
    return out


def _flat(tree: dict, prefix: str = "") -> Dict[str, object]:
    out: Dict[str, object] = {}
    for k, v in tree.items():
        if isinstance(v, dict) and v:
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def move_keys_in_tree(tree: dict, where: str) -> dict:
    """A loaded YAML mapping with every moved key in its new spelling (in place; returned).
    A key set under both spellings keeps the new spelling's value."""
    if not _MOVED or not isinstance(tree, dict):
        return tree
    moves = []
    for key, value in _flat(tree).items():
        new = moved_key(key)
        if new is None:
            continue
        moves.append(f"{key} -> {new}")
        _pop(tree, key.split("."))
        target = tree
        for p in new.split(".")[:-1]:
            target = target.setdefault(p, {})
        target.setdefault(new.split(".")[-1], value)
    _warn(moves, where)
    return tree


def _pop(tree: dict, parts: List[str]) -> None:
    """Remove the dotted key ``parts`` from ``tree`` and the mappings that leaves empty."""
    if len(parts) > 1:
        _pop(tree[parts[0]], parts[1:])
        if not tree[parts[0]]:
            del tree[parts[0]]
    else:
        del tree[parts[0]]
