#!/usr/bin/env python
"""Print the metrics table of a run: ``python tools/show_results.py OUTPUT_DIR[/results.json]``.

A run folder is read through its ``results.json``. Results of a run that has not finished
(``"complete": false``: an intermediate evaluation, or a run that was killed) are printed under
a line saying so. A missing or unreadable file is a one-line error (exit status 2).
"""
from __future__ import annotations

import json
import os
import sys

from tabulate import tabulate

KEYS = ("Rank-1", "Rank-5", "Rank-10", "Rank-20", "mAP", "mINP")
INCOMPLETE = ("INCOMPLETE: {path} holds the intermediate results of a run that has not finished "
              "(or was killed); they are not the run's final results")


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


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: show_results.py OUTPUT_DIR[/results.json]", file=sys.stderr)
        raise SystemExit(2)
    try:
        results, path = read_results(argv[0])
        text = table(results)
    except (ValueError, TypeError, KeyError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if results.get("complete") is False:
        print(INCOMPLETE.format(path=path))
        print(INCOMPLETE.format(path=path), file=sys.stderr)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
