"""Config keys that do not change the embedding of an input, for the deployment config hash
(:func:`fastreid_ext.deploy.features_file.config_hash`).

The core's own keys (``MODEL.DEVICE``, ``MODEL.WEIGHTS``, ``MODEL.LOSSES``, ...) are listed in
:mod:`fastreid_ext.deploy.features_file`. A project declares its own keys when its package is
imported, next to the keys it adds, e.g. a key that only names the starting weights of a
training stage::

    from fastreid_ext.config import exclude_from_embedding_hash
    exclude_from_embedding_hash("MODEL.MYMETHOD.INIT_WEIGHTS")

Only keys under ``MODEL.`` are hashed through this registry; anything else raises.
"""
from __future__ import annotations

from typing import Tuple

__all__ = ["exclude_from_embedding_hash", "embedding_hash_exclusions"]

_EXCLUDED: dict = {}  # dotted key -> None (an ordered set)


def exclude_from_embedding_hash(*keys: str) -> None:
    """Declare dotted ``MODEL.*`` config keys that do not change the embedding (idempotent)."""
    for key in keys:
        parts = key.split(".") if isinstance(key, str) else []
        if len(parts) < 2 or parts[0] != "MODEL" or not all(parts):
            raise ValueError(f"a hash exclusion must be a dotted key under MODEL, e.g. "
                             f"'MODEL.MYMETHOD.INIT_WEIGHTS'; got {key!r}")
        _EXCLUDED[key] = None


def embedding_hash_exclusions() -> Tuple[str, ...]:
    """Every key declared with :func:`exclude_from_embedding_hash`, in declaration order."""
    return tuple(_EXCLUDED)
