"""Out-of-core gallery benchmark (``bench_retrieval.py --scale 10M``): a gallery larger than the
memory budget, built and searched with a compressed faiss index in bounded resident memory.

1. The gallery (clustered unit vectors, the identity density of part B: ``--ids`` per 1M items)
   is generated in chunks into a memory-mapped float32 file under a temporary folder (``--dir``,
   default ``/tmp``; deleted at the end, also on errors). While each chunk is in memory the
   exact top-k of the query sample is updated (chunked exact search + :func:`merge_topk`), so the
   exact reference costs no second pass over the file; its time is the exact-search time.
2. A compressed index (``--index``, a faiss factory string) is trained on the first
   ``--train-size`` rows and filled chunk by chunk from the file (read with ``np.fromfile``, no
   mapping held), then searched with a sweep of search-time parameters.

Peak resident memory is the process's ``VmHWM`` (``getrusage`` maximum RSS) over the whole run.

    python benchmarks/bench_retrieval.py --scale 10M            # the docs/performance.md row
    python benchmarks/bench_retrieval.py --scale 1M --queries 200
"""
from __future__ import annotations

import argparse
import os
import resource
import shutil
import signal
import sys
import tempfile
import time

import numpy as np
import torch
from bench_retrieval import clustered, index_bytes, make_centers, parse_index_arg

from fastreid_ext.deploy.sharded_index import merge_topk
from fastreid_ext.evaluation import faiss_search
from fastreid_ext.evaluation.approximate_search import recall_at_k
from fastreid_ext.evaluation.retrieval import search


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def rss_gib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 2**20
    return float("nan")


def generate(path: str, n: int, dim: int, sigma: float, q: np.ndarray, centers: np.ndarray,
             rng, chunk: int, k: int):
    """Write ``n`` rows to ``path`` (a memory map per chunk, unmapped after it) and return the
    exact top-``k`` ``(dist, ids)`` of ``q`` over them and the seconds spent in exact search."""
    open(path, "wb").truncate(n * dim * 4)
    best_d = np.full((q.shape[0], 0), np.inf)
    best_i = np.zeros((q.shape[0], 0), np.int64)
    t_exact, qt = 0.0, torch.from_numpy(q)
    for s in range(0, n, chunk):
        e = min(n, s + chunk)
        x = clustered(e - s, centers, sigma, rng)
        mm = np.memmap(path, np.float32, "r+", offset=s * dim * 4, shape=(e - s, dim))
        mm[:] = x
        mm.flush()
        del mm
        t0 = time.perf_counter()
        d, i = search(qt, torch.from_numpy(x), min(k, e - s), "cosine", "torch", memory_mb=256)
        best_d, best_i = merge_topk([best_d, d.numpy()], [best_i, i.numpy() + s], k)
        t_exact += time.perf_counter() - t0
        if (s // chunk) % 10 == 0:
            print(f"  generated {e}/{n} rows, RSS {rss_gib():.2f} GiB", flush=True)
    return best_d, best_i, t_exact


def read_rows(path: str, start: int, stop: int, dim: int) -> np.ndarray:
    return np.fromfile(path, np.float32, count=(stop - start) * dim, offset=start * dim * 4).reshape(-1, dim)


def build(path: str, n: int, dim: int, spec: str, train_size: int, chunk: int):
    """Train on the first ``train_size`` rows, add every row chunk by chunk."""
    index = faiss_search.new_index(spec, dim, "cosine")
    t0 = time.perf_counter()
    faiss_search.train_index(index, torch.from_numpy(read_rows(path, 0, min(n, train_size), dim)), "cosine", spec)
    t_train = time.perf_counter() - t0
    for s in range(0, n, chunk):
        faiss_search.add_in_chunks(index, torch.from_numpy(read_rows(path, s, min(n, s + chunk), dim)), "cosine")
        if (s // chunk) % 10 == 0:
            print(f"  added {min(n, s + chunk)}/{n} rows, RSS {rss_gib():.2f} GiB", flush=True)
    return index, t_train, time.perf_counter() - t0


def run_scale(n: int, args, rest) -> None:
    p = argparse.ArgumentParser(prog="bench_retrieval.py --scale N")
    p.add_argument("--index", default="IVF1024,PQ32x4fs,Refine(SQ8)|nprobe=16/32/64|k_factor=8",
                   help="faiss factory string with a search-parameter sweep (bench_retrieval --indexes syntax)")
    p.add_argument("--chunk", type=int, default=100_000, help="rows generated / added at a time")
    p.add_argument("--dir", default=tempfile.gettempdir(), help="where the temporary vector file goes")
    sa = p.parse_args(rest)
    D, k, Q = args.dim, args.k, args.queries
    ids = max(1, args.ids * n // 1_000_000)
    spec, grid = parse_index_arg(sa.index)
    rng = np.random.default_rng(args.seed)
    print(f"\n## Scale: {n} x {D} clustered gallery ({ids} identities) in a memory-mapped file, {Q} queries, "
          f"cosine, k={k}, index {spec}")
    tmp = tempfile.mkdtemp(prefix="bench_scale_", dir=sa.dir)
    # a kill (SIGTERM) unwinds through the finally below, so the vector file is deleted
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    path = os.path.join(tmp, "gallery.f32")
    try:
        centers = make_centers(ids, D, rng)
        q = clustered(Q, centers, args.sigma, rng)
        t0 = time.perf_counter()
        _, exact_i, t_exact = generate(path, n, D, args.sigma, q, centers, rng, sa.chunk, k)
        t_gen = time.perf_counter() - t0
        del centers
        print(f"generated {os.path.getsize(path) / 2**30:.1f} GiB in {t_gen:.0f} s (exact search of the {Q} "
              f"queries, chunk by chunk: {t_exact:.1f} s); peak RSS so far {peak_rss_gib():.2f} GiB", flush=True)
        rss0 = rss_gib()
        index, t_train, t_build = build(path, n, D, spec, args.train_size, sa.chunk)
        resident = (rss_gib() - rss0) * 2**30 / n
        per_item = index_bytes(index) / n
        print(f"built in {t_build:.0f} s (training {t_train:.0f} s); index file {per_item:.0f} bytes/item, "
              f"resident growth {resident:.0f} bytes/item\n")
        print("| items | index | search parameters | build (s) | exact query (s) | query (s) | recall@10 | "
              "speed-up | peak RSS (GiB) | bytes/item |")
        print("|---|---|---|---|---|---|---|---|---|---|", flush=True)
        qt = faiss_search.to_faiss_array(torch.from_numpy(q), "cosine")
        for params in grid:
            faiss_search.set_search_params(index, **params)
            t0 = time.perf_counter()
            _, ai = index.search(qt, k)
            t_q = time.perf_counter() - t0
            rec = recall_at_k(torch.from_numpy(ai).long(), torch.from_numpy(exact_i))
            text = " ".join(f"{a}={b}" for a, b in params.items())
            print(f"| {n} | {spec} | {text} | {t_build:.0f} | {t_exact:.1f} | {t_q:.3f} | {rec:.4f} | "
                  f"{t_exact / t_q:.0f}x | {peak_rss_gib():.2f} | {per_item:.0f} |", flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"\n(temporary folder {tmp} deleted; load average {' '.join(f'{x:.2f}' for x in os.getloadavg())})")
