"""Pairwise distances between query and gallery features, computed in memory-bounded blocks.

Two families, with explicit names because their ``euclidean`` differs:

* :func:`pairwise_distance` / :func:`iter_pairwise_distance` (used by search, re-ranking and
  the rank-list pictures):

  - ``cosine``:    ``d(q, g) = 1 - <q/|q|, g/|g|>``
  - ``euclidean``: ``d(q, g) = |q - g|_2`` (the *true* distance, so printed values mean
    something)

* :func:`host_pairwise_distance` / :func:`host_distance_rows` (used by the rank metrics
  computed from features): the host's formulas and order of operations
  (``fastreid/utils/compute_dist.py``):

  - ``cosine``:    ``1 - <q/|q|, g/|g|>`` written as ``-mm + 1`` like the host
  - ``euclidean``: the *squared* distance ``|q|^2 + |g|^2 - 2 <q, g>`` (the host takes no root)

The square root is monotone, so both families rank a gallery identically; only the values
differ.

Memory: :func:`iter_pairwise_distance` processes queries in row blocks so that no ``(B, G)``
block larger than ``memory_mb`` MiB is materialised (:func:`rows_per_block`), and it never
makes a normalised ``(G, D)`` copy of the gallery.
"""
from __future__ import annotations

from typing import Iterator, Optional, Tuple

import torch
import torch.nn.functional as F

from .validation import (
    ArrayLike,
    as_feature_matrix,
    check_metric,
    resolve_device,
    validate_features,
)

__all__ = [
    "rows_per_block",
    "prepare_rows",
    "gallery_stat",
    "block_distance",
    "iter_pairwise_distance",
    "pairwise_distance",
    "host_distance_rows",
    "host_pairwise_distance",
]

#: Default gallery rows normalised / multiplied at once by :func:`host_distance_rows`.
HOST_GALLERY_BLOCK = 8192


def rows_per_block(num_cols: int, memory_mb: float, bytes_per_elem: int = 4) -> int:
    """Largest row count ``B`` such that a ``(B, num_cols)`` block fits in ``memory_mb`` MiB
    (at least 1)."""
    if memory_mb <= 0:
        raise ValueError(f"memory_mb must be positive, got {memory_mb}")
    return max(1, int(memory_mb * 2**20) // max(1, num_cols * bytes_per_elem))


# ----------------------------------------------------------------------------- true distances
def prepare_rows(x: torch.Tensor, metric: str, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """Query rows on ``device`` / ``dtype``, L2-normalised for the cosine metric."""
    x = x.to(device=device, dtype=dtype)
    if metric == "cosine":
        x = F.normalize(x, p=2, dim=1)
    return x


def gallery_stat(g: torch.Tensor, metric: str) -> torch.Tensor:
    """``(G,)``: inverse norms (cosine) or squared norms (Euclidean) of the *raw* gallery, so
    no normalised ``(G, D)`` copy of the gallery is ever made."""
    norms = torch.linalg.vector_norm(g, dim=1)
    if metric == "cosine":
        return 1.0 / norms.clamp_min(1e-12)  # F.normalize's eps
    return norms * norms


def block_distance(qb: torch.Tensor, g: torch.Tensor, g_stat: torch.Tensor, metric: str) -> torch.Tensor:
    """Distance of a prepared query block ``(B, D)`` (:func:`prepare_rows`) to the raw gallery
    ``(G, D)`` with its :func:`gallery_stat`; the only ``(B, G)`` buffer is the matmul output,
    updated in place."""
    d = qb @ g.t()  # (B, G)
    if metric == "cosine":
        return d.mul_(g_stat.unsqueeze(0)).neg_().add_(1.0)  # 1 - cos
    q_sq = (qb * qb).sum(dim=1, keepdim=True)  # (B, 1)
    return d.mul_(-2.0).add_(q_sq).add_(g_stat.unsqueeze(0)).clamp_min_(0.0).sqrt_()


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
    check_metric(metric)
    q, g = validate_features(query, gallery)
    device = resolve_device(device, q)
    dtype = dtype or (torch.float64 if q.dtype == torch.float64 else torch.float32)
    g = g.to(device=device, dtype=dtype)  # no copy when already there
    g_stat = gallery_stat(g, metric)
    elem = torch.finfo(dtype).bits // 8
    step = rows_per_block(g.shape[0], memory_mb, elem)  # one (B, G) buffer per block
    for s in range(0, q.shape[0], step):
        e = min(s + step, q.shape[0])
        qb = prepare_rows(q[s:e], metric, device, dtype)
        yield s, e, block_distance(qb, g, g_stat, metric)


def pairwise_distance(
    query: ArrayLike,
    gallery: ArrayLike,
    metric: str = "cosine",
    memory_mb: float = 1024,
    device=None,
    dtype: Optional[torch.dtype] = None,
) -> torch.Tensor:
    """The full ``(Q, G)`` distance matrix (cosine, or the true Euclidean distance) on the CPU,
    computed in row blocks of at most ``memory_mb`` MiB on ``device`` (the result itself is
    ``Q * G`` floats)."""
    q, g = validate_features(query, gallery)
    out_dtype = dtype or (torch.float64 if q.dtype == torch.float64 else torch.float32)
    out = torch.empty(q.shape[0], g.shape[0], dtype=out_dtype)
    for s, e, block in iter_pairwise_distance(q, g, metric, memory_mb, device, dtype):
        out[s:e] = block.cpu()
        del block  # one live block at a time
    return out


# ----------------------------------------------------------------------------- host's formulas
@torch.no_grad()
def host_distance_rows(
    q: torch.Tensor, gf: torch.Tensor, metric: str, block: int = HOST_GALLERY_BLOCK
) -> torch.Tensor:
    """``(R, G)`` host distances (cosine, or *squared* Euclidean) of a chunk of query rows
    (already L2-normalised for cosine) to the gallery, with the host's arithmetic (``1 - mm``
    written as ``-mm + 1``, which is the same IEEE operation). The gallery is taken ``block``
    rows at a time (cosine: L2-normalised block by block)."""
    qq = q.pow(2).sum(dim=1, keepdim=True) if metric == "euclidean" else None  # (R, 1)
    num_g = gf.shape[0]
    out = None
    for s in range(0, num_g, block):
        e = min(s + block, num_g)
        g = gf[s:e]  # (B, D)
        if metric == "cosine":
            g = F.normalize(g, p=2, dim=1)
            blk = torch.mm(q, g.t()).neg_().add_(1)  # (R, B)
        else:
            # the host's order of operations: |q|^2 + |g|^2, then addmm with alpha=-2
            blk = qq.expand(-1, e - s) + g.pow(2).sum(dim=1).unsqueeze(0)
            blk.addmm_(q, g.t(), beta=1, alpha=-2)
        del g
        if s == 0 and e == num_g:
            return blk  # one block: no copy
        if out is None:
            out = torch.empty((q.shape[0], num_g), dtype=q.dtype, device=q.device)
        out[:, s:e] = blk
        del blk
    return out


@torch.no_grad()
def host_pairwise_distance(qf, gf, metric: str = "cosine") -> torch.Tensor:
    """The full ``(Q, G)`` matrix with the host's formulas (cosine, or *squared* Euclidean);
    for small cases and tests (:func:`fastreid_ext.evaluation.evaluate_features` never builds
    it)."""
    check_metric(metric)
    q = as_feature_matrix("qf", qf, None)
    g = as_feature_matrix("gf", gf, q.device).to(q.dtype)
    if q.shape[1] != g.shape[1]:
        raise ValueError(f"feature dimension mismatch: qf has {q.shape[1]}, gf has {g.shape[1]}")
    if metric == "cosine":
        q = F.normalize(q, p=2, dim=1)
    return host_distance_rows(q, g, metric, g.shape[0])
