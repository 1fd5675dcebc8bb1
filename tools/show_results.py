#!/usr/bin/env python
"""Print the metrics table of a run: ``python tools/show_results.py OUTPUT_DIR/results.json``."""
from __future__ import annotations

import json
import sys

from tabulate import tabulate

KEYS = ("Rank-1", "Rank-5", "Rank-10", "Rank-20", "mAP", "mINP")


def table(results: dict) -> str:
    results = {k: v for k, v in results.items() if k != "complete"}  # the trainer's finished-run marker
    if all(isinstance(v, dict) for v in results.values()):
        rows = [[name] + [f"{r.get(k, float('nan')):.2f}" for k in KEYS] for name, r in results.items()]
    else:
        rows = [[results.get("dataset", "test")] + [f"{results.get(k, float('nan')):.2f}" for k in KEYS]]
    return tabulate(rows, headers=["dataset", *KEYS], tablefmt="github")


def main(argv=None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        raise SystemExit("usage: show_results.py OUTPUT_DIR/results.json")
    with open(argv[0]) as f:
        print(table(json.load(f)))


if __name__ == "__main__":
    main()
