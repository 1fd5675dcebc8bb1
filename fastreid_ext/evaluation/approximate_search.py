"""Approximate k-nearest-neighbour search (any faiss index,
:func:`~fastreid_ext.evaluation.faiss_search.build_index`) with its recall@k measured against
exact search (:func:`fastreid_ext.evaluation.retrieval.search`) on a query sample, so the
approximation error is printed next to the result.

Imports: this module uses :mod:`.faiss_search` (indexes) and :mod:`.retrieval` (the exact
reference); :mod:`.retrieval` uses :mod:`.faiss_search` for its faiss backend.
"""
from __future__ import annotations

import time
from typing import Optional, Tuple

import numpy as np
import torch

from .faiss_search import (
    build_index,
    faiss_scores_to_distance,
    index_spec,
    search_index,
    set_search_params,
    to_faiss_array,
)
from .retrieval import search
from .validation import ArrayLike, as_feature_tensor, validate_features

__all__ = ["retrieval_index", "ApproximateSearch", "recall_at_k", "index_recall"]


def retrieval_index(cfg) -> str:
    """The approximate index a config asks for: ``TEST.RETRIEVAL.INDEX`` (a shorthand or a faiss
    factory string), else the older key ``TEST.RETRIEVAL.APPROX``; ``""``: none."""
    r = cfg.TEST.RETRIEVAL
    return (r.get("INDEX", "") or r.get("APPROX", "") or "").strip()


class ApproximateSearch:
    """Approximate kNN (any faiss index, :func:`build_index`) with its measured recall against
    exact search.

    Example::

        ann = ApproximateSearch(gallery, kind="hnsw", metric="cosine", hnsw_m=32)
        dist, idx = ann.search(query, k=10)
        recall = ann.recall_at_k(query, k=10, sample=1000)  # vs exact flat search
    """

    def __init__(self, gallery: ArrayLike, kind: str = "ivf", metric: str = "cosine", **params):
        self.kind = kind
        self.spec = index_spec(kind, params.get("nlist", 1024), params.get("hnsw_m", 32))
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
            kind=retrieval_index(cfg),
            metric=metric,
            nlist=r.NLIST,
            nprobe=r.NPROBE,
            hnsw_m=r.HNSW_M,
            ef_search=r.EF_SEARCH,
            ef_construction=r.EF_CONSTRUCTION,
            train_size=r.TRAIN_SIZE,
            k_factor=r.K_FACTOR,
        )

    def set_params(self, **params) -> dict:
        """Change search-time parameters (``nprobe``, ``ef_search``, ``k_factor``;
        :func:`set_search_params`, strict) of the CPU index."""
        return set_search_params(self.index, **params)

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


def index_recall(index, gallery: ArrayLike, metric: str, k: int = 10, sample: int = 1000,
                 seed: int = 0) -> dict:
    """Recall@k of ``index`` (holding ``gallery``'s rows in order) against exact search, with
    ``sample`` random gallery rows as queries (each finds itself; the other ``k - 1`` measure
    the approximation). Returns ``{"k", "sample", "recall", "items"}``."""
    g = as_feature_tensor(gallery, "gallery")
    k = min(k, g.shape[0])
    n = min(sample, g.shape[0])
    rows = torch.from_numpy(np.sort(np.random.default_rng(seed).choice(g.shape[0], n, replace=False)))
    q = g[rows]
    _, exact = search(q, g, k, metric, backend="torch")
    _, approx = index.search(to_faiss_array(q, metric), k)
    return {"k": k, "sample": n, "recall": recall_at_k(torch.from_numpy(approx).long(), exact),
            "items": int(g.shape[0])}

