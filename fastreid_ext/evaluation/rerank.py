"""k-reciprocal re-ranking (Zhong, Zheng, Cao, Li, *Re-ranking Person Re-identification with
k-reciprocal Encoding*, CVPR 2017) in torch, on CPU or GPU, memory-bounded.

It computes what the host's ``fastreid/evaluation/rerank.py::re_ranking`` (the authors' numpy
code) computes, without its dense ``(N, N)`` matrices (``N = Q + G``) and without the host's
GPU-only faiss path (``fastreid/utils/compute_dist.py:53,68``):

1. original distance ``d(p, g_i)`` squared and divided by its row maximum (the authors' code);
2. k-reciprocal neighbours ``R(p, k) = {g in N(p, k) : p in N(g, k)}`` (Eq. (3)), with the
   neighbour lists ``N(., k1 + 1)`` taken from the row-wise top-k;
3. the expansion ``R*(p, k1)`` (Eq. (6)): add ``R(q, k1/2)`` of each ``q in R(p, k1)`` when
   ``|R(p, k1) ∩ R(q, k1/2)| > 2/3 |R(q, k1/2)|``;
4. Gaussian-kernel encoding ``V_{p,g} = exp(-d(p, g))`` on ``R*`` (Eq. (7)), row-normalised;
5. local query expansion over the ``k2`` nearest neighbours (Eq. (11));
6. Jaccard distance ``d_J = 1 - sum min(V_p, V_g) / sum max(V_p, V_g)`` (Eq. (10)), where
   ``sum max = 2 - sum min`` since rows of ``V`` sum to one;
7. final distance ``d* = (1 - lambda) d_J + lambda d`` (Eq. (12)).

Memory budget (``memory_mb``): every transient block (a ``(B, N)`` row block of distances, the
``(B, k1+1, k1/2+1, k1+1)`` neighbour comparisons, the ``min`` pairs of the sparse Jaccard
product) is kept under ``memory_mb / 4`` MiB. What persists is ``O(N * (k1 + k2))`` for the
neighbour lists, the sparse ``V`` (``N x |R*|`` entries, ``k2`` times that after query
expansion) and the ``(Q, G)`` result itself.
"""
from __future__ import annotations

from typing import Callable, Tuple

import numpy as np
import torch

from .distance import block_distance, gallery_stat, prepare_rows, rows_per_block
from .validation import ArrayLike, check_metric, resolve_device, validate_features

__all__ = ["k_reciprocal_rerank", "re_ranking_from_dist"]

RowProvider = Callable[[int, int], torch.Tensor]  # (start, end) -> (end - start, N) distances


def _csr_from_sorted(rows: torch.Tensor, n_rows: int) -> torch.Tensor:
    """Row pointer ``(n_rows + 1,)`` of entries already sorted by ``rows``."""
    crow = torch.zeros(n_rows + 1, dtype=torch.long, device=rows.device)
    crow[1:] = torch.bincount(rows, minlength=n_rows).cumsum(0)
    return crow


def _gather_rows(crow: torch.Tensor, which: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Entries of CSR rows ``which`` (``(M,)``): ``(owner (P,), position (P,))`` where
    ``owner`` indexes ``which`` and ``position`` indexes the CSR arrays."""
    starts = crow[which]
    counts = crow[which + 1] - starts
    owner = torch.repeat_interleave(torch.arange(which.numel(), device=crow.device), counts)
    first = torch.cumsum(counts, 0) - counts
    pos = starts[owner] + torch.arange(owner.numel(), device=crow.device) - first[owner]
    return owner, pos


def _reciprocal_mask(rank: torch.Tensor, rows: torch.Tensor, k: int) -> torch.Tensor:
    """``(B, k+1)`` mask over ``rank[rows, :k+1]``: which forward neighbours have ``rows`` in
    their own ``k+1`` nearest (Eq. (3), the authors' ``k_reciprocal_neigh``)."""
    fwd = rank[rows, : k + 1]  # (B, k+1)
    back = rank[fwd, : k + 1]  # (B, k+1, k+1)
    return (back == rows.view(-1, 1, 1)).any(dim=2)


Sparse = Tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # (rows, cols, values), sorted by row


def _rerank_core(
    dist_rows: RowProvider,
    n_all: int,
    n_query: int,
    k1: int,
    k2: int,
    lambda_value: float,
    memory_mb: float,
    device: torch.device,
    dtype: torch.dtype,
) -> torch.Tensor:
    """Steps 1-7 of the module docstring; returns the ``(Q, G)`` final distance (on the CPU)."""
    N, Q = n_all, n_query
    budget = memory_mb / 4
    big = rows_per_block(N, budget, torch.finfo(dtype).bits // 8 * 3)  # distances + squared + normalised
    rank, row_max, orig_qg = _neighbours(dist_rows, N, Q, min(max(k1 + 1, k2), N), big, device, dtype)
    v = _encode(dist_rows, rank, row_max, k1, budget, big, dtype)
    if k2 != 1:
        v = _query_expansion(v, rank, min(k2, N), budget, dtype)
    for s, e, t_min in _jaccard(v, N, Q, budget, dtype):
        jac = 1.0 - t_min / (2.0 - t_min)
        orig_qg[s:e] = (jac * (1.0 - lambda_value)).cpu() + orig_qg[s:e] * lambda_value  # Eq. (12)
    return orig_qg


def _neighbours(dist_rows: RowProvider, N: int, Q: int, K: int, big: int, device: torch.device,
                dtype: torch.dtype) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Pass 1 (step 1): the ``K`` nearest of every row (``(N, K)``), the row maxima of ``d^2``
    and the normalised original ``(Q, G)`` distance."""
    rank = torch.empty(N, K, dtype=torch.long, device=device)
    row_max = torch.empty(N, dtype=dtype, device=device)
    orig_qg = torch.empty(Q, N - Q, dtype=dtype)
    for s in range(0, N, big):
        e = min(s + big, N)
        d2 = dist_rows(s, e).to(device=device, dtype=dtype).pow_(2)  # (B, N), a fresh block
        row_max[s:e] = d2.max(dim=1).values.clamp_min(torch.finfo(dtype).tiny)
        d2 /= row_max[s:e, None]
        rank[s:e] = torch.topk(d2, K, dim=1, largest=False, sorted=True).indices
        if s < Q:
            orig_qg[s : min(e, Q)] = d2[: min(e, Q) - s, Q:].cpu()
        del d2
    return rank, row_max, orig_qg


def _encode(dist_rows: RowProvider, rank: torch.Tensor, row_max: torch.Tensor, k1: int,
            budget: float, big: int, dtype: torch.dtype) -> Sparse:
    """Steps 2-4: k-reciprocal sets ``R(i, k1)``, ``R(i, k1/2)`` (Eq. (3)), the expansion
    ``R*(i, k1)`` (Eq. (6)) and the sparse row-normalised ``V`` (Eq. (7)), in row blocks."""
    N, device = rank.shape[0], rank.device
    kh = int(round(k1 / 2.0))  # np.around: half to even, like the authors' code
    k1c, khc = min(k1, N - 1), min(kh, N - 1)
    fwd1, fwdh = rank[:, : k1c + 1], rank[:, : khc + 1]
    step = rows_per_block((k1c + 1) ** 2 * (khc + 1), budget, 1)
    mask1 = torch.empty(N, k1c + 1, dtype=torch.bool, device=device)
    maskh = torch.empty(N, khc + 1, dtype=torch.bool, device=device)
    for s in range(0, N, step):
        r = torch.arange(s, min(s + step, N), device=device)
        mask1[r] = _reciprocal_mask(rank, r, k1c)
        maskh[r] = _reciprocal_mask(rank, r, khc)
    size_h = maskh.sum(dim=1)  # |R(q, k1/2)|

    v_rows, v_cols, v_vals = [], [], []
    big2 = max(1, min(big, step))
    for s in range(0, N, big2):
        e = min(s + big2, N)
        r = torch.arange(s, e, device=device)
        B = e - s
        R1 = torch.where(mask1[r], fwd1[r], N)  # (B, k1+1), N = absent
        cand = fwd1[r]  # (B, k1+1) candidates q
        Rh = torch.where(maskh[cand], fwdh[cand], -1)  # (B, k1+1, kh+1)
        inter = (Rh.unsqueeze(3) == R1.view(B, 1, 1, -1)).any(dim=3).sum(dim=2)  # (B, k1+1)
        accept = mask1[r] & (inter.to(dtype) > (2.0 / 3.0) * size_h[cand].to(dtype))
        Rh_acc = torch.where(accept.unsqueeze(2) & (Rh >= 0), Rh, N).view(B, -1)
        members = torch.cat([R1, Rh_acc], dim=1).sort(dim=1).values  # (B, L)
        valid = members < N
        valid[:, 1:] &= members[:, 1:] != members[:, :-1]  # unique
        d2 = dist_rows(s, e).to(device=device, dtype=dtype).pow(2) / row_max[s:e, None]
        w = torch.exp(-d2.gather(1, members.clamp_max(N - 1))) * valid  # (B, L)
        w = w / w.sum(dim=1, keepdim=True)
        rr, cc = valid.nonzero(as_tuple=True)
        v_rows.append(rr + s)
        v_cols.append(members[rr, cc])
        v_vals.append(w[rr, cc])
        del d2
    return torch.cat(v_rows), torch.cat(v_cols), torch.cat(v_vals)


def _query_expansion(v: Sparse, rank: torch.Tensor, k2c: int, budget: float, dtype: torch.dtype) -> Sparse:
    """Step 5, local query expansion (Eq. (11)): ``V_i`` <- mean of ``V`` over the ``k2``
    nearest of ``i``."""
    v_rows, v_cols, v_vals = v
    N, device = rank.shape[0], rank.device
    crow = _csr_from_sorted(v_rows, N)
    per_row = int(crow.diff().max()) * k2c
    step = rows_per_block(per_row, budget, 32)
    q_rows, q_cols, q_vals = [], [], []
    for s in range(0, N, step):
        e = min(s + step, N)
        nb = rank[s:e, :k2c].reshape(-1)  # (B * k2,)
        owner, pos = _gather_rows(crow, nb)
        key = (owner // k2c + s) * N + v_cols[pos]
        uniq, inv = torch.unique(key, sorted=True, return_inverse=True)
        vals = torch.zeros(uniq.numel(), dtype=dtype, device=device)
        vals.index_add_(0, inv, v_vals[pos] / k2c)
        q_rows.append(uniq // N)
        q_cols.append(uniq % N)
        q_vals.append(vals)
    return torch.cat(q_rows), torch.cat(q_cols), torch.cat(q_vals)


def _jaccard(v: Sparse, N: int, Q: int, budget: float, dtype: torch.dtype):
    """Step 6 (Eq. (10)): yields ``(s, e, sum_g min(V_p, V_g))`` for query row blocks
    ``[s, e)`` against every gallery row, ``(e - s, G)``, by a sparse min-sum."""
    v_rows, v_cols, v_vals = v
    G, device, elem = N - Q, v_rows.device, torch.finfo(dtype).bits // 8
    crow = _csr_from_sorted(v_rows, N)
    gal = v_rows >= Q  # only gallery rows are needed as the second argument
    g_rows, g_cols, g_vals = v_rows[gal], v_cols[gal], v_vals[gal]
    order = torch.argsort(g_cols, stable=True)
    g_rows, g_cols, g_vals = g_rows[order] - Q, g_cols[order], g_vals[order]
    ccol = _csr_from_sorted(g_cols, N)  # CSC over gallery rows
    col_count = ccol.diff()
    max_pairs = max(1, int(budget * 2**20) // 40)  # index, position, value, min per pair
    out_rows = rows_per_block(G, budget, elem)
    for s in range(0, Q, out_rows):
        e = min(s + out_rows, Q)
        t_min = torch.zeros((e - s) * G, dtype=dtype, device=device)
        p0, p1 = int(crow[s]), int(crow[e])
        cum = col_count[v_cols[p0:p1]].cumsum(0)
        a = 0
        while a < p1 - p0:
            done = int(cum[a - 1]) if a > 0 else 0
            b = max(int(torch.searchsorted(cum, done + max_pairs, right=True)), a + 1)
            ent = torch.arange(p0 + a, p0 + b, device=device)
            owner, pos = _gather_rows(ccol, v_cols[ent])
            mins = torch.minimum(v_vals[ent][owner], g_vals[pos])
            t_min.index_add_(0, (v_rows[ent][owner] - s) * G + g_rows[pos], mins)
            a = b
        yield s, e, t_min.view(e - s, G)


def _check_params(k1: int, k2: int, lambda_value: float) -> None:
    if k1 < 1 or k2 < 1:
        raise ValueError(f"k1 and k2 must be >= 1, got k1={k1}, k2={k2}")
    if not 0.0 <= lambda_value <= 1.0:
        raise ValueError(f"lambda_value must be in [0, 1], got {lambda_value}")


@torch.no_grad()
def k_reciprocal_rerank(
    query: ArrayLike,
    gallery: ArrayLike,
    k1: int = 20,
    k2: int = 6,
    lambda_value: float = 0.3,
    metric: str = "euclidean",
    memory_mb: float = 1024,
    device=None,
) -> torch.Tensor:
    """Re-ranked ``(Q, G)`` distance (Eq. (12)) from query ``(Q, D)`` and gallery ``(G, D)``
    features, on ``device`` (default: the query's). The original distance is the
    ``metric`` distance of :mod:`.distance` (Euclidean: ``|q - g|``, squared inside as in
    Eq. (1) with ``M = I``). Computed in float64 for float64 input, else float32; returned on
    the CPU."""
    check_metric(metric)
    _check_params(k1, k2, lambda_value)
    q, g = validate_features(query, gallery)
    device = resolve_device(device, q)
    dtype = torch.float64 if q.dtype == torch.float64 else torch.float32
    feats = prepare_rows(torch.cat([q.to(dtype), g.to(dtype)]), metric, device, dtype)  # (N, D)
    stat = gallery_stat(feats, metric)

    def rows(s: int, e: int) -> torch.Tensor:
        return block_distance(feats[s:e], feats, stat, metric)

    return _rerank_core(rows, feats.shape[0], q.shape[0], k1, k2, lambda_value, memory_mb, device, dtype)


@torch.no_grad()
def re_ranking_from_dist(
    q_g_dist: ArrayLike,
    q_q_dist: ArrayLike,
    g_g_dist: ArrayLike,
    k1: int = 20,
    k2: int = 6,
    lambda_value: float = 0.3,
    memory_mb: float = 1024,
    device=None,
) -> torch.Tensor:
    """Same as :func:`k_reciprocal_rerank` from precomputed distances (the host's
    ``re_ranking`` signature). The three matrices are stitched block by block, never as one
    ``(N, N)`` array."""
    _check_params(k1, k2, lambda_value)
    qg = torch.as_tensor(np.asarray(q_g_dist) if not isinstance(q_g_dist, torch.Tensor) else q_g_dist)
    qq = torch.as_tensor(np.asarray(q_q_dist) if not isinstance(q_q_dist, torch.Tensor) else q_q_dist)
    gg = torch.as_tensor(np.asarray(g_g_dist) if not isinstance(g_g_dist, torch.Tensor) else g_g_dist)
    Q, G = qg.shape
    if qq.shape != (Q, Q) or gg.shape != (G, G):
        raise ValueError(
            f"Distance shapes disagree: q_g {tuple(qg.shape)}, q_q {tuple(qq.shape)}, g_g {tuple(gg.shape)}"
        )
    if Q == 0 or G == 0:
        raise ValueError(f"Empty query or gallery: q_g_dist has shape {tuple(qg.shape)}")
    for name, m in (("q_g_dist", qg), ("q_q_dist", qq), ("g_g_dist", gg)):
        bad = int((~torch.isfinite(m)).sum())
        if bad:
            raise ValueError(f"{name} contains {bad} non-finite entries")
    device = resolve_device(device, qg)
    dtype = torch.float64 if qg.dtype == torch.float64 else torch.float32

    def rows(s: int, e: int) -> torch.Tensor:
        parts = []
        if s < Q:
            qe = min(e, Q)
            parts.append(torch.cat([qq[s:qe], qg[s:qe]], dim=1))
        if e > Q:
            gs = max(s, Q) - Q
            parts.append(torch.cat([qg[:, gs : e - Q].t(), gg[gs : e - Q]], dim=1))
        return torch.cat(parts).to(device=device, dtype=dtype)

    return _rerank_core(rows, Q + G, Q, k1, k2, lambda_value, memory_mb, device, dtype)
