"""``python -m benchmarks.claims --list | --plan | --probe --claim NAME | --claim NAME [--seeds N] [--quick]``.

Runs the pre-registered claims (``benchmarks/claims/claims.py``), each (claim, row, seed)
saved to ``<out>/<quick|full>/<claim>/<row>/seed<k>.json`` when it is complete and skipped when
present, then writes ``<claim>/claim.json`` (the verdict), ``claims.md`` (the table),
``forest.png`` (paired differences) and ``curves.png`` (learning curves) under
``<out>/<quick|full>/``. The shared backbone is pre-trained first if the cache lacks it
(``python -m benchmarks.claims.pretrain``; its time is reported apart).
"""
from __future__ import annotations

import argparse
import glob
import os
import subprocess
import sys
import time
from typing import Dict, List, Optional

from .claims import CLAIMS, QUICK, get_claim
from .common import cache_dir, read_json
from .plan import list_text, plan_text, probe
from .report import markdown, plot_curves, plot_forest, verdict, write_claim_json
from .runner import availability, run_claim


def _saved_records(out: str, mode: str, name: str) -> List[dict]:
    recs = []
    for path in sorted(glob.glob(os.path.join(out, mode, name, "*", "seed*.json"))):
        recs.append(read_json(path))
    return recs


def _run_parallel(claims, args, cache: str) -> None:
    """One child process per (claim, seed), at most ``--jobs`` at a time, claims in order (results
    land in the same resumable files; the table is written by this process afterwards). Data
    sets are generated here first, so that no two children make the same one."""
    from .common import ensure_dataset
    from .runner import mode_claim

    mode = "quick" if args.quick else "full"
    for c in claims:
        ensure_dataset(dict(mode_claim(c, mode).data), cache)
    base = [sys.executable, "-m", "benchmarks.claims", "--out", args.out, "--cache", cache] \
        + (["--quick"] if args.quick else []) + (["--keep-logs"] if args.keep_logs else [])
    pending = [(c, s) for c in claims for s in range(_seeds(c, args))]
    running, failed = [], []
    while pending or running:
        while pending and len(running) < args.jobs:
            c, seed = pending.pop(0)
            log = open(os.path.join(args.out, f"{c.name}.{mode}.seed{seed}.log"), "a")
            proc = subprocess.Popen(base + ["--claim", c.name, "--only-seed", str(seed)], stdout=log,
                                    stderr=subprocess.STDOUT)
            running.append((f"{c.name} seed {seed}", proc, log))
            print(f"[claims] {c.name} seed {seed}: started (log {log.name})", flush=True)
        time.sleep(2.0)
        for item in list(running):
            name, proc, log = item
            if proc.poll() is not None:
                running.remove(item)
                log.close()
                print(f"[claims] {name}: finished (exit {proc.returncode})", flush=True)
                if proc.returncode:
                    failed.append(name)
    if failed:
        raise SystemExit(f"claims failed: {', '.join(failed)} (see their logs in {args.out})")


def _seeds(claim, args) -> int:
    return args.seeds or (QUICK["seeds"] if args.quick else claim.seeds)


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.claims", description=__doc__.splitlines()[0])
    p.add_argument("--list", action="store_true", help="each claim's statement, SESOI, rows, seeds, test set, budget")
    p.add_argument("--plan", action="store_true", help="estimated times from the timing probe, MDE per comparison")
    p.add_argument("--probe", action="store_true", help="measure iteration / evaluation times of --claim's rows")
    p.add_argument("--claim", action="append", default=[], help="claim name (repeatable) or 'all'")
    p.add_argument("--seeds", type=int, default=0, help="seeds 0..N-1 (default: the claim's design; --quick: 2)")
    p.add_argument("--quick", action="store_true", help=f"smoke test: {QUICK['ids']} ids, {QUICK['epochs']} epochs")
    p.add_argument("--out", default=os.path.join("logs", "claims"), help="results folder (default logs/claims)")
    p.add_argument("--cache", default="", help="data + backbone cache (default $FASTREID_EXT_CACHE or ~/.cache/fastreid_ext/claims)")
    p.add_argument("--keep-logs", action="store_true", help="keep each run's OUTPUT_DIR (metrics.json, logs)")
    p.add_argument("--jobs", type=int, default=1, help="(claim, seed) runs in parallel processes (1 torch thread each)")
    p.add_argument("--only-seed", type=int, default=-1, help=argparse.SUPPRESS)  # a --jobs child: one seed, no table
    args = p.parse_args(argv)
    cache = cache_dir(args.cache)
    names = [c.name for c in CLAIMS] if (not args.claim or "all" in args.claim) else args.claim
    claims = [get_claim(n) for n in names]
    if args.list:
        print(list_text(), end="")
        return 0
    if args.plan:
        print(plan_text(claims, cache, args.out), end="")
        return 0
    if not args.claim:
        p.error("give --list, --plan or --claim NAME (or --claim all)")
    if args.seeds < 0:
        p.error("--seeds must be >= 1")
    mode = "quick" if args.quick else "full"
    os.makedirs(args.out, exist_ok=True)
    t0 = time.perf_counter()

    from .pretrain import backbone_path, pretrain
    rec = {"path": backbone_path(cache)}
    if not args.probe and any(c.backbone == "shared" for c in claims):
        rec = pretrain(cache)
        print(f"[claims] backbone {rec['path']} (pre-training cost {rec['seconds']} s wall, "
              f"{rec['cpu_seconds']} s CPU, measured when it was made)", flush=True)
    if args.probe:
        for claim in claims:
            probe(claim, cache, args.out, log=lambda s: print(s, flush=True))
        print(plan_text(claims, cache, args.out), end="")
        return 0
    unavailable = {}
    todo = []
    for claim in claims:
        ok, why = availability(claim)
        if not ok:
            print(f"[claims] {claim.name}: {why}", flush=True)
            unavailable[claim.name] = why
        else:
            todo.append(claim)
    if args.only_seed >= 0:
        for claim in todo:
            run_claim(claim, [args.only_seed], mode, args.out, cache, rec["path"], args.keep_logs,
                      log=lambda s: print(s, flush=True))
        return 0
    if args.jobs > 1:
        _run_parallel(todo, args, cache)
    else:
        for claim in todo:
            run_claim(claim, list(range(_seeds(claim, args))), mode, args.out, cache, rec["path"], args.keep_logs,
                      log=lambda s: print(s, flush=True))
    wall = time.perf_counter() - t0
    return _report(mode, args, unavailable, wall)


def _report(mode: str, args, unavailable: Dict[str, str], wall: float) -> int:
    verdicts = []
    for claim in CLAIMS:  # every claim with complete results of its current design, run now or before
        recs = [r for r in _saved_records(args.out, mode, claim.name) if r.get("seed", 0) < _seeds(claim, args)]
        v = verdict(claim, recs, mode) if recs and claim.name not in unavailable else None
        if v and v["seeds"]:
            write_claim_json(v, args.out, mode)
            verdicts.append(v)
    table = markdown(verdicts, unavailable, mode, wall)
    md = os.path.join(args.out, mode, "claims.md")
    os.makedirs(os.path.dirname(md), exist_ok=True)
    with open(md + ".tmp", "w") as f:
        f.write(table)
    os.replace(md + ".tmp", md)
    forest = plot_forest(verdicts, os.path.join(args.out, mode, "forest.png"))
    curves = plot_curves(verdicts, os.path.join(args.out, mode, "curves.png"))
    print("\n" + table)
    print(f"[claims] table {md}" + "".join(f", figure {x}" for x in (forest, curves) if x) + f"; wall {wall:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
