"""Mean and standard deviation of metrics over the random splits of a dataset.

iLIDS-VID, PRID-2011 and FGPR are evaluated on 10 random train/test splits and reported as the
mean over the splits, as their papers and the datasets' published protocols do; the standard
deviation is reported alongside.
"""
from __future__ import annotations

import math
from numbers import Real
from typing import Any, Dict, List, Mapping, Sequence

import numpy as np

__all__ = ["summarize_splits"]


def summarize_splits(results: Sequence[Mapping[str, Any]], ddof: int = 1) -> Dict[str, Any]:
    """Aggregates per-split result dicts (e.g. ``{"Rank-1": .., "mAP": .., "mINP": ..}``).

    Args:
        results: one dict per split, all with the same keys. Numeric values are aggregated;
            non-numeric values (e.g. the host's ``"metric": "cosine"``) must be equal in every
            split and are passed through.
        ddof: delta degrees of freedom of the standard deviation: ``std = sqrt(sum((x - mean)^2)
            / (n - ddof))``. The default 1 is the sample standard deviation; with
            ``n <= ddof`` splits it is undefined and reported as NaN.

    Returns:
        ``{key: {"mean": float, "std": float}}`` for numeric keys, ``{key: value}`` for passed
        through ones, plus ``"num_splits"`` and ``"ddof"``.
    """
    if isinstance(results, Mapping) or not isinstance(results, Sequence):
        raise ValueError("results must be a list of per-split dicts")
    if len(results) == 0:
        raise ValueError("results is empty: nothing to summarise")
    if ddof < 0:
        raise ValueError(f"ddof must be >= 0, got {ddof}")
    keys = list(results[0].keys())
    for i, r in enumerate(results):
        if set(r.keys()) != set(keys):
            raise ValueError(
                f"split {i} has keys {sorted(r.keys())}, split 0 has {sorted(keys)}: splits must report the same metrics"
            )
    out: Dict[str, Any] = {}
    n = len(results)
    for k in keys:
        vals: List[Any] = [r[k] for r in results]
        if all(isinstance(v, (Real, np.number)) and not isinstance(v, bool) for v in vals):
            x = np.asarray(vals, dtype=np.float64)
            if not np.isfinite(x).all():
                raise ValueError(f"metric {k!r} has non-finite values over the splits: {vals}")
            std = float(np.std(x, ddof=ddof)) if n > ddof else math.nan
            out[k] = {"mean": float(x.mean()), "std": std}
        elif all(v == vals[0] for v in vals):
            out[k] = vals[0]
        else:
            raise ValueError(f"non-numeric entry {k!r} differs between splits: {vals}")
    out["num_splits"] = n
    out["ddof"] = ddof
    return out
