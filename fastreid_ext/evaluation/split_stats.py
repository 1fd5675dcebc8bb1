"""Mean and standard deviation of metrics over the random splits of a dataset.

iLIDS-VID, PRID-2011 and FGPR are evaluated on 10 random train/test splits and reported as the
mean over the splits, as their papers and the datasets' published protocols do; the standard
deviation is reported alongside.

:func:`summarize_splits` summarises one flat result dict per split (metadata checked and passed
through); :func:`summarize_split_metrics` keeps the metrics only, flat or per test dataset, and
:func:`summary_table` prints them (``tools/run_splits.py``). The split-range syntax is
:func:`fastreid_ext.data.datasets.splits.parse_splits`.
"""
from __future__ import annotations

import math
from numbers import Real
from typing import Any, Dict, List, Mapping, Sequence

import numpy as np
from tabulate import tabulate

__all__ = ["summarize_splits", "summarize_split_metrics", "summary_table"]


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


def _is_metric(value) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool)


def _summarize_flat(results: Sequence[Mapping], ddof: int) -> Dict[str, Dict]:
    """Numeric entries only (the run's ``dataset`` name is dropped), through
    :func:`summarize_splits`."""
    numeric = [{k: v for k, v in r.items() if _is_metric(v)} for r in results]
    summary = summarize_splits(numeric, ddof=ddof)
    return {k: v for k, v in summary.items() if isinstance(v, dict)}


def summarize_split_metrics(results: Sequence[Mapping], ddof: int = 1) -> Dict[str, Dict]:
    """Mean and standard deviation (``ddof=1``: sample std) of every numeric metric over splits,
    the metrics only (the table and ``splits_summary.json`` of ``tools/run_splits.py``).

    Unlike :func:`summarize_splits` (one flat dict, non-numeric entries checked equal and passed
    through, ``num_splits`` / ``ddof`` added), non-numeric entries are dropped and ``results``
    holds one result dict per split, either flat (``{"Rank-1": 80.0, "mAP": ...}``)
    or per test dataset (``{"iLIDSVID": {"Rank-1": ...}}``, the nesting is kept in the output).
    Returns ``{metric: {"mean", "std"}}`` (or ``{dataset: {metric: {...}}}``); splits that do not
    report the same metrics raise ``ValueError``.
    """
    if not results:
        raise ValueError("summarize_split_metrics: no results")
    if all(isinstance(v, Mapping) for v in results[0].values()) and results[0]:
        out = {}
        for name in results[0]:
            per = []
            for i, r in enumerate(results):
                if name not in r or not isinstance(r[name], Mapping):
                    raise ValueError(f"result {i} has no results for dataset {name!r} (keys: {sorted(r)})")
                per.append(r[name])
            out[name] = _summarize_flat(per, ddof)
        return out
    return _summarize_flat(results, ddof)


def summary_table(splits: Sequence[int], results: Sequence[Mapping], summary: Mapping) -> str:
    """One row per split, then ``mean`` and ``std`` rows (per dataset when nested), from the
    ``summary`` of :func:`summarize_split_metrics`."""
    blocks = summary.items() if all("mean" not in v for v in summary.values()) else [("", summary)]
    tables = []
    for name, flat in blocks:
        keys = list(flat)
        rows = []
        for split, r in zip(splits, results):
            r = r[name] if name else r
            rows.append([f"split {split}"] + [f"{r[k]:.2f}" for k in keys])
        rows.append(["mean"] + [f"{flat[k]['mean']:.2f}" for k in keys])
        rows.append(["std"] + [f"{flat[k]['std']:.2f}" for k in keys])
        table = tabulate(rows, headers=[name or "split", *keys], tablefmt="github", disable_numparse=True)
        tables.append(table)
    return "\n\n".join(tables)
