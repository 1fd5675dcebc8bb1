"""Shard-count scaling (``bench_retrieval.py --shards 1 2 4``): one gallery built as N
independent shards (``build_index.py --shard I/N``'s selection, each shard a
:class:`~fastreid_ext.deploy.GalleryIndex` built and saved on its own, one after another, 1
thread) and searched as one (:class:`~fastreid_ext.deploy.ShardedGallery`, shards in threads),
against exact search.

For each index kind and shard count: the largest shard's build time (the build wall time with
one machine or process per shard; process start-up excluded), the sum over shards (this
machine building them in turn), the query time of ``--queries`` queries on this machine,
recall@10 against exact search, and for exact (flat) shards how many top-10 lists equal those
of one index and the largest distance difference.

    python benchmarks/bench_retrieval.py --shards 1 2 4 --gallery 500000 --ids 25000 --queries 200
"""
from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time

import numpy as np
import torch
from bench_retrieval import clustered, make_centers

from fastreid_ext.deploy import FeaturesFile, GalleryIndex, ShardedGallery
from fastreid_ext.deploy.sharded_index import shard_features, shard_folder
from fastreid_ext.evaluation.approximate_search import recall_at_k
from fastreid_ext.evaluation.retrieval import search


def build_shards(feats: FeaturesFile, root: str, n: int, kind: str, **params):
    """Build and save the N shards in turn; returns the per-shard build times (s)."""
    times = []
    for i in range(n):
        t0 = time.perf_counter()
        GalleryIndex.build(shard_features(feats, i, n), kind, recall_sample=0, **params).save(shard_folder(root, i, n))
        times.append(time.perf_counter() - t0)
    return times


def run_shards(args, rest) -> None:
    p = argparse.ArgumentParser(prog="bench_retrieval.py --shards N ...")
    p.add_argument("--kinds", nargs="+", default=["flat", "IVF256,Flat"], help="index kinds (factory strings)")
    p.add_argument("--nprobe", type=int, default=16)
    sa = p.parse_args(rest)
    G, Q, D, k = args.gallery, args.queries, args.dim, args.k
    rng = np.random.default_rng(args.seed)
    centers = make_centers(args.ids, D, rng)
    g, q = clustered(G, centers, args.sigma, rng), clustered(Q, centers, args.sigma, rng)
    print(f"\n## Shards: {G} x {D} clustered gallery ({args.ids} identities), {Q} queries, cosine, k={k}; "
          f"1 thread; nprobe={sa.nprobe} per shard\n")
    (_, exact_i), t_exact = timed_search(q, g, k)
    print(f"exact search (torch, 1 thread): {t_exact:.2f} s\n")
    print("| index | shards | largest shard build (s) | all shards build (s) | query (s) | recall@10 | "
          "top-10 lists equal to 1 shard | max abs distance diff |")
    print("|---|---|---|---|---|---|---|---|", flush=True)
    tmp = tempfile.mkdtemp(prefix="bench_shards_")
    try:
        feats = FeaturesFile(g, [f"g{i}" for i in range(G)], "bench", meta={"metric": "cosine"})
        pos = {f"g{i}": i for i in range(G)}
        for kind in sa.kinds:
            ref = None
            for n in args.shards:
                root = os.path.join(tmp, f"{kind.replace(',', '_')}-{n}")
                t_build = build_shards(feats, root, n, kind, nprobe=sa.nprobe, train_size=args.train_size)
                sg = ShardedGallery.load([root])
                t0 = time.perf_counter()
                res = sg.search(q, k, use_gpu=False)
                t_q = time.perf_counter() - t0
                ids = torch.tensor([[pos[nm] for nm, _ in row] for row in res])
                same, diff = "-", "-"
                if ref is None:
                    ref = (ids, res.distances)
                elif kind == "flat":
                    same = f"{int((ids == ref[0]).all(1).sum())}/{Q}"
                    diff = f"{np.abs(res.distances - ref[1]).max():.1e}"
                print(f"| {kind} | {n} | {max(t_build):.1f} | {sum(t_build):.1f} | {t_q:.2f} | "
                      f"{recall_at_k(ids, exact_i):.4f} | {same} | {diff} |", flush=True)
                shutil.rmtree(root)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def timed_search(q, g, k):
    t0 = time.perf_counter()
    out = search(torch.from_numpy(q), torch.from_numpy(g), k, "cosine", "torch")
    return out, time.perf_counter() - t0
