"""Retrieval benchmark: memory-bounded exact search and approximate search with any faiss index.

Part A: exact kNN of ``--a-queries`` queries in a ``--a-gallery`` gallery under a memory budget
(``memory_mb``): peak extra resident memory (Linux ``VmHWM`` after resetting it) against the
size of the ``Q x G`` matrix that is never materialised.

Part B: a clustered gallery (``--ids`` identities as Gaussian clusters on the unit sphere),
``--queries`` queries of the same identities, cosine metric, k = 10: exact search (chunked
torch), then each index of ``--indexes`` (faiss factory strings, each with a sweep of
search-time parameters, ``"SPEC|nprobe=16/32|k_factor=4"``): build time (training + adding),
query time of all queries in one batch, recall@10 against the exact top-10, speed-up over the
exact search, serialised bytes per item, IVF list imbalance; then whether recall@10 >= 0.95 at
>= 20x and >= 0.99 at >= 8x were reached. HNSW-Flat is built on its own ``--hnsw-gallery``-item
gallery (same items per identity) because its build is slow on a small CPU (1M x 256, M=32,
efConstruction=80: > 30 min on 2 cores); its exact reference is computed on that gallery.
``--threads`` (default 1) applies to torch and faiss.

Other modes: ``--scale 10M`` (``bench_scale.py``: a gallery in a memory-mapped file, compressed
index, bounded memory) and ``--shards 1 2 4`` (``bench_shards.py``: shard-count scaling).

    python benchmarks/bench_retrieval.py                    # make bench-retrieval (docs/performance.md)
    python benchmarks/bench_retrieval.py --skip-a --gallery 100000 --ids 5000 --hnsw-gallery 0   # quick
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np
import torch

import fastreid_ext  # noqa: F401  (compat shims first)
from fastreid_ext.evaluation.approximate_search import ApproximateSearch, recall_at_k
from fastreid_ext.evaluation.faiss_search import ivf_of
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
#: indexes tried by default: "SPEC|param=v1/v2|param=v" (a sweep over the product of the values)
DEFAULT_INDEXES = (
    "IVF1024,Flat|nprobe=16/32/64",
    "IVF1024,PQ32x4fs,Refine(Flat)|nprobe=16/32/64/128|k_factor=4",
    "IVF1024,PQ32x4fs,Refine(SQ8)|nprobe=32/64|k_factor=4",
    "IVF1024,SQ8|nprobe=32/64",
)


def parse_index_arg(text: str):
    """``"SPEC|nprobe=16/32|k_factor=4"`` -> ``(SPEC, [{"nprobe": 16, "k_factor": 4}, ...])``."""
    spec, *sweeps = text.split("|")
    grid = [{}]
    for sw in sweeps:
        name, values = sw.split("=")
        grid = [dict(g, **{name.strip(): int(v)}) for g in grid for v in values.split("/")]
    return spec.strip(), grid


def index_bytes(index) -> int:
    """Bytes of the serialised index (written to a temp file: no second in-memory copy)."""
    import faiss

    fd, path = tempfile.mkstemp(suffix=".faiss")
    os.close(fd)
    try:
        faiss.write_index(faiss.downcast_index(index), path)
        return os.path.getsize(path)
    finally:
        os.remove(path)


def _params_text(params: dict) -> str:
    return " ".join(f"{k}={v}" for k, v in params.items())


def part_b(args, rng) -> None:
    G, Q, D, k = args.gallery, args.queries, args.dim, args.k
    print(f"\n## B. {G} x {D} clustered gallery ({args.ids} identities), {Q} queries, cosine, k={k}")
    centers = make_centers(args.ids, D, rng)
    (g, t_gen) = timed(clustered, G, centers, args.sigma, rng)
    q = clustered(Q, centers, args.sigma, rng)
    print(f"(generated in {t_gen:.0f} s; torch threads {torch.get_num_threads()}, faiss threads "
          f"{_faiss_threads()}; one batch of {Q} queries per row)\n")
    gt, qt = torch.from_numpy(g), torch.from_numpy(q)

    print("speed-up: query time of the exact search / this query time; memory: serialised index bytes per "
          "item; imbalance: faiss's IVF list-size imbalance factor (1 = even)")
    print("| index | search parameters | build (s) | query (s) | recall@10 | speed-up vs exact | bytes/item | imbalance |")
    print("|---|---|---|---|---|---|---|---|", flush=True)
    (_, exact_i), t_exact = timed(search, qt, gt, k, "cosine", args.exact_backend, args.memory_mb)
    print(f"| exact ({args.exact_backend}, chunked) | - | 0 | {t_exact:.2f} | 1.0000 | 1.0x | {4 * D} | - |",
          flush=True)
    best = {0.95: None, 0.99: None}
    for text in args.indexes:
        spec, grid = parse_index_arg(text)
        ann, t_build = timed(ApproximateSearch, gt, kind=spec, metric="cosine", train_size=args.train_size,
                             seed=args.seed)
        per_item = index_bytes(ann.index) / G
        ivf = ivf_of(ann.index)
        imbalance = f"{ivf.invlists.imbalance_factor():.2f}" if ivf is not None else "-"
        for j, params in enumerate(grid):
            ann.set_params(**params)
            (_, ai), t_q = timed(ann.search, qt, k)
            rec = recall_at_k(ai, exact_i)
            speed = t_exact / t_q
            for target in best:
                if rec >= target and (best[target] is None or speed > best[target][0]):
                    best[target] = (speed, spec, _params_text(params))
            build = f"{t_build:.1f}" if j == 0 else ""
            print(f"| {spec} | {_params_text(params)} | {build} | {t_q:.3f} | {rec:.4f} | {speed:.1f}x | "
                  f"{per_item:.0f} | {imbalance} |", flush=True)
        del ann
    print()
    for target, want in ((0.95, 20), (0.99, 8)):
        b = best[target]
        if b is None:
            print(f"recall@10 >= {target}: no index reached it (target >= {want}x)")
        else:
            ok = "met" if b[0] >= want else "NOT met"
            print(f"recall@10 >= {target}: best {b[0]:.1f}x ({b[1]}, {b[2]}); target >= {want}x {ok}")
    if args.hnsw_gallery > 0:
        part_b_hnsw(args, rng)


def part_b_hnsw(args, rng) -> None:
    """HNSW-Flat on its own smaller gallery (same items per identity) with its own exact reference."""
    Gh, Q, D, k = args.hnsw_gallery, args.queries, args.dim, args.k
    ids_h = max(1, args.ids * Gh // args.gallery)
    centers = make_centers(ids_h, D, rng)
    gh = torch.from_numpy(clustered(Gh, centers, args.sigma, rng))
    qh = torch.from_numpy(clustered(Q, centers, args.sigma, rng))
    print(f"\nHNSW on its own {Gh}-item gallery ({ids_h} identities, {Q} queries):\n")
    print("| index | search parameters | build (s) | query (s) | recall@10 | speed-up vs exact | bytes/item |")
    print("|---|---|---|---|---|---|---|", flush=True)
    (_, ref_i), t_ref = timed(search, qh, gh, k, "cosine", args.exact_backend, args.memory_mb)
    print(f"| exact ({args.exact_backend}, chunked) | - | 0 | {t_ref:.2f} | 1.0000 | 1.0x | {4 * D} |", flush=True)
    spec = f"HNSW{args.hnsw_m},Flat"
    hnsw, t_build = timed(ApproximateSearch, gh, kind=spec, metric="cosine", ef_construction=args.ef_construction)
    per_item = index_bytes(hnsw.index) / Gh
    for j, ef in enumerate(args.ef_search):
        hnsw.set_params(ef_search=ef)
        (_, hi), t_q = timed(hnsw.search, qh, k)
        build = f"{t_build:.1f}" if j == 0 else ""
        print(f"| {spec} (efConstruction={args.ef_construction}) | ef_search={ef} | {build} | {t_q:.3f} | "
              f"{recall_at_k(hi, ref_i):.4f} | {t_ref / t_q:.1f}x | {per_item:.0f} |", flush=True)


def _faiss_threads() -> int:
    import faiss

    return faiss.omp_get_max_threads()


def parse_scale(text: str) -> int:
    """``"10M"`` -> 10_000_000, ``"500k"`` -> 500_000, ``"2000"`` -> 2000."""
    t = text.strip().lower()
    mult = {"k": 1_000, "m": 1_000_000}.get(t[-1:], 1)
    return int(float(t[:-1] if mult > 1 else t) * mult)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                allow_abbrev=False)
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
    p.add_argument("--exact-backend", default="torch", choices=("torch", "faiss"),
                   help="exact search (reference of recall and of the speed-ups)")
    p.add_argument("--threads", type=int, default=1, help="torch and faiss threads (0: their defaults)")
    p.add_argument("--indexes", nargs="+", default=list(DEFAULT_INDEXES), metavar="SPEC|param=v1/v2",
                   help="faiss factory strings with search-parameter sweeps (nprobe, ef_search, k_factor)")
    p.add_argument("--train-size", type=int, default=65_536, help="training sample of every index")
    p.add_argument("--hnsw-gallery", type=int, default=100_000,
                   help="also HNSW-Flat on its own N-item gallery (0 = skip; a 1M HNSW build takes > 30 min on 2 cores)")
    p.add_argument("--hnsw-m", type=int, default=32)
    p.add_argument("--ef-construction", type=int, default=80)
    p.add_argument("--ef-search", type=int, nargs="+", default=[64, 128, 256])
    p.add_argument("--scale", default="", help="out-of-core mode instead of parts A / B, e.g. 10M (bench_scale.py)")
    p.add_argument("--shards", type=int, nargs="*", default=None,
                   help="shard-count scaling instead of parts A / B, e.g. --shards 1 2 4 (bench_shards.py)")
    p.add_argument("--seed", type=int, default=0)
    args, rest = p.parse_known_args()
    rng = np.random.default_rng(args.seed)
    if args.threads:
        import faiss

        faiss.omp_set_num_threads(args.threads)
        torch.set_num_threads(args.threads)
    print(f"# bench_retrieval on {os.cpu_count()} CPU cores, torch {torch.__version__}, load average "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    if args.scale:
        from bench_scale import run_scale

        return run_scale(parse_scale(args.scale), args, rest)
    if args.shards is not None:
        from bench_shards import run_shards

        return run_shards(args, rest)
    if rest:
        p.error(f"unrecognized arguments: {' '.join(rest)}")
    if not args.skip_a:
        part_a(args, rng)
    if not args.skip_b:
        part_b(args, rng)
    print(f"\nload average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
