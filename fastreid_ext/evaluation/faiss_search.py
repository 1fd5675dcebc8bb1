"""faiss helpers, exact faiss search and approximate search (IVF-Flat, HNSW-Flat).

Distances are those of :func:`fastreid_ext.evaluation.distance.pairwise_distance` (cosine
``1 - cos``, true Euclidean): :func:`faiss_scores_to_distance` converts faiss's scores (inner
products, squared L2) to them.

GPUs: through ``StandardGpuResources`` when the installed faiss was built with GPUs: on the
GPU the search device names (``cuda:k``), sharded over all GPUs for a plain ``cuda`` when there
are several. Asking for a GPU from a faiss without GPU support falls back to the CPU with a
warning (the host hard-codes the GPU path, ``fastreid/utils/compute_dist.py:53,68``). faiss GPU
indexes refuse ``k`` or ``nprobe`` above :data:`GPU_MAX_K` (2048); such a search runs on a CPU
copy of the index, with a warning. The GPU copy of the last exact-search gallery is kept
(:func:`clear_gpu_cache`), so repeated searches of one gallery do not copy / re-shard it.

Approximate search (:class:`ApproximateSearch`) reports its measured recall@k against exact
search on a query sample, so the approximation error is printed next to the result.
"""
from __future__ import annotations

import time
import warnings
import weakref
from typing import Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from .distance import rows_per_block
from .validation import ArrayLike, as_feature_tensor, check_metric, validate_features

__all__ = [
    "APPROX_KINDS",
    "import_faiss",
    "faiss_num_gpus",
    "faiss_to_gpu",
    "to_faiss_array",
    "faiss_scores_to_distance",
    "flat_index",
    "add_in_chunks",
    "faiss_exact_search",
    "build_index",
    "ApproximateSearch",
    "recall_at_k",
    "GPU_MAX_K",
    "is_gpu_index",
    "gpu_to_cpu",
    "search_index",
    "clear_gpu_cache",
]

APPROX_KINDS = ("flat", "ivf", "hnsw")

#: faiss GPU indexes select at most this many neighbours / probe at most this many IVF cells
#: (``GPU_MAX_SELECTION_K``, faiss/gpu/utils/DeviceDefs.cuh)
GPU_MAX_K = 2048


# ----------------------------------------------------------------------------- helpers
def import_faiss():
    """The ``faiss`` module, or ``None`` when it is not installed."""
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


def faiss_to_gpu(index, ngpus: int, device: Optional[int] = None):
    """Move a CPU faiss index to the GPU(s): to GPU ``device`` when given, else sharded over
    all ``ngpus`` GPUs when there are several (GPU 0 when there is one)."""
    faiss = import_faiss()
    if device is None and ngpus > 1:
        co = faiss.GpuMultipleClonerOptions()
        co.shard = True
        gpu = faiss.index_cpu_to_all_gpus(index, co=co, ngpu=ngpus)
    else:
        if not _GPU_RESOURCES:  # one StandardGpuResources per process, kept alive for its indexes
            _GPU_RESOURCES.append(faiss.StandardGpuResources())
        gpu = faiss.index_cpu_to_gpu(_GPU_RESOURCES[0], int(device or 0), index)
    return gpu


def is_gpu_index(index) -> bool:
    """Whether ``index`` lives on GPU(s): a ``Gpu*`` index, shards / replicas of them, or an
    object that says so with ``fastreid_ext_on_gpu`` (stand-ins in tests; faiss's SWIG objects
    take no new attributes)."""
    name = type(index).__name__
    if name.startswith("Gpu"):
        return True
    if name in ("IndexShards", "IndexReplicas") and index.count() > 0:
        return type(import_faiss().downcast_index(index.at(0))).__name__.startswith("Gpu")
    return bool(getattr(index, "fastreid_ext_on_gpu", False))


def gpu_to_cpu(index):
    """A CPU copy of a GPU index (``faiss.index_gpu_to_cpu``; shards are merged)."""
    return import_faiss().index_gpu_to_cpu(index)


def _over_gpu_limits(index, k: int) -> bool:
    return k > GPU_MAX_K or int(getattr(index, "nprobe", 0) or 0) > GPU_MAX_K


def search_index(index, x: np.ndarray, k: int, cpu_cache: Optional[dict] = None):
    """``index.search(x, k)``; a GPU index asked for ``k`` (or holding an ``nprobe``) above
    :data:`GPU_MAX_K` is searched through a CPU copy instead (kept in ``cpu_cache["cpu"]`` when
    a dict is given), with a warning."""
    if is_gpu_index(index) and _over_gpu_limits(index, k):
        cpu = cpu_cache.get("cpu") if cpu_cache is not None else None
        if cpu is None:
            warnings.warn(f"faiss GPU indexes allow k and nprobe <= {GPU_MAX_K} (k={k}, nprobe="
                          f"{getattr(index, 'nprobe', '-')}); searching a CPU copy of the index")
            cpu = gpu_to_cpu(index)
            if cpu_cache is not None:
                cpu_cache["cpu"] = cpu
        return cpu.search(x, k)
    return index.search(x, k)


_GPU_CACHE: dict = {}


def clear_gpu_cache() -> None:
    """Release the GPU copy of the last exact-search gallery."""
    _GPU_CACHE.clear()


def _drop_cached(token) -> None:
    entry = _GPU_CACHE.get("entry")
    if entry is not None and entry[4] is token:
        _GPU_CACHE.clear()


def _cached_gpu_index(g: torch.Tensor, metric: str, device):
    """The cached GPU index of this very gallery tensor (same object, not modified since:
    a weak reference, so a freed tensor whose memory is reused never matches)."""
    entry = _GPU_CACHE.get("entry")
    if entry is None:
        return None
    ref, version, key, index, _ = entry
    if ref() is g and version == g._version and key == (metric, device):
        return index
    return None


def to_faiss_array(x: torch.Tensor, metric: str) -> np.ndarray:
    """Contiguous float32 numpy rows for faiss (L2-normalised for the cosine metric)."""
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


def flat_index(dim: int, metric: str):
    """Exact faiss index: inner product of unit vectors (cosine) or L2."""
    faiss = import_faiss()
    return faiss.IndexFlatIP(dim) if metric == "cosine" else faiss.IndexFlatL2(dim)


def add_in_chunks(index, g: torch.Tensor, metric: str, chunk: int = 65536) -> None:
    """Add ``g`` to ``index`` (which keeps its own float32 copy), normalising ``chunk`` rows at
    a time so no second normalised ``(G, D)`` copy exists."""
    for s in range(0, g.shape[0], chunk):
        index.add(to_faiss_array(g[s : s + chunk], metric))


# ----------------------------------------------------------------------------- exact search
def faiss_exact_search(
    q: torch.Tensor, g: torch.Tensor, k: int, metric: str, memory_mb: float, want_gpu: bool,
    gpu_device: Optional[int] = None,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Exact kNN with a faiss flat index on validated ``(Q, D)`` / ``(G, D)`` features (on the
    GPU(s) when ``want_gpu`` and faiss has GPUs, else on the CPU, with a warning if a GPU was
    asked). ``gpu_device``: that GPU only (``None``: all GPUs, sharded). ``k`` above
    :data:`GPU_MAX_K` runs on the CPU. Returns ``(distances, indices)`` ``(Q, k)``."""
    index = None
    if want_gpu:
        ngpus = faiss_num_gpus()
        if ngpus == 0:
            warnings.warn(
                "GPU search was asked but the installed faiss has no GPU support "
                "(faiss.get_num_gpus() == 0 or no StandardGpuResources); falling back to faiss on CPU"
            )
        elif k > GPU_MAX_K:
            warnings.warn(f"faiss GPU search allows k <= {GPU_MAX_K}, got k={k}; searching on the CPU")
        else:
            index = _cached_gpu_index(g, metric, gpu_device)
            if index is None:
                _GPU_CACHE.clear()  # one gallery at a time on the GPU
                cpu = flat_index(g.shape[1], metric)
                add_in_chunks(cpu, g, metric)
                index = faiss_to_gpu(cpu, ngpus, gpu_device)
                token = object()
                _GPU_CACHE["entry"] = (weakref.ref(g), g._version, (metric, gpu_device), index, token)
                weakref.finalize(g, _drop_cached, token)  # the gallery is gone: free the GPU copy
    if index is None:
        index = flat_index(g.shape[1], metric)
        add_in_chunks(index, g, metric)
    # faiss bounds its own temporaries (blocks of 4096 queries x 1024 gallery rows); what grows
    # with the chunk is the (B, k) result and the float32 query copy, so chunks are large
    step = max(1, min(16384, rows_per_block(max(k, g.shape[1]), memory_mb / 4)))
    dists, idxs = [], []
    for s in range(0, q.shape[0], step):
        scores, ind = index.search(to_faiss_array(q[s : s + step], metric), k)
        dists.append(torch.from_numpy(faiss_scores_to_distance(scores, metric)))
        idxs.append(torch.from_numpy(ind))
    return torch.cat(dists).float(), torch.cat(idxs).long()


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
    gpu_device: Optional[int] = None,
):
    """Build a faiss index over ``gallery``.

    ``kind``: ``flat`` (exact), ``ivf`` (IVF-Flat, ``nlist`` k-means cells trained on at most
    ``train_size`` gallery rows, 0 = ``max(40 * nlist, 50000)`` rows; ``nprobe`` cells visited)
    or ``hnsw`` (HNSW-Flat with ``hnsw_m`` links, ``ef_construction`` / ``ef_search``; CPU
    only). ``use_gpu`` moves flat / IVF indexes to the GPU(s) when faiss has GPUs (GPU
    ``gpu_device`` only when given), otherwise warns and stays on CPU.
    """
    faiss = import_faiss()
    if faiss is None:
        raise ImportError("approximate search needs the faiss package (pip install faiss-cpu)")
    check_metric(metric)
    if kind not in APPROX_KINDS:
        raise ValueError(f"Unknown index kind {kind!r}; expected one of {APPROX_KINDS}")
    g = as_feature_tensor(gallery, "gallery")
    if g.shape[0] == 0:
        raise ValueError("Empty gallery set: 0 gallery features")
    validate_features(g[:1], g)
    dim = g.shape[1]
    faiss_metric = faiss.METRIC_INNER_PRODUCT if metric == "cosine" else faiss.METRIC_L2
    if kind == "flat":
        index = flat_index(dim, metric)
    elif kind == "ivf":
        n_train = min(g.shape[0], train_size or max(40 * nlist, 50000))
        if nlist > n_train:  # faiss's k-means needs at least one training point per list
            fitted = max(1, n_train // 39)  # faiss asks for >= 39 points per centroid
            warnings.warn(f"IVF with nlist={nlist} on {n_train} training vectors: nlist lowered "
                          f"to {fitted} (faiss k-means needs more points than lists)")
            nlist = fitted
        quantizer = flat_index(dim, metric)
        index = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss_metric)
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
    # rows added on the CPU, then the filled index cloned: faiss refuses a second add on a
    # sharded flat index (several GPUs), and the CPU add needs no GPU memory for the chunks
    add_in_chunks(index, g, metric)
    if use_gpu:
        ngpus = faiss_num_gpus()
        if kind == "hnsw":
            warnings.warn("faiss has no GPU HNSW; the HNSW index stays on the CPU")
        elif ngpus == 0:
            warnings.warn("GPU index asked but the installed faiss has no GPU support; using CPU")
        elif kind == "ivf" and nprobe > GPU_MAX_K:
            warnings.warn(f"faiss GPU IVF allows nprobe <= {GPU_MAX_K}, got {nprobe}; the index "
                          f"stays on the CPU")
        else:
            index = faiss_to_gpu(index, ngpus, gpu_device)
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
        self._gallery = as_feature_tensor(gallery, "gallery")
        t0 = time.perf_counter()
        self.index = build_index(self._gallery, kind=kind, metric=metric, **params)
        self.build_seconds = time.perf_counter() - t0
        self._cpu_copy: dict = {}  # CPU copy of a GPU index, for k > GPU_MAX_K

    @classmethod
    def from_config(cls, cfg, gallery: ArrayLike, metric: str, device=None) -> "ApproximateSearch":
        """``TEST.RETRIEVAL``'s index; on the GPU(s) when ``device`` is a CUDA device
        (``cuda:k``: that GPU; ``cuda``: all, sharded), as the exact search decides."""
        r = cfg.TEST.RETRIEVAL
        dev = torch.device(device) if device is not None else None
        on_gpu = dev is not None and dev.type == "cuda"
        return cls(
            gallery,
            use_gpu=on_gpu,
            gpu_device=dev.index if on_gpu else None,
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
        """``(distances, indices)`` ``(Q, k)`` with the distances of
        :func:`fastreid_ext.evaluation.retrieval.search`."""
        q, _ = validate_features(query, self._gallery[:1])
        if not 1 <= k <= self._gallery.shape[0]:
            raise ValueError(f"k must be in [1, {self._gallery.shape[0]}], got {k}")
        scores, ind = search_index(self.index, to_faiss_array(q, self.metric), k, self._cpu_copy)
        dist = faiss_scores_to_distance(scores, self.metric, self.index)
        return torch.from_numpy(dist).float(), torch.from_numpy(ind).long()

    def recall_at_k(
        self,
        query: ArrayLike,
        k: int = 10,
        sample: int = 1000,
        exact_indices: Optional[torch.Tensor] = None,
        seed: int = 0,
        backend: str = "auto",
    ) -> float:
        """Mean of ``|approx top-k  ∩  exact top-k| / k`` over (a sample of) the queries.

        ``exact_indices`` (``(Q, k)``, for *all* queries) skips the exact search when given;
        otherwise the exact search runs with ``backend``
        (:func:`fastreid_ext.evaluation.retrieval.search`).
        """
        from .retrieval import search  # retrieval imports this module for its faiss backend

        q = as_feature_tensor(query, "query")
        n = min(sample, q.shape[0]) if sample else q.shape[0]
        rows = torch.from_numpy(np.sort(np.random.default_rng(seed).choice(q.shape[0], n, replace=False)))
        if exact_indices is None:
            _, exact = search(q[rows], self._gallery, k, self.metric, backend=backend)
        else:
            exact = exact_indices[rows, :k]
        _, approx = self.search(q[rows], k)
        return recall_at_k(approx, exact)


def recall_at_k(approx: torch.Tensor, exact: torch.Tensor) -> float:
    """Mean fraction of each row of ``exact`` (``(Q, k)`` indices) found in the same row of
    ``approx`` (``(Q, k')``; faiss pads missing results with -1, which never matches)."""
    hits = (approx.unsqueeze(2) == exact.unsqueeze(1)).any(dim=1)  # (Q, k)
    return float(hits.float().mean())
