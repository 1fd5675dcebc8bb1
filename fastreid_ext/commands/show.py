"""Print the metrics table of a run (``fastreid-ext show`` / ``tools/show_results.py``).

    fastreid-ext show logs/demo                 # the run's folder or its results.json
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Optional, Sequence

from tabulate import tabulate

__all__ = ["INCOMPLETE", "KEYS", "main", "read_results", "table"]

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


INCOMPLETE = ("INCOMPLETE: {path} holds the intermediate results of a run that has not finished "
              "(or was killed); they are not the run's final results")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Print the metrics of a run (its results.json) as a table.")
    p.add_argument("results", metavar="RESULTS", help="OUTPUT_DIR/results.json, or the OUTPUT_DIR itself")
    return p


def read_results(path: str) -> tuple:
    """``(results dict, the file read)``; ``path`` is a results file or a run folder. Raises
    ``ValueError`` naming the file when it is missing, not JSON or not a results object."""
    if os.path.isdir(path):
        path = os.path.join(path, "results.json")
    try:
        with open(path, encoding="utf-8") as f:
            results = json.load(f)
    except FileNotFoundError:
        raise ValueError(f"{path!r} does not exist (a run writes results.json at its first evaluation)") from None
    except (OSError, ValueError) as e:
        raise ValueError(f"cannot read {path!r} (truncated or not JSON): {type(e).__name__}: {e}") from None
    if not isinstance(results, dict) or not results:
        raise ValueError(f"{path!r} is not a results file (expected a JSON object of metrics)")
    return results, path


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Print the table (after an ``INCOMPLETE`` line for an unfinished run's results); a bad file
    is one line on stderr and exit status 2."""
    args = parser().parse_args(argv)
    try:
        results, path = read_results(args.results)
        text = table(results)
    except (ValueError, TypeError, KeyError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if results.get("complete") is False:
        print(INCOMPLETE.format(path=path))
        print(INCOMPLETE.format(path=path), file=sys.stderr)
    print(text)
    return 0
