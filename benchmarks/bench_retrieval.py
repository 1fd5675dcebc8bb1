"""Retrieval benchmark: memory-bounded exact search and approximate (IVF / HNSW) search.

Part A: exact kNN of ``--a-queries`` queries in a ``--a-gallery`` gallery under a memory budget
(``memory_mb``): peak extra resident memory (Linux ``VmHWM`` after resetting it) against the
size of the ``Q x G`` matrix that is never materialised.

Part B: a clustered gallery (``--ids`` identities as Gaussian clusters on the unit sphere),
``--queries`` queries of the same identities, cosine metric, k = 10: exact flat search (faiss
and torch), faiss IVF-Flat and HNSW-Flat: build time, query time, recall@10 against the exact
top-10, speed-up over the faster exact search. HNSW is built on its own ``--hnsw-gallery``-item
gallery (same items per identity; 0 = the big gallery) because its build is the slow part on a
small CPU (1M x 256, M=32, efConstruction=80: > 30 min on 2 cores); its exact reference is
computed on that gallery.

    python benchmarks/bench_retrieval.py --faiss-threads 1 --skip-faiss-exact   # README table
    python benchmarks/bench_retrieval.py --gallery 100000 --a-gallery 20000   # quick
"""
from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch

import fastreid_ext  # noqa: F401  (compat shims first)
from fastreid_ext.evaluation.faiss_search import ApproximateSearch, recall_at_k
from fastreid_ext.evaluation.retrieval import search


# ----------------------------------------------------------------------------- memory probes
def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS counter (Linux >= 4.0); False when not allowed."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def rss_mib() -> float:
    return _status_kib("VmRSS") / 1024


def peak_rss_mib() -> float:
    return _status_kib("VmHWM") / 1024


# ----------------------------------------------------------------------------- data
def clustered(n: int, centers: np.ndarray, sigma: float, rng, chunk: int = 200_000,
              nuisance: np.ndarray = None) -> np.ndarray:
    """``(n, D)`` float32 unit vectors: a random identity center plus noise, normalised.

    The noise is isotropic (``sigma`` per dimension) or, with ``nuisance`` (``(r, D)``), lives
    in that shared r-dimensional "nuisance" subspace (pose / camera / light) with the same
    expected norm, plus 10 % isotropic noise: embeddings of low intrinsic dimension.
    """
    D = centers.shape[1]
    out = np.empty((n, D), np.float32)
    for s in range(0, n, chunk):
        e = min(s + chunk, n)
        ids = rng.integers(0, centers.shape[0], e - s)
        if nuisance is None:
            noise = rng.standard_normal((e - s, D), dtype=np.float32) * sigma
        else:
            r = nuisance.shape[0]
            z = rng.standard_normal((e - s, r), dtype=np.float32) * (sigma * np.sqrt(D / r))
            noise = z @ nuisance + 0.1 * sigma * rng.standard_normal((e - s, D), dtype=np.float32)
        x = centers[ids] + noise
        out[s:e] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out


def make_centers(ids: int, dim: int, rng) -> np.ndarray:
    c = rng.standard_normal((ids, dim), dtype=np.float32)
    return c / np.linalg.norm(c, axis=1, keepdims=True)


def timed(fn, *args, **kw):
    t0 = time.perf_counter()
    out = fn(*args, **kw)
    return out, time.perf_counter() - t0


# ----------------------------------------------------------------------------- part A
def part_a(args, rng) -> None:
    print(f"\n## A. exact search, {args.a_queries} queries x {args.a_gallery} gallery x {args.dim}, k={args.k}")
    centers = make_centers(max(1, args.a_gallery // 20), args.dim, rng)
    g = torch.from_numpy(clustered(args.a_gallery, centers, args.sigma, rng))
    q = torch.from_numpy(clustered(args.a_queries, centers, args.sigma, rng))
    full_mib = args.a_queries * args.a_gallery * 4 / 2**20
    print(f"a full Q x G float32 matrix would be {full_mib:.0f} MiB\n")
    print("| backend | memory_mb budget | peak extra RSS (MiB) | time (s) |")
    print("|---|---|---|---|")
    ref = None
    for backend in ("torch", "faiss"):
        for budget in args.budgets:
            search(q[:8], g, args.k, "cosine", backend, budget)  # warm-up (thread pools, faiss)
            base = rss_mib()
            ok = reset_peak_rss()
            (d, i), t = timed(search, q, g, args.k, "cosine", backend, budget)
            peak = peak_rss_mib() - base if ok else float("nan")
            if ref is None:
                ref = i
            same = "" if torch.equal(i, ref) else " (indices differ!)"
            print(f"| {backend} | {budget} | {peak:.0f} | {t:.2f}{same} |", flush=True)


# ----------------------------------------------------------------------------- part B
def part_b(args, rng) -> None:
    G, Q, D, k = args.gallery, args.queries, args.dim, args.k
    print(f"\n## B. {G} x {D} clustered gallery ({args.ids} identities), {Q} queries, cosine, k={k}")
    centers = make_centers(args.ids, D, rng)
    nuisance = None
    if args.noise_rank:
        nuisance = np.linalg.qr(rng.standard_normal((D, args.noise_rank)))[0].T.astype(np.float32)  # (r, D)
        print(f"noise: rank-{args.noise_rank} nuisance subspace + 10 % isotropic")
    else:
        print("noise: isotropic")
    (g, t_gen) = timed(clustered, G, centers, args.sigma, rng, nuisance=nuisance)
    q = clustered(Q, centers, args.sigma, rng, nuisance=nuisance)
    print(f"(generated in {t_gen:.0f} s; torch threads {torch.get_num_threads()})\n")
    gt, qt = torch.from_numpy(g), torch.from_numpy(q)

    print("speed-up: query time of the faster exact search (faiss or torch) on the same gallery / this query time")
    print("| method | gallery | build (s) | query (s) | recall@10 | speed-up vs exact |")
    print("|---|---|---|---|---|---|", flush=True)
    best = {}

    class Rows(list):
        def append(self, row):  # print each row as soon as it is measured
            name, gal, tb, tq, rec = row[:5]
            gal = G if gal == "-" else int(gal)
            t_exact = best.setdefault(gal, row[5] if len(row) > 5 else tq)
            print(f"| {name} | {gal} | {tb:.1f} | {tq:.2f} | {rec:.4f} | {t_exact / tq:.1f}x |", flush=True)
            super().append(row)

    rows = Rows()
    if args.only_hnsw:
        exact_i, t_flat = None, None
    elif args.skip_faiss_exact:
        (exact_d, exact_i), t_flat = timed(search, qt, gt, k, "cosine", "torch", args.memory_mb)
        rows.append(("exact (torch, chunked)", "-", 0.0, t_flat, 1.0, t_flat))
    else:
        (exact_d, exact_i), t_flat = timed(search, qt, gt, k, "cosine", "faiss", args.memory_mb)
        rows.append(("exact flat (faiss)", "-", 0.0, t_flat, 1.0, t_flat))
    if not args.skip_torch_exact and not args.skip_faiss_exact and not args.only_hnsw:
        (_, ti), t_torch = timed(search, qt, gt, k, "cosine", "torch", args.memory_mb)
        rows.append(("exact (torch, chunked)", "-", 0.0, t_torch, recall_at_k(ti, exact_i)))
        t_flat = min(t_flat, t_torch)  # speed-ups are against the faster exact search
        best[G] = t_flat

    for nprobe in ([] if args.only_hnsw else args.nprobe):
        if nprobe == args.nprobe[0]:
            ivf, t_build = timed(
                ApproximateSearch, gt, kind="ivf", metric="cosine", nlist=args.nlist, nprobe=nprobe,
                train_size=args.train_size,
            )
        ivf.index.nprobe = nprobe
        (_, ai), t_q = timed(ivf.search, qt, k)
        rows.append(
            (f"IVF-Flat nlist={args.nlist} nprobe={nprobe}", f"{G}", t_build if nprobe == args.nprobe[0] else 0.0,
             t_q, recall_at_k(ai, exact_i))
        )
    if not args.only_hnsw:
        del ivf

    if args.hnsw_gallery >= 0:
        Gh = G if args.hnsw_gallery == 0 else min(args.hnsw_gallery, G)
        qh = qt
        if Gh == G and exact_i is not None:
            gh, ref_i, t_ref = gt, exact_i, t_flat
        else:
            if Gh < G:
                # a smaller gallery with the same identity density (items per identity), its
                # own identities and queries: a prefix of the big one would leave ~G/ids*Gh/G
                # items per identity and a top-10 of near-ties
                ids_h = max(1, args.ids * Gh // G)
                centers_h = make_centers(ids_h, D, rng)
                gh = torch.from_numpy(clustered(Gh, centers_h, args.sigma, rng, nuisance=nuisance))
                qh = torch.from_numpy(clustered(Q, centers_h, args.sigma, rng, nuisance=nuisance))
                print(f"(HNSW: own {Gh}-item gallery, {ids_h} identities, {Q} queries)")
            else:
                gh = gt
            exact_backend = "torch" if args.skip_faiss_exact else "faiss"
            (_, ref_i), t_ref = timed(search, qh, gh, k, "cosine", exact_backend, args.memory_mb)
            rows.append((f"exact ({exact_backend})", f"{Gh}", 0.0, t_ref, 1.0, t_ref))
            if not args.skip_torch_exact and not args.skip_faiss_exact:
                (_, ti), t_t = timed(search, qh, gh, k, "cosine", "torch", args.memory_mb)
                rows.append(("exact (torch, chunked)", f"{Gh}", 0.0, t_t, recall_at_k(ti, ref_i), t_ref))
                t_ref = min(t_ref, t_t)
                best[Gh] = t_ref
        hnsw, t_build = timed(
            ApproximateSearch, gh, kind="hnsw", metric="cosine", hnsw_m=args.hnsw_m,
            ef_construction=args.ef_construction, ef_search=args.ef_search[0],
        )
        for ef in args.ef_search:
            hnsw.index.hnsw.efSearch = ef
            (_, hi), t_q = timed(hnsw.search, qh, k)
            rows.append(
                (f"HNSW-Flat M={args.hnsw_m} efC={args.ef_construction} efS={ef}", f"{Gh}",
                 t_build if ef == args.ef_search[0] else 0.0, t_q, recall_at_k(hi, ref_i), t_ref)
            )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--skip-a", action="store_true")
    p.add_argument("--skip-b", action="store_true")
    p.add_argument("--a-gallery", type=int, default=100_000)
    p.add_argument("--a-queries", type=int, default=2_000)
    p.add_argument("--budgets", type=float, nargs="+", default=[64, 256])
    p.add_argument("--gallery", type=int, default=1_000_000)
    p.add_argument("--queries", type=int, default=1_000)
    p.add_argument("--dim", type=int, default=256)
    p.add_argument("--ids", type=int, default=50_000, help="identities (clusters) in part B")
    p.add_argument("--sigma", type=float, default=0.025,
                   help="per-dimension noise around a unit center (0.025: same-identity cosine ~0.86)")
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--memory-mb", type=float, default=1024)
    p.add_argument("--skip-torch-exact", action="store_true")
    p.add_argument("--only-hnsw", action="store_true", help="part B: only the HNSW rows")
    p.add_argument("--skip-faiss-exact", action="store_true", help="exact reference by torch only")
    p.add_argument("--noise-rank", type=int, default=0, help="0: isotropic noise; r: rank-r nuisance subspace")
    p.add_argument("--faiss-threads", type=int, default=0, help="faiss OpenMP threads (0: faiss default)")
    p.add_argument("--nlist", type=int, default=1024)
    p.add_argument("--nprobe", type=int, nargs="+", default=[8, 16, 32, 64])
    p.add_argument("--train-size", type=int, default=65_536)
    p.add_argument("--hnsw-gallery", type=int, default=100_000,
                   help="HNSW on the first N items (0 = all, -1 = skip); a 1M HNSW build takes > 30 min on 2 cores")
    p.add_argument("--hnsw-m", type=int, default=32)
    p.add_argument("--ef-construction", type=int, default=80)
    p.add_argument("--ef-search", type=int, nargs="+", default=[64, 128, 256])
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    rng = np.random.default_rng(args.seed)
    if args.faiss_threads:
        import faiss

        faiss.omp_set_num_threads(args.faiss_threads)
    print(f"# bench_retrieval on {os.cpu_count()} CPU cores, torch {torch.__version__}")
    if not args.skip_a:
        part_a(args, rng)
    if not args.skip_b:
        part_b(args, rng)


if __name__ == "__main__":
    main()
