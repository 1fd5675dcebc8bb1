"""Print the metrics table of a run (``fastreid-ext show`` / ``tools/show_results.py``).

    fastreid-ext show logs/demo                 # the run's folder or its results.json
"""
from __future__ import annotations

import argparse
import json
import os
from typing import Optional, Sequence

from tabulate import tabulate

__all__ = ["KEYS", "main", "table"]

KEYS = ("Rank-1", "Rank-5", "Rank-10", "Rank-20", "mAP", "mINP")


def table(results: dict) -> str:
    """One row per test set; the columns are the :data:`KEYS` that some test set reports (image
    datasets report the host's keys, without Rank-20); a metric a set lacks shows as ``-``."""
    results = {k: v for k, v in results.items() if k != "complete"}  # the trainer's finished-run marker
    if all(isinstance(v, dict) for v in results.values()):
        named = list(results.items())
    else:
        named = [(results.get("dataset", "test"), results)]
    keys = [k for k in KEYS if any(k in r for _, r in named)]
    rows = [[name] + [f"{r[k]:.2f}" if k in r else "-" for k in keys] for name, r in named]
    return tabulate(rows, headers=["dataset", *keys], tablefmt="github", disable_numparse=True)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Print the metrics of a run (its results.json) as a table.")
    p.add_argument("results", metavar="RESULTS", help="OUTPUT_DIR/results.json, or the OUTPUT_DIR itself")
    return p


def main(argv: Optional[Sequence[str]] = None) -> str:
    args = parser().parse_args(argv)
    path = args.results
    if os.path.isdir(path):
        path = os.path.join(path, "results.json")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"results file {path!r} does not exist (a run writes OUTPUT_DIR/results.json "
                                f"when it evaluates)")
    try:
        with open(path) as f:
            text = table(json.load(f))
    except (json.JSONDecodeError, TypeError, AttributeError) as e:
        raise ValueError(f"results file {path!r} is not a results.json of a run ({e})") from None
    print(text)
    return text
