"""Exact k-nearest-neighbour search for ReID evaluation and deployment.

Distances: those of :func:`fastreid_ext.evaluation.distance.pairwise_distance` (cosine
``1 - cos``, true Euclidean ``|q - g|_2``); every backend returns the same values.

Backends (:data:`BACKENDS`, chosen by ``TEST.RETRIEVAL.BACKEND``):

* ``faiss``: ``IndexFlatIP`` / ``IndexFlatL2`` (:mod:`fastreid_ext.evaluation.faiss_search`); on
  GPU when the installed faiss was built with GPUs, otherwise on CPU (with a warning when a GPU
  was asked).
* ``torch``: blockwise matmul + ``topk`` on ``device`` (default: the query's device), no
  ``(B, G)`` block larger than ``memory_mb`` MiB.
* ``auto``: faiss-GPU when the search runs on CUDA and faiss has GPUs, torch otherwise (on
  the CPU the chunked torch matmul beat faiss ``IndexFlat`` in ``benchmarks/bench_retrieval.py``
  and keeps no extra copy of the gallery).

Approximate search lives in :mod:`fastreid_ext.evaluation.approximate_search`
(:class:`~fastreid_ext.evaluation.approximate_search.ApproximateSearch`).
"""
from __future__ import annotations

from typing import Tuple

import torch

from . import faiss_search
from .distance import iter_pairwise_distance
from .validation import ArrayLike, check_metric, resolve_device, validate_features

__all__ = ["BACKENDS", "resolve_backend", "search"]

BACKENDS = ("auto", "faiss", "torch")


def _want_gpu(device, ref: torch.Tensor) -> bool:
    if device is None:
        return ref.is_cuda
    return torch.device(device).type == "cuda"


def _gpu_index(device, ref: torch.Tensor):
    """The GPU a faiss search on ``device`` uses: ``cuda:k`` -> k; a plain ``cuda`` (or CUDA
    features without an explicit device) -> ``None`` (all GPUs, sharded)."""
    if device is None:
        return ref.device.index if ref.is_cuda and torch.cuda.device_count() > 1 else None
    return torch.device(device).index


def resolve_backend(backend: str, want_gpu: bool) -> str:
    """The backend that :func:`search` runs for ``backend`` (``auto`` resolved; see the module
    docstring); unknown names raise ``ValueError``."""
    if backend not in BACKENDS:
        raise ValueError(f"Unknown retrieval backend {backend!r}; expected one of {BACKENDS}")
    if backend != "auto":
        return backend
    if want_gpu and faiss_search.faiss_num_gpus() > 0:
        return "faiss"
    # on the CPU the chunked torch matmul was faster than faiss IndexFlat in
    # benchmarks/bench_retrieval.py and keeps no (G, D) copy of the gallery
    return "torch"


def _search_torch(q, g, k, metric, memory_mb, device):
    device = resolve_device(device, q)
    dists, idxs = [], []
    dtype = torch.float64 if q.dtype == torch.float64 else torch.float32
    # the (B, G) block and one temporary; topk's output is (B, k), negligible
    for _, _, block in iter_pairwise_distance(q, g, metric, memory_mb, device, dtype):
        d, i = torch.topk(block, k, dim=1, largest=False, sorted=True)
        del block  # else it stays alive while the generator computes the next block
        dists.append(d.cpu())
        idxs.append(i.cpu())
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
    check_metric(metric)
    q, g = validate_features(query, gallery)
    if not 1 <= k <= g.shape[0]:
        raise ValueError(f"k must be in [1, {g.shape[0]}] (gallery size), got {k}")
    want_gpu = _want_gpu(device, q)
    backend = resolve_backend(backend, want_gpu)
    if backend == "torch":
        return _search_torch(q, g, k, metric, memory_mb, device)
    if faiss_search.import_faiss() is None:
        raise ImportError("backend='faiss' needs the faiss package (pip install faiss-cpu)")
    return faiss_search.faiss_exact_search(q, g, k, metric, memory_mb, want_gpu,
                                           gpu_device=_gpu_index(device, q) if want_gpu else None)
