"""Gallery index benchmark (``fastreid_ext.deploy.GalleryIndex``): build time and query
throughput of exact flat and IVF-Flat indexes at several gallery sizes.

Data: clustered unit embeddings (one identity per ``--per-id`` items, as Gaussian clusters on the sphere,
``d = --dim``, 256 by default so that 1M items fit in ~1 GiB), cosine metric, k = 10,
``--queries`` queries of the same identities searched as one batch. IVF: ``nlist`` cells
(default 1024, the config default ``TEST.RETRIEVAL.NLIST``; trained on ``max(40 * nlist, 50000)``
sampled items), ``nprobe`` visited; its recall@10 against the flat index's top-10 is printed
next to its speed. Save = writing ``index.faiss`` + ``meta.json`` (names included).

    python benchmarks/bench_index.py                          # 100k and 1M, d = 256
    python benchmarks/bench_index.py --sizes 100000 --queries 500
"""
from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time

import numpy as np

import fastreid_ext  # noqa: F401  (compat shims first)
from fastreid_ext.deploy import FeaturesFile, GalleryIndex


def clustered(n: int, d: int, ids: int, seed: int, noise: float = 0.35, chunk: int = 200_000,
              centre_seed: int = 12345) -> np.ndarray:
    """``(n, d)`` float32 unit vectors around ``ids`` random unit centres (the same centres for
    the same ``centre_seed``; samples drawn with ``seed``, in chunks)."""
    centres = np.random.default_rng(centre_seed).standard_normal((ids, d)).astype(np.float32)
    rng = np.random.default_rng(seed)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    out = np.empty((n, d), np.float32)
    for s in range(0, n, chunk):
        e = min(n, s + chunk)
        x = centres[rng.integers(0, ids, e - s)] + (noise / np.sqrt(d)) * rng.standard_normal((e - s, d)).astype(np.float32)
        out[s:e] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out


def run(sizes, dim, per_id, queries, nprobe, nlist, kinds, seed=0):
    rows = []
    tmp = tempfile.mkdtemp(prefix="bench_index_")
    try:
        for n in sizes:
            ids = max(1, n // per_id)
            g = clustered(n, dim, ids, seed)
            q = clustered(queries, dim, ids, seed + 1)  # other samples of the same identities
            feats = FeaturesFile(g, [f"g{i}" for i in range(n)], "bench", meta={"metric": "cosine"})
            exact = None
            for kind in kinds:
                params = {}
                if kind == "ivf":
                    params = {"nlist": nlist, "nprobe": nprobe}
                elif kind == "hnsw":
                    params = {"hnsw_m": 32, "ef_construction": 80, "ef_search": 128}
                t0 = time.perf_counter()
                # recall_sample=0: the build time without the stored recall measurement (measured below)
                index = GalleryIndex.build(feats, kind, "cosine", recall_sample=0, **params)
                build = time.perf_counter() - t0
                t0 = time.perf_counter()
                index.save(os.path.join(tmp, kind))
                save = time.perf_counter() - t0
                index.search(q[:10], 10)  # warm-up
                t0 = time.perf_counter()
                res = index.search(q, 10)
                qtime = time.perf_counter() - t0
                if kind == "flat":
                    exact = res.indices
                recall = None
                if exact is not None:
                    hits = (res.indices[:, :, None] == exact[:, None, :]).any(1)
                    recall = float(hits.mean())
                rows.append(dict(n=n, kind=kind, params=" ".join(f"{k}={v}" for k, v in params.items()) or "-",
                                 build=build, save=save, qps=queries / qtime,
                                 ms=1000 * qtime / queries, recall=recall))
                print(_fmt(rows[-1]), flush=True)
                del index
            del g, feats
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return rows


HEADER = f"| {'gallery':>9} | {'index':<5} | {'params':<40} | {'build s':>8} | {'save s':>7} | {'queries/s':>10} | {'ms/query':>9} | {'recall@10':>9} |"


def _fmt(r) -> str:
    rec = "1 (ref)" if r["kind"] == "flat" else ("-" if r["recall"] is None else f"{r['recall']:.3f}")
    return (f"| {r['n']:>9,} | {r['kind']:<5} | {r['params']:<40} | {r['build']:>8.2f} | {r['save']:>7.2f} | "
            f"{r['qps']:>10,.0f} | {r['ms']:>9.3f} | {rec:>9} |")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    p.add_argument("--dim", type=int, default=256)
    p.add_argument("--per-id", type=int, default=20, help="gallery items per identity (cluster)")
    p.add_argument("--queries", type=int, default=1000)
    p.add_argument("--nlist", type=int, default=1024, help="IVF cells")
    p.add_argument("--nprobe", type=int, default=32)
    p.add_argument("--kinds", nargs="+", default=["flat", "ivf"], choices=["flat", "ivf", "hnsw"])
    args = p.parse_args(argv)
    import faiss

    print(f"faiss {faiss.__version__}, {faiss.omp_get_max_threads()} OpenMP threads, "
          f"GPUs for faiss: {getattr(faiss, 'get_num_gpus', lambda: 0)()}; d={args.dim}, cosine, k=10, "
          f"{args.queries} queries per batch, {os.cpu_count()} CPUs (load avg {os.getloadavg()[0]:.1f})")
    print(HEADER)
    print("|" + "|".join("-" * (len(c)) for c in HEADER.split("|")[1:-1]) + "|")
    run(args.sizes, args.dim, args.per_id, args.queries, args.nprobe, args.nlist, args.kinds)


if __name__ == "__main__":
    main()
