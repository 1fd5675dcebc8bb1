"""``python -m benchmarks.claims --list | --claim NAME [--claim NAME ...] --seeds N [--quick]``.

Runs the pre-registered claims (``benchmarks/claims/claims.py``), each (claim, row, seed)
saved to ``<out>/<quick|full>/<claim>/<row>/seed<k>.json`` when it finishes and skipped when
present, then writes ``<claim>/claim.json`` (the verdict), ``claims.md`` (the table) and
``claims.png`` under ``<out>/<quick|full>/``. The shared backbone is pre-trained first if the
cache lacks it (``python -m benchmarks.claims.pretrain``; its time is reported apart).
"""
from __future__ import annotations

import argparse
import glob
import os
import subprocess
import sys
import time
from typing import List, Optional

from .claims import CLAIMS, HOLDS_RULE, get_claim
from .common import apply_threads, cache_dir, read_json
from .report import markdown, plot, verdict, write_claim_json
from .runner import BUDGETS, availability, run_claim


def _list() -> int:
    print(f"Verdict rule: {HOLDS_RULE}.\n")
    for c in CLAIMS:
        ok, why = availability(c)
        print(f"{c.name}  [{c.method}]  {'available' if ok else why}")
        print(f"  claim: {c.statement}")
        print(f"  data: {c.data}")
        print(f"  rows: {', '.join(r.name for r in c.rows)}; compare: "
              f"{', '.join(f'{a} > {b}' for a, b in c.compare)}" + (f"; checks: {', '.join(c.checks)}" if c.checks else ""))
    return 0


def _saved_records(out: str, mode: str, name: str) -> List[dict]:
    recs = []
    for path in sorted(glob.glob(os.path.join(out, mode, name, "*", "seed*.json"))):
        recs.append(read_json(path))
    return recs


def _run_parallel(claims, args, cache: str) -> None:
    """One child process per claim, at most ``--jobs`` at a time (results land in the same
    resumable files; the table is written by this process afterwards)."""
    base = [sys.executable, "-m", "benchmarks.claims", "--seeds", str(args.seeds), "--out", args.out,
            "--cache", cache] + (["--quick"] if args.quick else []) + (["--keep-logs"] if args.keep_logs else []) \
        + (["--threads", str(args.threads)] if args.threads else [])
    pending, running = list(claims), []
    failed = []
    while pending or running:
        while pending and len(running) < args.jobs:
            c = pending.pop(0)
            log = open(os.path.join(args.out, f"{c.name}.{'quick' if args.quick else 'full'}.log"), "a")
            running.append((c, subprocess.Popen(base + ["--claim", c.name], stdout=log, stderr=subprocess.STDOUT), log))
            print(f"[claims] {c.name}: started (log {log.name})", flush=True)
        time.sleep(2.0)
        for item in list(running):
            c, proc, log = item
            if proc.poll() is not None:
                running.remove(item)
                log.close()
                print(f"[claims] {c.name}: finished (exit {proc.returncode})", flush=True)
                if proc.returncode:
                    failed.append(c.name)
    if failed:
        raise SystemExit(f"claims failed: {', '.join(failed)} (see their logs in {args.out})")


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.claims", description=__doc__.splitlines()[0])
    p.add_argument("--list", action="store_true", help="list the claims, their rules and availability")
    p.add_argument("--claim", action="append", default=[], help="claim name (repeatable) or 'all'")
    p.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1 (a verdict needs >= 3)")
    p.add_argument("--quick", action="store_true", help=f"the short budget {BUDGETS['quick']}")
    p.add_argument("--out", default=os.path.join("logs", "claims"), help="results folder (default logs/claims)")
    p.add_argument("--cache", default="", help="data + backbone cache (default $FASTREID_EXT_CACHE or ~/.cache/fastreid_ext/claims)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's)")
    p.add_argument("--keep-logs", action="store_true", help="keep each run's OUTPUT_DIR (metrics.json, logs)")
    p.add_argument("--jobs", type=int, default=1, help="claims run in parallel processes (each with --threads)")
    args = p.parse_args(argv)
    if args.list:
        return _list()
    if not args.claim:
        p.error("give --list or --claim NAME (or --claim all)")
    if args.seeds < 1:
        p.error("--seeds must be >= 1")
    names = [c.name for c in CLAIMS] if "all" in args.claim else args.claim
    claims = [get_claim(n) for n in names]
    apply_threads(args.threads)
    mode = "quick" if args.quick else "full"
    cache = cache_dir(args.cache)
    os.makedirs(args.out, exist_ok=True)
    t0 = time.perf_counter()

    from .pretrain import pretrain
    rec = pretrain(cache)
    print(f"[claims] backbone {rec['path']} (pre-training cost {rec['seconds']} s wall, "
          f"{rec['cpu_seconds']} s CPU, measured when it was made)", flush=True)
    unavailable = {}
    todo = []
    for claim in claims:
        ok, why = availability(claim)
        if not ok:
            print(f"[claims] {claim.name}: {why}", flush=True)
            unavailable[claim.name] = why
        else:
            todo.append(claim)
    if args.jobs > 1 and len(todo) > 1:
        _run_parallel(todo, args, cache)
    else:
        for claim in todo:
            run_claim(claim, list(range(args.seeds)), mode, args.out, cache, rec["path"], args.keep_logs,
                      log=lambda s: print(s, flush=True))
    wall = time.perf_counter() - t0

    verdicts = []
    for claim in CLAIMS:  # every claim with saved results in this mode, run now or before
        recs = [r for r in _saved_records(args.out, mode, claim.name) if r["seed"] < args.seeds]
        if recs and claim.name not in unavailable:
            v = verdict(claim, recs)
            write_claim_json(v, args.out, mode)
            verdicts.append(v)
        elif claim.name not in unavailable:
            ok, why = availability(claim)
            if not ok:
                unavailable[claim.name] = why
    table = markdown(verdicts, unavailable, f"{mode}, seeds 0..{args.seeds - 1}", wall)
    md = os.path.join(args.out, mode, "claims.md")
    os.makedirs(os.path.dirname(md), exist_ok=True)
    with open(md + ".tmp", "w") as f:
        f.write(table)
    os.replace(md + ".tmp", md)
    png = plot(verdicts, os.path.join(args.out, mode, "claims.png"))
    print("\n" + table)
    print(f"[claims] table {md}" + (f", figure {png}" if png else "") + f"; wall {wall:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
