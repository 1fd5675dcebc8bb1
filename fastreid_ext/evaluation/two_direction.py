"""Two-direction, group-aware evaluation (the FGPR protocol) and summed per-part distances.

FGPR (Yin et al., "Fine-Grained Person Re-identification", IJCV 2020, sections 3.2 and 5.1):
every id of a group has one sequence in each of the group's two cameras. Case 1: the first
camera's sequences are the gallery and the second camera's the probes; case 2: swapped. The
two cases' CMC / mAP / mINP are averaged. *All-group* setting: the probes of every group
against the pooled gallery of every group; *single-group* setting: each group alone, probes
against the gallery of the same group. Here the dataset's query set is case 1's probe set and
its gallery case 1's gallery, so case 2 is the transposed distance matrix: one feature
extraction serves both cases.

With one gallery sequence per id, AP = 1 / (rank of the true match), so every probe's AP is
at least its Rank-1 hit (1 or 0) and mAP >= Rank-1 always holds for this protocol (the
paper's tables sometimes report mAP < Rank-1).

:func:`part_distance`: the embedding is ``k`` concatenated parts (e.g. one per stream of a
multi-stream model) and the distance is the weighted sum of the parts' Euclidean distances,
``d(q, g) = sum_k a_k |q_k - g_k|_2`` (not squared: Yin et al.'s Eq. (4) and (6) sum the
streams' Euclidean distances). This differs from the Euclidean distance of the concatenation,
``sqrt(sum_k |q_k - g_k|^2)``, and from the host's squared Euclidean distance, and can rank a
gallery differently.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Any, Dict, Optional, Sequence

import numpy as np
import torch

from .rank import evaluate_rank

__all__ = ["part_distance", "evaluate_two_direction", "two_direction_results", "evaluate_tracklets",
           "TWO_DIRECTION_PROTOCOL"]

#: the evaluator's protocol name for :func:`evaluate_two_direction`
TWO_DIRECTION_PROTOCOL = "fgpr"
_ROWS = 1024


def part_distance(qf, gf, parts: Sequence[int], weights: Optional[Sequence[float]] = None) -> torch.Tensor:
    """``(Q, G)`` float32 ``sum_k weights[k] * |q_k - g_k|_2`` over the consecutive column
    blocks of sizes ``parts`` (their sum must be the feature dimension); computed in float64.

    Raises ``ValueError`` for non-positive part sizes, sizes not summing to ``D`` or a weight
    count different from the part count.
    """
    q = torch.as_tensor(qf).detach().to("cpu", torch.float64)
    g = torch.as_tensor(gf).detach().to("cpu", torch.float64)
    if q.dim() != 2 or g.dim() != 2 or q.shape[1] != g.shape[1]:
        raise ValueError(f"qf, gf must be (Q, D) and (G, D), got {tuple(q.shape)} and {tuple(g.shape)}")
    parts = [int(p) for p in parts]
    if not parts or min(parts) <= 0 or sum(parts) != q.shape[1]:
        raise ValueError(f"parts {parts} must be positive sizes summing to the feature dimension {q.shape[1]}")
    weights = [1.0] * len(parts) if weights is None or len(weights) == 0 else [float(w) for w in weights]
    if len(weights) != len(parts):
        raise ValueError(f"{len(weights)} weights for {len(parts)} parts")
    out = torch.zeros(q.shape[0], g.shape[0], dtype=torch.float32)
    bounds = np.cumsum([0] + parts)
    gsq = [g[:, a:b].pow(2).sum(1) for a, b in zip(bounds[:-1], bounds[1:])]
    for r0 in range(0, q.shape[0], _ROWS):  # row blocks bound the float64 temporaries
        qb = q[r0:r0 + _ROWS]
        acc = torch.zeros(qb.shape[0], g.shape[0], dtype=torch.float64)
        for k, (a, b) in enumerate(zip(bounds[:-1], bounds[1:])):
            qs = qb[:, a:b]
            sq = qs.pow(2).sum(1, keepdim=True) + gsq[k][None] - 2.0 * qs @ g[:, a:b].T
            acc += weights[k] * sq.clamp_min(0.0).sqrt()
        out[r0:r0 + _ROWS] = acc.float()
    return out


def _summary(res) -> Dict[str, Any]:
    return {"cmc": np.asarray(res.cmc, np.float64), "mAP": float(res.mAP), "mINP": float(res.mINP),
            "num_skipped": int(res.num_skipped)}


def _mean(a: Dict[str, Any], b: Dict[str, Any]) -> Dict[str, Any]:
    n = min(len(a["cmc"]), len(b["cmc"]))
    return {"cmc": (a["cmc"][:n] + b["cmc"][:n]) / 2.0, "mAP": (a["mAP"] + b["mAP"]) / 2.0,
            "mINP": (a["mINP"] + b["mINP"]) / 2.0, "num_skipped": a["num_skipped"] + b["num_skipped"]}


def evaluate_two_direction(distmat, q_pids, g_pids, q_camids, g_camids, q_groups, g_groups,
                           max_rank: int = 50) -> Dict[str, Any]:
    """FGPR's protocol on the ``(Q, G)`` distances between case 1's probes (rows) and gallery
    (columns); case 2 uses ``distmat.T`` (gallery and probes swapped).

    Returns ``{"all": m, "per_group": {group: m}, "cases": {"all": [m1, m2], group: [m1, m2]}}``
    where ``m = {"cmc", "mAP", "mINP", "num_skipped"}``: ``all`` is the pooled (all-group)
    setting, ``per_group`` the single-group one, each the mean of the two cases. Matching is
    ``cross_camera`` inside each case (drops same id *and* camera; FGPR never has that).
    """
    d = np.asarray(distmat.numpy() if isinstance(distmat, torch.Tensor) else distmat)
    if d.ndim != 2:
        raise ValueError(f"distmat must be (Q, G), got shape {d.shape}")
    qp, gp, qc, gc = (np.asarray(x) for x in (q_pids, g_pids, q_camids, g_camids))
    qg, gg = np.asarray(q_groups), np.asarray(g_groups)
    if qg.shape != (d.shape[0],) or gg.shape != (d.shape[1],):
        raise ValueError(f"q_groups / g_groups must have shapes ({d.shape[0]},) / ({d.shape[1]},), "
                         f"got {qg.shape} / {gg.shape}")

    def both_cases(qi: np.ndarray, gi: np.ndarray):
        sub = d[np.ix_(qi, gi)]
        one = _summary(evaluate_rank(sub, qp[qi], gp[gi], qc[qi], gc[gi], max_rank=max_rank))
        two = _summary(evaluate_rank(sub.T, gp[gi], qp[qi], gc[gi], qc[qi], max_rank=max_rank))
        return one, two

    every_q, every_g = np.arange(d.shape[0]), np.arange(d.shape[1])
    cases = {"all": list(both_cases(every_q, every_g))}
    per_group = {}
    for grp in sorted(set(qg.tolist()) | set(gg.tolist()), key=str):
        qi, gi = np.flatnonzero(qg == grp), np.flatnonzero(gg == grp)
        if qi.size == 0 or gi.size == 0:
            raise ValueError(f"group {grp!r} has {qi.size} probe(s) and {gi.size} gallery item(s); "
                             "the two-direction protocol needs both in every group")
        cases[grp] = list(both_cases(qi, gi))
        per_group[grp] = _mean(*cases[grp])
    return {"all": _mean(*cases["all"]), "per_group": per_group, "cases": cases}


def two_direction_results(res: Dict[str, Any], ranks: Sequence[int] = (1, 5, 10, 20)) -> "OrderedDict[str, float]":
    """Flat percentages for ``results.json``: the all-group ``Rank-k`` / ``mAP`` / ``mINP`` /
    ``metric`` (host: (mAP + Rank-1) / 2) / ``num_skipped_queries``, then
    ``<group>/Rank-k``, ``<group>/mAP``, ``<group>/mINP`` per group, then the all-group
    values of each case (``case1/...``: first camera gallery; ``case2/...``: swapped)."""
    out: "OrderedDict[str, float]" = OrderedDict()

    def put(prefix: str, m: Dict[str, Any]) -> None:
        cmc = m["cmc"]
        for r in ranks:
            out[f"{prefix}Rank-{r}"] = float(cmc[min(r, len(cmc)) - 1]) * 100
        out[f"{prefix}mAP"] = m["mAP"] * 100
        out[f"{prefix}mINP"] = m["mINP"] * 100

    put("", res["all"])
    out["metric"] = (out["mAP"] + out["Rank-1"]) / 2
    out["num_skipped_queries"] = int(res["all"]["num_skipped"])
    for grp, m in res["per_group"].items():
        put(f"{grp}/", m)
    for i, m in enumerate(res["cases"]["all"], 1):
        put(f"case{i}/", m)
    return out


def evaluate_tracklets(feats, num_query: int, pids, camids, groups, protocol: str, metric: str,
                       parts: Optional[Sequence[int]] = None, part_weights: Optional[Sequence[float]] = None,
                       ranks: Sequence[int] = (1, 5, 10, 20), max_rank: int = 50) -> "OrderedDict[str, float]":
    """Results dict (percentages) of ``(N, D)`` tracklet features, the first ``num_query``
    being queries (probes), from the whole ``(Q, G)`` distance matrix:

    * distance: with ``parts``, :func:`part_distance` (``metric`` must be ``euclidean``);
      otherwise the Euclidean distance (same ranking as the host's squared one) or, for
      ``cosine``, ``1 - cos`` of the features;
    * ``protocol == "fgpr"``: :func:`evaluate_two_direction` + :func:`two_direction_results`
      (needs ``groups``); any other protocol: :func:`.rank.evaluate_rank` and the usual keys
      (``Rank-k``, ``mAP``, ``mINP``, ``metric``, ``num_skipped_queries``).
    """
    f = torch.as_tensor(feats).detach().to("cpu", torch.float64)
    if f.dim() != 2 or not 0 < int(num_query) < f.shape[0]:
        raise ValueError(f"feats must be (N, D) with 0 < num_query < N, got {tuple(f.shape)} and {num_query}")
    q, g = f[:num_query], f[num_query:]
    if parts:
        if metric != "euclidean":
            raise ValueError(f"summed per-part distances are Euclidean: set TEST.METRIC euclidean (got {metric!r})")
        dist = part_distance(q, g, parts, part_weights)
    elif metric == "cosine":
        qn = torch.nn.functional.normalize(q, dim=1)
        gn = torch.nn.functional.normalize(g, dim=1)
        dist = (1.0 - qn @ gn.T).float()
    elif metric == "euclidean":
        dist = part_distance(q, g, [q.shape[1]])
    else:
        raise ValueError(f"unknown metric {metric!r}; expected 'cosine' or 'euclidean'")
    pids, camids = np.asarray(pids), np.asarray(camids)
    grp = None if groups is None else np.asarray(groups)
    Q = int(num_query)
    if protocol == TWO_DIRECTION_PROTOCOL:
        if grp is None:
            raise ValueError(f"protocol {TWO_DIRECTION_PROTOCOL!r} needs the items' groups")
        res = evaluate_two_direction(dist, pids[:Q], pids[Q:], camids[:Q], camids[Q:], grp[:Q], grp[Q:], max_rank)
        return two_direction_results(res, ranks)
    kw = dict(q_groups=grp[:Q], g_groups=grp[Q:]) if protocol == "groupwise" else {}
    res = evaluate_rank(dist, pids[:Q], pids[Q:], camids[:Q], camids[Q:], max_rank=max_rank, protocol=protocol, **kw)
    out: "OrderedDict[str, float]" = OrderedDict()
    cmc = np.asarray(res.cmc)
    for r in ranks:
        out[f"Rank-{r}"] = float(cmc[min(r, len(cmc)) - 1]) * 100
    out["mAP"] = float(res.mAP) * 100
    out["mINP"] = float(res.mINP) * 100
    out["metric"] = (out["mAP"] + out["Rank-1"]) / 2
    out["num_skipped_queries"] = int(res.num_skipped)
    return out
