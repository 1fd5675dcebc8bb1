"""Average query expansion (alpha-weighted, "alpha-QE") in torch, memory-bounded.

Each feature (queries *and* gallery, as the host's ``fastreid/evaluation/query_expansion.py::aqe``
does) is replaced by the weighted mean of its ``qe_k`` most cosine-similar features (itself
included), with weights ``sim ** alpha`` (Radenovic, Tolias, Chum, *Fine-tuning CNN Image
Retrieval with No Human Annotation*, TPAMI 2018, Sec. 4.2 alpha-QE; average QE of Chum et al.
2007 with ``alpha = 0``). Repeated ``qe_times`` times. Similarities are computed in
``(B, N)`` row blocks of at most ``memory_mb`` MiB on ``device``.
"""
from __future__ import annotations

from typing import Tuple

import torch
import torch.nn.functional as F

from .distance import rows_per_block
from .validation import ArrayLike, resolve_device, validate_features

__all__ = ["average_query_expansion"]


@torch.no_grad()
def average_query_expansion(
    query: ArrayLike,
    gallery: ArrayLike,
    qe_times: int = 1,
    qe_k: int = 10,
    alpha: float = 3.0,
    memory_mb: float = 1024,
    device=None,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Expanded ``(query (Q, D), gallery (G, D))`` on the CPU (not normalised, like the host)."""
    q, g = validate_features(query, gallery)
    if qe_times < 0 or qe_k < 1:
        raise ValueError(f"qe_times must be >= 0 and qe_k >= 1, got {qe_times}, {qe_k}")
    device = resolve_device(device, q)
    dtype = torch.float64 if q.dtype == torch.float64 else torch.float32
    feats = torch.cat([q, g]).to(device=device, dtype=dtype)  # (N, D)
    n = feats.shape[0]
    k = min(qe_k, n)
    elem = torch.finfo(dtype).bits // 8
    step = rows_per_block(n + k * feats.shape[1], memory_mb / 2, elem)  # sims + gathered rows
    for _ in range(qe_times):
        unit = F.normalize(feats, p=2, dim=1)
        new = torch.empty_like(feats)
        for s in range(0, n, step):
            sims = unit[s : s + step] @ unit.t()  # (B, N)
            w, idx = torch.topk(sims, k, dim=1)  # (B, k)
            w = w.pow(alpha)
            new[s : s + step] = (feats[idx] * w.unsqueeze(2)).mean(dim=1)  # (B, k, D) -> (B, D)
        feats = new
    feats = feats.cpu()
    return feats[: q.shape[0]], feats[q.shape[0] :]
