"""Rank metrics straight from features, without ever holding the ``(Q, G)`` distance matrix.

Queries are processed in chunks of rows sized so that one chunk's distance block and its
temporaries stay within ``memory_mb``; the gallery is normalised block by block, so no copy of
the gallery features is made either. Each chunk's distances go through the same exact
match-position search as :func:`fastreid_ext.evaluation.rank.evaluate_rank` (sort of the row
values, batched ``searchsorted`` for the exact positions of the matches: CMC from the first,
AP from all, INP from the last), so the results equal ``evaluate_rank(host_pairwise_distance(qf,
gf), ...)``.

Distances are the host's (:func:`fastreid_ext.evaluation.distance.host_distance_rows`):
``cosine`` = ``1 - <q/|q|, g/|g|>``, ``euclidean`` = *squared* Euclidean
``|q|^2 + |g|^2 - 2 <q, g>`` (the host does not take the root; the ranking is the same).

Tie rule: the same as :func:`evaluate_rank` (the host's ``np.argsort`` order on the distance
row as computed here); rows where a kept non-match has exactly a match's distance are recomputed
with that argsort. Floating-point blocking of the matrix product may make a chunk's distances
differ in the last bit from a one-shot product, so with near-equal distances two runs with
different ``memory_mb`` may order a pair differently; exactly representable features (e.g.
small integers) give identical distances and identical results.

On CUDA features the distances and the row sort run on the GPU; the match search and the tie
fallback run on the CPU (the host's argsort order is a numpy order).
"""
from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .distance import host_distance_rows
from .rank import (
    PROTOCOL_SPECS,
    PROTOCOLS,
    RankResult,
    check_max_rank,
    check_protocol,
    rank_from_chunks,
    rank_groupwise,
)
from .validation import as_1d, as_feature_matrix, check_metric

logger = logging.getLogger(__name__)

__all__ = ["evaluate_features", "query_chunk_rows"]


def _resolve_device(qf: Any, device) -> torch.device:
    if device is not None:
        return torch.device(device)
    if isinstance(qf, torch.Tensor) and qf.device.type != "cpu":
        return qf.device
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


def _gallery_block_rows(num_g: int, dim: int, itemsize: int, memory_mb: float) -> int:
    """Gallery rows normalised / multiplied at once: 1/16 of the budget, at least 1024."""
    return int(min(num_g, max(1024, memory_mb * 2**20 // (16 * dim * itemsize))))


def query_chunk_rows(num_g: int, itemsize: int, memory_mb: float, protocol: str) -> int:
    """Query rows per chunk so that one chunk's distance block and its temporaries (the block,
    its sorted copy or sorted prefixes, masks, a column selection, the product of one gallery
    block, transfer copies: ~6 blocks; ``cuhk03_sgs`` adds an int64 argsort and its gathers:
    ~40 bytes per element) fit in ``memory_mb``."""
    per_elem = 6 * itemsize + (40 if protocol == "cuhk03_sgs" else 0)
    return max(1, int(memory_mb * 2**20) // max(1, num_g * per_elem))


def _feature_chunks(q, gf, metric, q_pids, q_camids, rows, keep_cols, block):
    on_gpu = q.device.type != "cpu"
    keep_t = None if keep_cols is None else torch.as_tensor(keep_cols, device=q.device)
    for s in range(0, q.shape[0], rows):
        sl = slice(s, min(s + rows, q.shape[0]))
        d = host_distance_rows(q[sl], gf, metric, block)  # (R, G) on the features' device
        sorted_rows = None
        if on_gpu:
            dk = d if keep_t is None else d.index_select(1, keep_t)
            sorted_rows = torch.sort(dk, dim=1).values.cpu().numpy()
            del dk
        yield d.cpu().numpy(), q_pids[sl], q_camids[sl], sorted_rows
        del d


def evaluate_features(
    qf,
    gf,
    q_pids,
    g_pids,
    q_camids,
    g_camids,
    metric: str = "cosine",
    protocol: str = "cross_camera",
    max_rank: int = 50,
    memory_mb: float = 1024,
    device=None,
    q_groups=None,
    g_groups=None,
    num_repeats: int = 10,
    rng=None,
) -> RankResult:
    """CMC / AP / INP from ``(Q, D)`` query and ``(G, D)`` gallery features.

    Equal to ``evaluate_rank(host_pairwise_distance(qf, gf, metric), ...)`` (same protocols,
    the same :class:`~fastreid_ext.evaluation.rank.RankResult` and the same tie rule), computed in query chunks so that no distance block
    beyond ``memory_mb`` MiB is held (the features themselves are not counted).

    Args:
        qf, gf: features (numpy or torch). Integer features are converted to float64,
            half precision to float32.
        metric: ``"cosine"`` or ``"euclidean"`` (squared, like the host).
        protocol, max_rank, q_groups, g_groups, num_repeats, rng: as in
            :func:`fastreid_ext.evaluation.rank.evaluate_rank`.
        memory_mb: budget for one chunk's distance block and its temporaries.
        device: where to compute the distances; default the features' device if they are on a
            GPU, else CUDA when available, else CPU.
    """
    check_metric(metric)
    check_protocol(protocol)
    max_rank = check_max_rank(max_rank)
    if not memory_mb > 0:
        raise ValueError(f"memory_mb must be positive, got {memory_mb!r}")
    dev = _resolve_device(qf, device)
    q = as_feature_matrix("qf", qf, dev)
    g = as_feature_matrix("gf", gf, dev)
    if q.shape[1] != g.shape[1]:
        raise ValueError(f"feature dimension mismatch: qf has {q.shape[1]}, gf has {g.shape[1]}")
    if q.dtype != g.dtype:
        dt = torch.promote_types(q.dtype, g.dtype)
        q, g = q.to(dt), g.to(dt)
    nq, ng = q.shape[0], g.shape[0]
    q_pids = as_1d("q_pids", q_pids, nq)
    g_pids = as_1d("g_pids", g_pids, ng)
    q_camids = as_1d("q_camids", q_camids, nq)
    g_camids = as_1d("g_camids", g_camids, ng)
    if metric == "cosine":
        q = F.normalize(q, p=2, dim=1)

    if protocol == "groupwise":
        def evaluate_group(qi, gi):
            qi_t = torch.as_tensor(qi, device=q.device)
            gi_t = torch.as_tensor(gi, device=q.device)
            return _run(q.index_select(0, qi_t), g.index_select(0, gi_t), q_pids[qi], g_pids[gi],
                        q_camids[qi], g_camids[gi], metric, "cross_camera", max_rank, memory_mb,
                        num_repeats, rng)

        return rank_groupwise(evaluate_group, q_groups, g_groups, nq, ng)
    if q_groups is not None or g_groups is not None:
        raise ValueError(f"q_groups / g_groups are only used by protocol 'groupwise', not {protocol!r}")
    return _run(q, g, q_pids, g_pids, q_camids, g_camids, metric, protocol, max_rank, memory_mb, num_repeats, rng)


def _run(q, g, q_pids, g_pids, q_camids, g_camids, metric, protocol, max_rank, memory_mb, num_repeats, rng):
    assert protocol in PROTOCOLS and protocol != "groupwise"
    rows = query_chunk_rows(g.shape[0], q.element_size(), memory_mb, protocol)
    keep_cols = None
    if PROTOCOL_SPECS[protocol].junk_unlabelled:
        gj = np.asarray(g_pids == -1)
        keep_cols = np.flatnonzero(~gj) if gj.any() else None
    block = _gallery_block_rows(g.shape[0], g.shape[1], g.element_size(), memory_mb)
    chunks = _feature_chunks(q, g, metric, q_pids, q_camids, rows, keep_cols, block)
    return rank_from_chunks(chunks, g_pids, g_camids, max_rank, protocol, num_repeats, rng)
