"""Rank metrics on a MARS-sized case: ours against the host's Python and Cython evaluators.

Builds a synthetic case with MARS's shape (1,980 queries x 9,330 gallery tracklets, d=2048,
626 query ids, 3,248 distractors with pid 0, 6 cameras; features = identity centre + camera
shift + noise, so the metrics are in a realistic range), and times, in one run, on this machine:

* host Python ``eval_market1501`` (the reference; slow, ``--py-runs`` runs),
* host Cython ``evaluate_cy`` (its ``rank_cy.pyx`` compiled in a temporary directory, never in
  site-packages; needs ``cython``, see ``benchmarks/requirements.txt``),
* our ``evaluate_rank`` on the same distance matrix,
* our ``evaluate_features`` (distances + metrics, the full pipeline),
* one ``Q x G x d`` matrix product (torch), the yardstick for the pipeline.

Prints the median of ``--runs`` runs, the speed-ups and the largest |difference| of mAP, CMC and
mINP against the host's Python evaluator. ``--gallery N`` adds a run of ``evaluate_features``
on an N-tracklet gallery reporting its peak memory against ``--memory-mb``.

    .venv/bin/python benchmarks/bench_metrics.py [--runs 5] [--py-runs 1] [--gallery 100000]
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
import warnings

import numpy as np
import torch

import fastreid_ext  # noqa: F401  (compat shims first)
from fastreid_ext.evaluation import evaluate_features, evaluate_rank
from fastreid_ext.evaluation.distance import host_pairwise_distance

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    import fastreid.evaluation.rank as host_rank

_SETUP = """
from setuptools import setup, Extension
import numpy as np
from Cython.Build import cythonize
setup(ext_modules=cythonize([Extension("rank_cy", ["rank_cy.pyx"], include_dirs=[np.get_include()])],
                            language_level=3, quiet=True))
"""


def build_host_cython(tmp: str):
    """Compiles the host's ``rank_cylib/rank_cy.pyx`` in ``tmp`` and imports it."""
    src = os.path.join(os.path.dirname(host_rank.__file__), "rank_cylib", "rank_cy.pyx")
    shutil.copy(src, tmp)
    with open(os.path.join(tmp, "setup.py"), "w") as f:
        f.write(_SETUP)
    proc = subprocess.run([sys.executable, "setup.py", "build_ext", "--inplace"], cwd=tmp,
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"building the host's Cython evaluator failed:\n{proc.stderr[-2000:]}")
    so = [f for f in os.listdir(tmp) if f.startswith("rank_cy") and f.endswith(".so")][0]
    spec = importlib.util.spec_from_file_location("rank_cy", os.path.join(tmp, so))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def mars_like(num_q=1980, num_g=9330, dim=2048, num_ids=626, distractors=3248, cams=6, seed=0,
              sep=0.35):
    """Features and labels shaped like MARS (see the module docstring)."""
    g = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    centres = sep * torch.randn(num_ids + 1, dim, generator=g)  # identity signal vs unit noise
    cam_shift = 0.5 * sep * torch.randn(cams, dim, generator=g)
    q_pids = np.concatenate([np.arange(1, num_ids + 1), rng.integers(1, num_ids + 1, num_q - num_ids)])
    g_pids = np.concatenate([np.zeros(distractors, np.int64), rng.integers(1, num_ids + 1, num_g - distractors)])
    q_cams, g_cams = rng.integers(0, cams, num_q), rng.integers(0, cams, num_g)

    def feats(pids, camids):
        f = centres[pids] + cam_shift[camids] + torch.randn(len(pids), dim, generator=g)
        f[torch.as_tensor(pids == 0)] = torch.randn(int((pids == 0).sum()), dim, generator=g)
        return f

    return feats(q_pids, q_cams), feats(g_pids, g_cams), q_pids, g_pids, q_cams, g_cams


def timed(fn, runs):
    times, out = [], None
    for _ in range(runs):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), out


def diffs(res, ref):
    cmc, ap, inp = res.as_tuple() if hasattr(res, "as_tuple") else res  # ours: RankResult
    r_cmc, r_ap, r_inp = ref
    return (abs(float(np.mean(ap)) - float(np.mean(r_ap))), float(np.abs(np.asarray(cmc) - r_cmc).max()),
            abs(float(np.mean(inp)) - float(np.mean(r_inp))))


def main_speed(args):
    qf, gf, qp, gp, qc, gc = mars_like(args.queries, args.gallery_mars, args.dim)
    dist = host_pairwise_distance(qf, gf, "cosine").numpy()  # (Q, G) float32, as the host evaluator gets it
    rows = []
    print(f"MARS-sized case: Q={len(qp)} G={len(gp)} d={qf.shape[1]}, torch threads={torch.get_num_threads()}")

    t_py, ref = timed(lambda: host_rank.eval_market1501(dist, qp, gp, qc, gc, 50), args.py_runs)
    rows.append(("host Python eval_market1501", t_py, args.py_runs, (0.0, 0.0, 0.0)))
    with tempfile.TemporaryDirectory() as tmp:
        cy = build_host_cython(tmp)
        t_cy, out = timed(lambda: cy.evaluate_cy(dist, qp, gp, qc, gc, 50, False), args.runs)
    rows.append(("host Cython evaluate_cy", t_cy, args.runs, diffs(out, ref)))
    t_ours, out = timed(lambda: evaluate_rank(dist, qp, gp, qc, gc, 50), args.runs)
    rows.append(("ours evaluate_rank (distmat)", t_ours, args.runs, diffs(out, ref)))
    t_feat, out = timed(lambda: evaluate_features(qf, gf, qp, gp, qc, gc, metric="cosine", max_rank=50,
                                                   memory_mb=args.memory_mb, device="cpu"), args.runs)
    rows.append(("ours evaluate_features (dist+metrics)", t_feat, args.runs, diffs(out, ref)))
    with torch.no_grad():
        t_mm, _ = timed(lambda: torch.mm(qf, gf.t()), args.runs)
    rows.append(("torch.mm Q x G x d", t_mm, args.runs, None))

    print(f"\n{'method':40s} {'median s':>9s} {'runs':>4s} {'vs Cython':>9s} {'vs Python':>9s} "
          f"{'|dmAP|':>9s} {'|dCMC|':>9s} {'|dmINP|':>9s}")
    for name, t, n, d in rows:
        dd = "".join(f" {x:9.2e}" for x in d) if d is not None else ""
        print(f"{name:40s} {t:9.3f} {n:4d} {t_cy / t:8.1f}x {t_py / t:8.1f}x{dd}")
    print(f"\nmAP (host Python) = {np.mean(ref[1]):.4f}, Rank-1 = {ref[0][0]:.4f}, mINP = {np.mean(ref[2]):.4f}")
    checks = [
        ("evaluate_rank >= 3x faster than host Cython", t_cy / t_ours >= 3),
        ("evaluate_rank >= 100x faster than host Python", t_py / t_ours >= 100),
        ("pipeline <= 2x one Q x G x d matmul", t_feat <= 2 * t_mm),
        ("identical numbers (<= 1e-6) to host Python", max(max(r[3]) for r in rows[2:4]) <= 1e-6),
    ]
    for name, ok in checks:
        print(f"  [{'PASS' if ok else 'FAIL'}] {name}")


class _RssSampler(threading.Thread):
    """Samples VmRSS every 2 ms; ``peak`` in bytes."""

    def __init__(self):
        super().__init__(daemon=True)
        self.peak, self._halt = 0, threading.Event()

    @staticmethod
    def rss():
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        return 0

    def run(self):
        while not self._halt.is_set():
            self.peak = max(self.peak, self.rss())
            time.sleep(0.002)

    def stop(self):
        self._halt.set()
        self.join()
        self.peak = max(self.peak, self.rss())


def main_memory(args):
    qf, gf, qp, gp, qc, gc = mars_like(args.queries, args.gallery, args.dim, distractors=args.gallery // 3)
    mb = 2**20
    base = _RssSampler.rss()
    maxrss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    sampler = _RssSampler()
    sampler.start()
    tracemalloc.start()
    t = time.perf_counter()
    res = evaluate_features(qf, gf, qp, gp, qc, gc, metric="cosine", max_rank=50, memory_mb=args.memory_mb,
                            device="cpu")
    elapsed = time.perf_counter() - t
    _, tm_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    sampler.stop()
    maxrss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    full = len(qp) * len(gp) * 4
    print(f"\nLarge gallery: Q={len(qp)} G={len(gp)} d={qf.shape[1]}, budget memory_mb={args.memory_mb}")
    print(f"  features held by the caller        {(qf.numel() + gf.numel()) * 4 / mb:9.1f} MiB (not counted)")
    print(f"  a full Q x G float32 matrix        {full / mb:9.1f} MiB (never built)")
    print(f"  peak RSS above start (sampled)     {(sampler.peak - base) / mb:9.1f} MiB")
    print(f"  ru_maxrss increase                 {max(0, maxrss1 - maxrss0) / mb:9.1f} MiB")
    print(f"  tracemalloc peak (numpy only)      {tm_peak / mb:9.1f} MiB")
    print(f"  time {elapsed:.1f} s, mAP {res.mAP:.4f}, Rank-1 {res.cmc[0]:.4f}, skipped queries {res.num_skipped}")
    ok = sampler.peak - base <= args.memory_mb * mb
    print(f"  [{'PASS' if ok else 'FAIL'}] peak additional memory within memory_mb")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--py-runs", type=int, default=1)
    p.add_argument("--queries", type=int, default=1980)
    p.add_argument("--gallery-mars", type=int, default=9330)
    p.add_argument("--dim", type=int, default=2048)
    p.add_argument("--memory-mb", type=float, default=1024)
    p.add_argument("--gallery", type=int, default=0, help="also measure peak memory on this gallery size")
    p.add_argument("--skip-speed", action="store_true")
    args = p.parse_args()
    if not args.skip_speed:
        main_speed(args)
    if args.gallery:
        main_memory(args)


if __name__ == "__main__":
    main()
