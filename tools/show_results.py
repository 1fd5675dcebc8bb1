#!/usr/bin/env python
"""Print the metrics table of a run: ``python tools/show_results.py OUTPUT_DIR/results.json``."""
from __future__ import annotations

import json
import sys

from tabulate import tabulate

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


def main(argv=None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        raise SystemExit("usage: show_results.py OUTPUT_DIR/results.json")
    with open(argv[0]) as f:
        print(table(json.load(f)))


if __name__ == "__main__":
    main()
