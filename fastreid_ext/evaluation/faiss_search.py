"""faiss helpers, exact faiss search and faiss index building (any faiss index by its factory
string, ``flat`` / ``ivf`` / ``hnsw`` as shorthands).

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

Approximate search with its measured recall against exact search is
:mod:`fastreid_ext.evaluation.approximate_search` (it uses both this module and
:mod:`fastreid_ext.evaluation.retrieval`, which uses this one for its faiss backend).
"""
from __future__ import annotations

import re
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
    "index_spec",
    "new_index",
    "train_index",
    "set_search_params",
    "SEARCH_PARAMS",
    "ivf_of",
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


# ----------------------------------------------------------------------------- index specs
def index_spec(kind: str, nlist: int = 1024, hnsw_m: int = 32) -> str:
    """The faiss factory string of ``kind``: a shorthand (``flat`` -> ``Flat``, ``ivf`` ->
    ``IVF<nlist>,Flat``, ``hnsw`` -> ``HNSW<hnsw_m>,Flat``) or already a factory string
    (``"IVF4096,Flat"``, ``"IVF16384_HNSW32,PQ32x8,Refine(Flat)"``; faiss's ``index_factory``
    syntax), returned unchanged."""
    if not isinstance(kind, str) or not kind.strip():
        raise ValueError(f"index kind must be a shorthand {APPROX_KINDS} or a faiss factory string, got {kind!r}")
    if kind == "flat":
        return "Flat"
    if kind == "ivf":
        return f"IVF{int(nlist)},Flat"
    if kind == "hnsw":
        return f"HNSW{int(hnsw_m)},Flat"
    return kind.strip()


def faiss_error(e: Exception) -> str:
    """The message of a faiss C++ exception without its ``Error in <function> at <file>:<line>:``
    prefix and trace."""
    text = str(e).strip()
    first = text.splitlines()[0] if text else type(e).__name__
    return re.sub(r"^Error in .*? at \S+:\d+: ", "", first)


def faiss_metric_of(spec: str, metric: str) -> int:
    """The faiss metric an index of ``spec`` is built with. Euclidean: L2. Cosine (unit
    vectors): inner product, except for specs with an HNSW graph (the index itself or an IVF's
    coarse quantizer), built for a metric: with inner product (not a metric) their recall
    collapses, so unit vectors are indexed with L2 (``|a - b|^2 = 2 - 2 cos``, same ranking)."""
    faiss = import_faiss()
    check_metric(metric)
    if metric == "euclidean" or "HNSW" in spec:
        return faiss.METRIC_L2
    return faiss.METRIC_INNER_PRODUCT


def new_index(spec: str, dim: int, metric: str, ef_construction: int = 80):
    """An empty faiss index of factory string ``spec`` (see :func:`index_spec`); a string faiss
    does not understand raises ``ValueError`` naming it. ``ef_construction``: the build beam of
    every HNSW graph in it (the index or an IVF's quantizer)."""
    faiss = import_faiss()
    if faiss is None:
        raise ImportError("approximate search needs the faiss package (pip install faiss-cpu)")
    try:
        index = faiss.index_factory(int(dim), spec, faiss_metric_of(spec, metric))
    except RuntimeError as e:
        raise ValueError(f"unknown index kind {spec!r}: neither a shorthand {APPROX_KINDS} nor a faiss factory "
                         f"string faiss accepts for dim {dim} ({faiss_error(e)})") from None
    for h in _hnsw_graphs(index):
        h.hnsw.efConstruction = int(ef_construction)
    return index


def _parts(index) -> list:
    """``index`` and the indexes it wraps (pre-transform, refine base, IVF quantizer), downcast."""
    faiss = import_faiss()
    out, todo = [], [index]
    while todo:
        ix = faiss.downcast_index(todo.pop())
        out.append(ix)
        for attr in ("index", "base_index", "quantizer"):
            sub = getattr(ix, attr, None)
            if sub is not None and hasattr(sub, "ntotal"):
                todo.append(sub)
    return out


def _hnsw_graphs(index) -> list:
    return [ix for ix in _parts(index) if hasattr(ix, "hnsw")]


def ivf_of(index):
    """The IVF index inside ``index`` (``None`` when there is none)."""
    try:
        return import_faiss().extract_index_ivf(index)
    except (RuntimeError, TypeError):
        return None


#: search-time parameters: our name -> faiss ``ParameterSpace`` name
SEARCH_PARAMS = {"nprobe": "nprobe", "ef_search": "efSearch", "k_factor": "k_factor_rf"}


def set_search_params(index, strict: bool = True, **params) -> dict:
    """Set search-time parameters on ``index`` (a CPU faiss index): ``nprobe`` (IVF cells
    visited), ``ef_search`` (HNSW beam: the index's graph or an IVF's HNSW quantizer),
    ``k_factor`` (``Refine(...)``: ``k * k_factor`` candidates re-ranked with the refine codes).
    ``None`` / 0 leaves a parameter as it is. A parameter the index has not raises
    ``ValueError`` when ``strict``, else is skipped. Returns what was set."""
    faiss = import_faiss()
    unknown = sorted(set(params) - set(SEARCH_PARAMS))
    if unknown:
        raise TypeError(f"unknown search parameters {unknown}; known: {sorted(SEARCH_PARAMS)}")
    space, done = faiss.ParameterSpace(), {}
    for name, value in params.items():
        if not value:
            continue
        try:
            space.set_index_parameter(index, SEARCH_PARAMS[name], float(value))
            done[name] = int(value)
        except RuntimeError:
            if strict:
                raise ValueError(f"search parameter {name}={value} does not apply to this index "
                                 f"({type(index).__name__})") from None
    return done


def is_exact_storage(spec: str) -> bool:
    """Whether an index of ``spec`` returns the stored vectors themselves (``reconstruct``) and
    exact distances for the items it returns: flat storage, or a flat refinement."""
    last = spec.replace(" ", "").split(",")[-1]
    return last in ("Flat", "Refine(Flat)", "RFlat") or spec in APPROX_KINDS


def default_train_size(index) -> int:
    """Training rows by default: ``max(40 * nlist, 50000)`` for an IVF (faiss asks for >= 39
    points per cell), 50000 otherwise (PQ / SQ codebooks)."""
    ivf = ivf_of(index)
    return max(40 * int(ivf.nlist), 50000) if ivf is not None else 50000


def train_index(index, rows: torch.Tensor, metric: str, spec: str = "") -> None:
    """Train ``index`` on ``rows`` (normalised for cosine); too few rows for its IVF cells or
    codebooks raise ``ValueError`` (not faiss's C++ trace)."""
    if index.is_trained:
        return
    ivf = ivf_of(index)
    if ivf is not None and ivf.nlist > rows.shape[0]:
        raise ValueError(f"index {spec!r} has {ivf.nlist} IVF cells but only {rows.shape[0]} training "
                         f"vectors (k-means needs at least one per cell); use fewer cells or more items")
    try:
        index.train(to_faiss_array(rows, metric))
    except RuntimeError as e:
        raise ValueError(f"training index {spec!r} on {rows.shape[0]} vectors failed: {faiss_error(e)}") from None


def training_rows(g: torch.Tensor, index, train_size: int, seed: int) -> torch.Tensor:
    """A sorted random sample of ``train_size`` rows of ``g`` (0: :func:`default_train_size`)."""
    n = min(g.shape[0], train_size or default_train_size(index))
    if n == g.shape[0]:
        return g
    rng = np.random.default_rng(seed)
    return g[torch.from_numpy(np.sort(rng.choice(g.shape[0], n, replace=False)))]


def _lowered_ivf_kind(kind: str, nlist: int, n: int, train_size: int) -> int:
    """The ``ivf`` shorthand on a gallery smaller than ``nlist``: fewer cells, with a warning."""
    n_train = min(n, train_size or max(40 * nlist, 50000))
    if kind != "ivf" or nlist <= n_train:
        return nlist
    fitted = max(1, n_train // 39)  # faiss asks for >= 39 points per centroid
    warnings.warn(f"IVF with nlist={nlist} on {n_train} training vectors: nlist lowered "
                  f"to {fitted} (faiss k-means needs more points than lists)")
    return fitted


def _maybe_to_gpu(index, spec: str, nprobe: int, gpu_device: Optional[int]):
    ngpus = faiss_num_gpus()
    if ngpus == 0:
        warnings.warn("GPU index asked but the installed faiss has no GPU support; using CPU")
        return index
    if "HNSW" in spec:
        warnings.warn("faiss has no GPU HNSW; the HNSW index stays on the CPU")
        return index
    if ivf_of(index) is not None and (nprobe or 0) > GPU_MAX_K:
        warnings.warn(f"faiss GPU IVF allows nprobe <= {GPU_MAX_K}, got {nprobe}; the index "
                      f"stays on the CPU")
        return index
    try:
        return faiss_to_gpu(index, ngpus, gpu_device)
    except RuntimeError as e:  # pragma: no cover - GPU only: a structure faiss-GPU lacks
        warnings.warn(f"faiss cannot move {spec!r} to the GPU ({str(e).strip().splitlines()[0]}); "
                      f"it stays on the CPU")
        return index


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
    k_factor: int = 0,
):
    """Build a faiss index over ``gallery``.

    ``kind``: a shorthand (``flat``: exact; ``ivf``: IVF-Flat with ``nlist`` cells; ``hnsw``:
    HNSW-Flat with ``hnsw_m`` links) or any faiss factory string (:func:`index_spec`). Indexes
    that need training are trained on at most ``train_size`` random gallery rows (``seed``; 0 =
    :func:`default_train_size`). Search-time parameters that apply to the index are set:
    ``nprobe``, ``ef_search``, ``k_factor`` (:func:`set_search_params`); ``ef_construction`` is
    the build beam of its HNSW graphs. ``use_gpu`` moves the index to the GPU(s) when faiss has
    GPUs and supports the structure (GPU ``gpu_device`` only when given), otherwise warns and
    stays on CPU.
    """
    if import_faiss() is None:
        raise ImportError("approximate search needs the faiss package (pip install faiss-cpu)")
    check_metric(metric)
    g = as_feature_tensor(gallery, "gallery")
    if g.shape[0] == 0:
        raise ValueError("Empty gallery set: 0 gallery features")
    validate_features(g[:1], g)
    nlist = _lowered_ivf_kind(kind, nlist, g.shape[0], train_size)
    spec = index_spec(kind, nlist=nlist, hnsw_m=hnsw_m)
    index = new_index(spec, g.shape[1], metric, ef_construction)
    train_index(index, training_rows(g, index, train_size, seed), metric, spec)
    set_search_params(index, strict=False, nprobe=nprobe, ef_search=ef_search, k_factor=k_factor)
    # rows added on the CPU, then the filled index cloned: faiss refuses a second add on a
    # sharded flat index (several GPUs), and the CPU add needs no GPU memory for the chunks
    add_in_chunks(index, g, metric)
    if use_gpu:
        index = _maybe_to_gpu(index, spec, nprobe, gpu_device)
    return index
