"""Exact and approximate k-nearest-neighbour search for ReID evaluation.

Distances (both backends agree):

* ``cosine``:    ``d(q, g) = 1 - <q/|q|, g/|g|>``   (the host's ``compute_cosine_distance``)
* ``euclidean``: ``d(q, g) = |q - g|_2``           (the host returns the *squared* value;
  rankings are identical, we keep the true distance so printed values mean something)

Backends for exact search (:func:`search`):

* ``faiss``: ``IndexFlatIP`` / ``IndexFlatL2``; on GPU through ``StandardGpuResources`` when the
  installed faiss was built with GPUs (sharded over all GPUs when there are several), otherwise
  on CPU. Asking for a GPU from a faiss without GPU support falls back to CPU with a warning
  (the host hard-codes the GPU path, ``fastreid/utils/compute_dist.py:53,68``).
* ``torch``: blockwise matmul + ``topk`` on ``device`` (default: the query's device).
* ``auto``: faiss-GPU when the search runs on CUDA and faiss has GPUs, torch otherwise (on
  the CPU the chunked torch matmul beat faiss ``IndexFlat`` in ``benchmarks/bench_retrieval.py``
  and keeps no extra copy of the gallery).

Memory: queries are processed in row blocks so that no ``(B, G)`` block larger than
``memory_mb`` MiB (float32) is ever materialised (:func:`rows_per_block`).

Approximate search (:class:`ApproximateSearch`): faiss IVF-Flat or HNSW-Flat, with
:meth:`ApproximateSearch.recall_at_k` measuring recall@k against exact search on a query
sample so the approximation error is reported next to the result.
"""
from __future__ import annotations

import logging
import time
import warnings
from typing import Iterator, Optional, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F

logger = logging.getLogger(__name__)

__all__ = [
    "METRICS",
    "BACKENDS",
    "validate_features",
    "rows_per_block",
    "iter_pairwise_distance",
    "pairwise_distance",
    "search",
    "faiss_num_gpus",
    "build_index",
    "ApproximateSearch",
]

METRICS = ("cosine", "euclidean")
BACKENDS = ("auto", "faiss", "torch")
APPROX_KINDS = ("flat", "ivf", "hnsw")

ArrayLike = Union[torch.Tensor, np.ndarray]


# ----------------------------------------------------------------------------- validation
def _as_tensor(x: ArrayLike, name: str) -> torch.Tensor:
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(np.ascontiguousarray(x))
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor or numpy array, got {type(x).__name__}")
    if x.dim() != 2:
        raise ValueError(f"{name} must be 2-D (N, D), got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        x = x.float()
    return x


def _check_metric(metric: str) -> None:
    if metric not in METRICS:
        raise ValueError(f"Unknown metric {metric!r}; expected one of {METRICS}")


def validate_features(query: ArrayLike, gallery: ArrayLike) -> Tuple[torch.Tensor, torch.Tensor]:
    """Check a query / gallery pair and return them as 2-D floating tensors.

    Raises ``ValueError`` on an empty query or gallery, on different feature dimensions, and
    on non-finite values (naming how many NaN / inf entries and rows are affected).
    """
    q = _as_tensor(query, "query")
    g = _as_tensor(gallery, "gallery")
    if q.shape[0] == 0:
        raise ValueError("Empty query set: 0 query features")
    if g.shape[0] == 0:
        raise ValueError("Empty gallery set: 0 gallery features")
    if q.shape[1] != g.shape[1]:
        raise ValueError(
            f"Query and gallery features have different dimensions: {q.shape[1]} vs {g.shape[1]}"
        )
    for name, x in (("query", q), ("gallery", g)):
        # row chunks: no (N, D) boolean temporary for a large gallery
        if all(bool(torch.isfinite(x[s : s + 65536]).all()) for s in range(0, x.shape[0], 65536)):
            continue
        finite = torch.isfinite(x)
        if not bool(finite.all()):
            n_nan = int(torch.isnan(x).sum())
            n_inf = int(torch.isinf(x).sum())
            n_rows = int((~finite).any(dim=1).sum())
            raise ValueError(
                f"{name} features contain non-finite values: {n_nan} NaN and {n_inf} inf "
                f"entries in {n_rows} of {x.shape[0]} rows"
            )
    return q, g


def rows_per_block(num_cols: int, memory_mb: float, bytes_per_elem: int = 4) -> int:
    """Largest row count ``B`` such that a ``(B, num_cols)`` block fits in ``memory_mb`` MiB
    (at least 1)."""
    if memory_mb <= 0:
        raise ValueError(f"memory_mb must be positive, got {memory_mb}")
    return max(1, int(memory_mb * 2**20) // max(1, num_cols * bytes_per_elem))


# ----------------------------------------------------------------------------- distances
def _prepare(x: torch.Tensor, metric: str, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """Query rows on ``device`` / ``dtype``, L2-normalised for the cosine metric."""
    x = x.to(device=device, dtype=dtype)
    if metric == "cosine":
        x = F.normalize(x, p=2, dim=1)
    return x


def _gallery_stat(g: torch.Tensor, metric: str) -> torch.Tensor:
    """``(G,)``: inverse norms (cosine) or squared norms (Euclidean) of the *raw* gallery, so
    no normalised ``(G, D)`` copy of the gallery is ever made."""
    norms = torch.linalg.vector_norm(g, dim=1)
    if metric == "cosine":
        return 1.0 / norms.clamp_min(1e-12)  # F.normalize's eps
    return norms * norms


def _block_distance(qb: torch.Tensor, g: torch.Tensor, g_stat: torch.Tensor, metric: str) -> torch.Tensor:
    """Distance of a prepared query block ``(B, D)`` to the raw gallery ``(G, D)``; the only
    ``(B, G)`` buffer is the matmul output, updated in place."""
    d = qb @ g.t()  # (B, G)
    if metric == "cosine":
        return d.mul_(g_stat.unsqueeze(0)).neg_().add_(1.0)  # 1 - cos
    q_sq = (qb * qb).sum(dim=1, keepdim=True)  # (B, 1)
    return d.mul_(-2.0).add_(q_sq).add_(g_stat.unsqueeze(0)).clamp_min_(0.0).sqrt_()


def _resolve_device(device, ref: torch.Tensor) -> torch.device:
    if device is None:
        return ref.device
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        warnings.warn("CUDA was asked for retrieval but is not available; using the CPU")
        return torch.device("cpu")
    return device


def iter_pairwise_distance(
    query: ArrayLike,
    gallery: ArrayLike,
    metric: str = "cosine",
    memory_mb: float = 1024,
    device=None,
    dtype: Optional[torch.dtype] = None,
) -> Iterator[Tuple[int, int, torch.Tensor]]:
    """Yield ``(start, end, block)`` where ``block`` is the ``(end - start, G)`` distance of
    query rows ``start:end`` to the whole gallery; each block fits in ``memory_mb`` MiB."""
    _check_metric(metric)
    q, g = validate_features(query, gallery)
    device = _resolve_device(device, q)
    dtype = dtype or (torch.float64 if q.dtype == torch.float64 else torch.float32)
    g = g.to(device=device, dtype=dtype)  # no copy when already there
    g_stat = _gallery_stat(g, metric)
    elem = torch.finfo(dtype).bits // 8
    step = rows_per_block(g.shape[0], memory_mb, elem)  # one (B, G) buffer per block
    for s in range(0, q.shape[0], step):
        e = min(s + step, q.shape[0])
        qb = _prepare(q[s:e], metric, device, dtype)
        yield s, e, _block_distance(qb, g, g_stat, metric)


def pairwise_distance(
    query: ArrayLike,
    gallery: ArrayLike,
    metric: str = "cosine",
    memory_mb: float = 1024,
    device=None,
    dtype: Optional[torch.dtype] = None,
) -> torch.Tensor:
    """The full ``(Q, G)`` distance matrix on the CPU, computed in row blocks of at most
    ``memory_mb`` MiB on ``device`` (the result itself is ``Q * G`` floats)."""
    q, g = validate_features(query, gallery)
    out_dtype = dtype or (torch.float64 if q.dtype == torch.float64 else torch.float32)
    out = torch.empty(q.shape[0], g.shape[0], dtype=out_dtype)
    for s, e, block in iter_pairwise_distance(q, g, metric, memory_mb, device, dtype):
        out[s:e] = block.cpu()
        del block  # one live block at a time
    return out


# ----------------------------------------------------------------------------- faiss helpers
def import_faiss():
    try:
        import faiss  # noqa: F401
    except ImportError:  # pragma: no cover - faiss is a dependency of the host
        return None
    return faiss


_GPU_RESOURCES: list = []


def faiss_num_gpus() -> int:
    """GPUs usable by the installed faiss (0 for faiss-cpu or no faiss)."""
    faiss = import_faiss()
    if faiss is None or not hasattr(faiss, "StandardGpuResources"):
        return 0
    try:
        return int(faiss.get_num_gpus())
    except Exception:  # pragma: no cover
        return 0


def faiss_to_gpu(index, ngpus: int):
    """Move a CPU faiss index to the GPU(s): sharded over all GPUs when there are several."""
    faiss = import_faiss()
    if ngpus > 1:
        co = faiss.GpuMultipleClonerOptions()
        co.shard = True
        return faiss.index_cpu_to_all_gpus(index, co=co, ngpu=ngpus)
    if not _GPU_RESOURCES:  # one StandardGpuResources per process, kept alive for its indexes
        _GPU_RESOURCES.append(faiss.StandardGpuResources())
    return faiss.index_cpu_to_gpu(_GPU_RESOURCES[0], 0, index)


def _want_gpu(device, ref: torch.Tensor) -> bool:
    if device is None:
        return ref.is_cuda
    return torch.device(device).type == "cuda"


def to_faiss_array(x: torch.Tensor, metric: str) -> np.ndarray:
    x = x.detach().to("cpu", torch.float32)
    if metric == "cosine":
        x = F.normalize(x, p=2, dim=1)
    return np.ascontiguousarray(x.numpy())


def faiss_scores_to_distance(scores: np.ndarray, metric: str, index=None) -> np.ndarray:
    """faiss scores -> the module's distances. Pass ``index``: a cosine HNSW index built by
    :func:`build_index` searches unit vectors with L2 and returns ``|a - b|^2 = 2 (1 - cos)``."""
    if metric == "cosine":
        faiss = import_faiss()
        if index is not None and faiss is not None and index.metric_type == faiss.METRIC_L2:
            return scores / 2.0  # unit vectors: 1 - cos = |a - b|^2 / 2
        return 1.0 - scores  # inner product of unit vectors
    return np.sqrt(np.maximum(scores, 0.0))  # faiss L2 indexes return squared distances


def _flat_index(dim: int, metric: str):
    faiss = import_faiss()
    return faiss.IndexFlatIP(dim) if metric == "cosine" else faiss.IndexFlatL2(dim)


# ----------------------------------------------------------------------------- exact search
def _resolve_backend(backend: str, want_gpu: bool) -> str:
    if backend not in BACKENDS:
        raise ValueError(f"Unknown retrieval backend {backend!r}; expected one of {BACKENDS}")
    if backend != "auto":
        return backend
    if want_gpu and faiss_num_gpus() > 0:
        return "faiss"
    # on the CPU the chunked torch matmul was faster than faiss IndexFlat in
    # benchmarks/bench_retrieval.py and keeps no (G, D) copy of the gallery
    return "torch"


def _search_torch(q, g, k, metric, memory_mb, device):
    device = _resolve_device(device, q)
    dists, idxs = [], []
    dtype = torch.float64 if q.dtype == torch.float64 else torch.float32
    # the (B, G) block and one temporary; topk's output is (B, k), negligible
    for _, _, block in iter_pairwise_distance(q, g, metric, memory_mb, device, dtype):
        d, i = torch.topk(block, k, dim=1, largest=False, sorted=True)
        del block  # else it stays alive while the generator computes the next block
        dists.append(d.cpu())
        idxs.append(i.cpu())
    return torch.cat(dists).float(), torch.cat(idxs).long()


def _add_in_chunks(index, g: torch.Tensor, metric: str, chunk: int = 65536) -> None:
    """Add ``g`` to ``index`` (which keeps its own float32 copy), normalising ``chunk`` rows at
    a time so no second normalised ``(G, D)`` copy exists."""
    for s in range(0, g.shape[0], chunk):
        index.add(to_faiss_array(g[s : s + chunk], metric))


def _search_faiss(q, g, k, metric, memory_mb, want_gpu):
    index = _flat_index(g.shape[1], metric)
    _add_in_chunks(index, g, metric)
    if want_gpu:
        ngpus = faiss_num_gpus()
        if ngpus == 0:
            warnings.warn(
                "GPU search was asked but the installed faiss has no GPU support "
                "(faiss.get_num_gpus() == 0 or no StandardGpuResources); falling back to faiss on CPU"
            )
        else:
            index = faiss_to_gpu(index, ngpus)
    # faiss bounds its own temporaries (blocks of 4096 queries x 1024 gallery rows); what grows
    # with the chunk is the (B, k) result and the float32 query copy, so chunks are large
    step = max(1, min(16384, rows_per_block(max(k, g.shape[1]), memory_mb / 4)))
    dists, idxs = [], []
    for s in range(0, q.shape[0], step):
        scores, ind = index.search(to_faiss_array(q[s : s + step], metric), k)
        dists.append(torch.from_numpy(faiss_scores_to_distance(scores, metric)))
        idxs.append(torch.from_numpy(ind))
    return torch.cat(dists).float(), torch.cat(idxs).long()


def search(
    query: ArrayLike,
    gallery: ArrayLike,
    k: int,
    metric: str = "cosine",
    backend: str = "auto",
    memory_mb: float = 1024,
    device=None,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Exact k-nearest-neighbour search.

    Args:
        query: ``(Q, D)`` features. gallery: ``(G, D)`` features.
        k: neighbours per query, ``1 <= k <= G``.
        metric: ``"cosine"`` or ``"euclidean"`` (see the module docstring).
        backend: ``"auto"``, ``"faiss"`` or ``"torch"``; anything else raises.
        memory_mb: bound (MiB) on any ``(B, G)`` block materialised.
        device: where to search (``None``: the query's device). A CUDA device with a faiss
            without GPUs falls back to faiss-CPU with a warning.

    Returns:
        ``(distances, indices)``, both ``(Q, k)`` CPU tensors sorted by increasing distance.
    """
    _check_metric(metric)
    q, g = validate_features(query, gallery)
    if not 1 <= k <= g.shape[0]:
        raise ValueError(f"k must be in [1, {g.shape[0]}] (gallery size), got {k}")
    want_gpu = _want_gpu(device, q)
    backend = _resolve_backend(backend, want_gpu)
    if backend == "torch":
        return _search_torch(q, g, k, metric, memory_mb, device)
    if import_faiss() is None:
        raise ImportError("backend='faiss' needs the faiss package (pip install faiss-cpu)")
    return _search_faiss(q, g, k, metric, memory_mb, want_gpu)


# ----------------------------------------------------------------------------- approximate
def build_index(
    gallery: ArrayLike,
    kind: str = "flat",
    metric: str = "cosine",
    nlist: int = 1024,
    nprobe: int = 32,
    hnsw_m: int = 32,
    ef_construction: int = 80,
    ef_search: int = 128,
    train_size: int = 0,
    use_gpu: bool = False,
    seed: int = 0,
):
    """Build a faiss index over ``gallery``.

    ``kind``: ``flat`` (exact), ``ivf`` (IVF-Flat, ``nlist`` k-means cells trained on at most
    ``train_size`` gallery rows, 0 = ``max(40 * nlist, 50000)`` rows; ``nprobe`` cells visited)
    or ``hnsw`` (HNSW-Flat with ``hnsw_m`` links, ``ef_construction`` / ``ef_search``; CPU
    only). ``use_gpu`` moves flat / IVF indexes to the GPU(s) when faiss has GPUs, otherwise
    warns and stays on CPU.
    """
    faiss = import_faiss()
    if faiss is None:
        raise ImportError("approximate search needs the faiss package (pip install faiss-cpu)")
    _check_metric(metric)
    if kind not in APPROX_KINDS:
        raise ValueError(f"Unknown index kind {kind!r}; expected one of {APPROX_KINDS}")
    g = _as_tensor(gallery, "gallery")
    if g.shape[0] == 0:
        raise ValueError("Empty gallery set: 0 gallery features")
    validate_features(g[:1], g)
    dim = g.shape[1]
    faiss_metric = faiss.METRIC_INNER_PRODUCT if metric == "cosine" else faiss.METRIC_L2
    if kind == "flat":
        index = _flat_index(dim, metric)
    elif kind == "ivf":
        quantizer = _flat_index(dim, metric)
        index = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss_metric)
        n_train = min(g.shape[0], train_size or max(40 * nlist, 50000))
        rng = np.random.default_rng(seed)
        rows = torch.from_numpy(np.sort(rng.choice(g.shape[0], n_train, replace=False)))
        index.train(to_faiss_array(g[rows], metric))
        index.nprobe = nprobe
    else:
        # faiss's HNSW graph is built for a metric: with inner product (not a metric) its
        # recall collapses, so unit vectors are indexed with L2 (|a - b|^2 = 2 - 2 cos)
        index = faiss.IndexHNSWFlat(dim, hnsw_m, faiss.METRIC_L2)
        index.hnsw.efConstruction = ef_construction
        index.hnsw.efSearch = ef_search
    if use_gpu:
        ngpus = faiss_num_gpus()
        if kind == "hnsw":
            warnings.warn("faiss has no GPU HNSW; the HNSW index stays on the CPU")
        elif ngpus == 0:
            warnings.warn("GPU index asked but the installed faiss has no GPU support; using CPU")
        else:
            index = faiss_to_gpu(index, ngpus)
    _add_in_chunks(index, g, metric)
    return index


class ApproximateSearch:
    """Approximate kNN (faiss IVF or HNSW) with its measured recall against exact search.

    Example::

        ann = ApproximateSearch(gallery, kind="hnsw", metric="cosine", hnsw_m=32)
        dist, idx = ann.search(query, k=10)
        recall = ann.recall_at_k(query, k=10, sample=1000)  # vs exact flat search
    """

    def __init__(self, gallery: ArrayLike, kind: str = "ivf", metric: str = "cosine", **params):
        self.kind = kind
        self.metric = metric
        self._gallery = _as_tensor(gallery, "gallery")
        t0 = time.perf_counter()
        self.index = build_index(self._gallery, kind=kind, metric=metric, **params)
        self.build_seconds = time.perf_counter() - t0

    @classmethod
    def from_config(cls, cfg, gallery: ArrayLike, metric: str) -> "ApproximateSearch":
        r = cfg.TEST.RETRIEVAL
        return cls(
            gallery,
            kind=r.APPROX,
            metric=metric,
            nlist=r.NLIST,
            nprobe=r.NPROBE,
            hnsw_m=r.HNSW_M,
            ef_search=r.EF_SEARCH,
            ef_construction=r.EF_CONSTRUCTION,
            train_size=r.TRAIN_SIZE,
        )

    def search(self, query: ArrayLike, k: int) -> Tuple[torch.Tensor, torch.Tensor]:
        """``(distances, indices)`` ``(Q, k)`` with the same distance definition as :func:`search`."""
        q, _ = validate_features(query, self._gallery[:1])
        if not 1 <= k <= self._gallery.shape[0]:
            raise ValueError(f"k must be in [1, {self._gallery.shape[0]}], got {k}")
        scores, ind = self.index.search(to_faiss_array(q, self.metric), k)
        dist = faiss_scores_to_distance(scores, self.metric, self.index)
        return torch.from_numpy(dist).float(), torch.from_numpy(ind).long()

    def recall_at_k(
        self,
        query: ArrayLike,
        k: int = 10,
        sample: int = 1000,
        exact_indices: Optional[torch.Tensor] = None,
        seed: int = 0,
    ) -> float:
        """Mean of ``|approx top-k  ∩  exact top-k| / k`` over (a sample of) the queries.

        ``exact_indices`` (``(Q, k)``, for *all* queries) skips the exact search when given.
        """
        q = _as_tensor(query, "query")
        n = min(sample, q.shape[0]) if sample else q.shape[0]
        rows = torch.from_numpy(np.sort(np.random.default_rng(seed).choice(q.shape[0], n, replace=False)))
        if exact_indices is None:
            _, exact = search(q[rows], self._gallery, k, self.metric, backend="auto")
        else:
            exact = exact_indices[rows, :k]
        _, approx = self.search(q[rows], k)
        return recall_at_k(approx, exact)


def recall_at_k(approx: torch.Tensor, exact: torch.Tensor) -> float:
    """Mean fraction of each row of ``exact`` (``(Q, k)`` indices) found in the same row of
    ``approx`` (``(Q, k')``; faiss pads missing results with -1, which never matches)."""
    hits = (approx.unsqueeze(2) == exact.unsqueeze(1)).any(dim=1)  # (Q, k)
    return float(hits.float().mean())
