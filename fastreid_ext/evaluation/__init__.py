"""Evaluation: vectorised rank metrics, metrics straight from features, split statistics.

Public names are imported lazily (``torch``-heavy modules load on first use).
"""
import importlib

_LAZY = {
    "evaluate_rank": ".rank",
    "RankResult": ".rank",
    "NoValidQueryError": ".rank",
    "PROTOCOLS": ".rank",
    "evaluate_features": ".metrics_from_features",
    "summarize_splits": ".split_stats",
}

__all__ = sorted(_LAZY)


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
