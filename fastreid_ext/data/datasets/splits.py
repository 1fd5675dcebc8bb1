"""Multi-split protocols (iLIDS-VID, PRID-2011, CUHK01 report the mean over 10 splits):
split-range parsing and aggregation of per-split result dicts (used by ``tools/run_splits.py``).
"""
from __future__ import annotations

from numbers import Real
from typing import Dict, List, Mapping, Sequence

from tabulate import tabulate

from fastreid_ext.evaluation import split_stats

__all__ = ["parse_splits", "summarize_splits", "summary_table"]


def parse_splits(spec: str) -> List[int]:
    """``"0-9"`` -> [0, ..., 9]; ``"0,3,5-6"`` -> [0, 3, 5, 6]; ``"2"`` -> [2].

    Raises ``ValueError`` on empty, negative, reversed or repeated entries.
    """
    out: List[int] = []
    for part in spec.split(","):
        part = part.strip()
        try:
            if "-" in part[1:]:
                lo, hi = (int(x) for x in part.split("-", 1))
                if lo > hi:
                    raise ValueError
                out.extend(range(lo, hi + 1))
            else:
                out.append(int(part))
        except ValueError:
            raise ValueError(f"bad split spec {spec!r}: expected e.g. '0-9' or '0,2,5-7'") from None
    if not out or min(out) < 0 or len(set(out)) != len(out):
        raise ValueError(f"bad split spec {spec!r}: splits must be distinct non-negative ints")
    return out


def _is_metric(value) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool)


def _summarize_flat(results: Sequence[Mapping], ddof: int) -> Dict[str, Dict]:
    """Numeric entries only (the run's ``dataset`` name is dropped), through the evaluation's
    :func:`fastreid_ext.evaluation.split_stats.summarize_splits`."""
    numeric = [{k: v for k, v in r.items() if _is_metric(v)} for r in results]
    summary = split_stats.summarize_splits(numeric, ddof=ddof)
    return {k: v for k, v in summary.items() if isinstance(v, dict)}


def summarize_splits(results: Sequence[Mapping], ddof: int = 1) -> Dict[str, Dict]:
    """Mean and standard deviation (``ddof=1``: sample std) of every numeric metric over splits.

    ``results`` holds one result dict per split, either flat (``{"Rank-1": 80.0, "mAP": ...}``)
    or per test dataset (``{"iLIDSVID": {"Rank-1": ...}}``, the nesting is kept in the output).
    Returns ``{metric: {"mean", "std"}}`` (or ``{dataset: {metric: {...}}}``); splits that do not
    report the same metrics raise ``ValueError``.
    """
    if not results:
        raise ValueError("summarize_splits: no results")
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
    """One row per split, then ``mean`` and ``std`` rows (per dataset when nested)."""
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
