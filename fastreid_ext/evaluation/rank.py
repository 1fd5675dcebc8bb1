"""Vectorised CMC / mAP / mINP evaluation, numerically identical to the host's evaluator.

The reference is the host's Python ``fastreid.evaluation.rank.eval_market1501`` (credited there
to deep-person-reid). For each query it sorts the gallery with ``np.argsort(distmat, axis=1)``,
drops the gallery items of the query's pid seen by the query's camera, and from the remaining
binary "match" sequence computes

* CMC: ``cmc[k] = 1`` when the first match is at 0-based position ``<= k``;
* AP (non-interpolated): ``AP = (1/n) * sum_{j=1..n} j / (r_j + 1)`` where ``r_1 < ... < r_n``
  are the 0-based positions of the ``n`` matches in the kept sequence (Eq. (1) of Zheng et al.,
  "Scalable Person Re-identification: A Benchmark", ICCV 2015);
* INP: ``INP = n / (r_n + 1)`` (Eq. (7) of Ye et al., "Deep Learning for Person
  Re-identification: A Survey and Outlook", TPAMI 2021).

All three depend only on the positions ``r_j`` of the matches, so this module computes those
positions directly: for each chunk of query rows it sorts the *values* of each row (``np.sort``,
several times faster than ``np.argsort``) and finds each match's position with a batched
``searchsorted``. No per-query Python loop, no argsort.

Tie rule (identical to the host): the host's order is ``np.argsort`` (introsort, not stable), so
the relative order of *equal* distances is whatever that call yields. Ties among matches only,
among non-matches only, or involving removed (junk) items do not change the match sequence, so
they cannot change any metric. Only a row in which a kept non-match has *exactly* the same
distance as a match depends on the argsort's tie order; such rows are detected exactly and
recomputed from ``np.argsort`` of the very same row (same values, same dtype, same call as the
host), so the results are identical to the host's on every input, ties included.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch

from .validation import as_1d

logger = logging.getLogger(__name__)

__all__ = [
    "PROTOCOLS",
    "PROTOCOL_SPECS",
    "ProtocolSpec",
    "RankResult",
    "NoValidQueryError",
    "GalleryLabels",
    "check_max_rank",
    "check_protocol",
    "evaluate_rank",
    "rank_from_chunks",
    "rank_groupwise",
    "validate_rank_inputs",
]



@dataclass(frozen=True)
class ProtocolSpec:
    """How a protocol scores one ranked list.

    Attributes:
        junk_unlabelled: gallery items of pid ``-1`` are junk for every query (MARS).
        ap: ``"noninterp"``: ``AP = (1/n) sum_j j / r_j`` (Eq. (1) of Zheng et al., ICCV 2015;
            the host, deep-person-reid, AP3D's Python ``evaluate``); ``"trapezoid"``: the MARS
            MATLAB script's ``compute_AP.m``, the trapezoid rule over the precision-recall steps
            from ``(recall 0, precision 1)``: ``AP = (1/n) sum_j (p_{j-1} + p_j) / 2`` with
            ``p_j = j / r_j`` and ``p_{j-1}`` the precision of the kept item just before the
            j-th match (``(j - 1) / (r_j - 1)``, or 1 when ``r_j = 1``).
        stable_ties: equal distances keep gallery order (MATLAB's ``sort`` is stable); otherwise
            the host's ``np.argsort`` order.
    """

    junk_unlabelled: bool = False
    ap: str = "noninterp"
    stable_ties: bool = False


#: Evaluation protocols understood by :func:`evaluate_rank` (``docs/scoring.md``).
PROTOCOL_SPECS: Dict[str, ProtocolSpec] = {
    "cross_camera": ProtocolSpec(),
    # exactly the MARS authors' evaluation_mars.m + compute_AP.m
    "mars_official": ProtocolSpec(junk_unlabelled=True, ap="trapezoid", stable_ties=True),
    # MARS gallery and junk rule, scored with the Python evaluators' non-interpolated AP
    "mars_official_noninterp": ProtocolSpec(junk_unlabelled=True),
    "cuhk03_sgs": ProtocolSpec(),
    "groupwise": ProtocolSpec(),
}
PROTOCOLS = tuple(PROTOCOL_SPECS)

#: Bytes of one chunk of distance rows processed at once (bounds the temporaries).
_CHUNK_BYTES = 32 * 2**20


class NoValidQueryError(ValueError, AssertionError):
    """No query has a valid match. The host raises ``AssertionError`` here, so this is both a
    ``ValueError`` and an ``AssertionError``: callers written for the host keep working."""


@dataclass(frozen=True)
class RankResult:
    """Metrics of one evaluation: what :func:`evaluate_rank` and
    :func:`fastreid_ext.evaluation.evaluate_features` return for every protocol.

    Attributes:
        cmc: ``(max_rank,)`` float32, CMC averaged over the valid queries (host convention);
            ``groupwise``: the unweighted mean of the groups' CMCs.
        all_AP: ``(num_valid,)`` float64, AP of each valid query, in query order.
        all_INP: ``(num_valid,)`` float64, INP of each valid query, in query order.
        num_valid: queries with at least one valid match.
        num_skipped: queries without one (skipped, as the host does); ``groupwise``: this
            includes the queries of skipped groups.
        valid_mask: ``(num_query,)`` bool, which queries were valid.
        per_group: ``groupwise`` only: ``{group: RankResult}`` of each evaluated group.
        skipped_groups: ``groupwise`` only: groups without a gallery item or a valid query.

    ``mAP`` / ``mINP`` are the means over the valid queries or, for ``groupwise``, the
    unweighted means of the groups' values.
    """

    cmc: np.ndarray
    all_AP: np.ndarray
    all_INP: np.ndarray
    num_valid: int
    num_skipped: int
    valid_mask: np.ndarray = field(repr=False)
    per_group: Mapping[Any, "RankResult"] = field(default_factory=dict, repr=False)
    skipped_groups: Tuple[Any, ...] = ()

    @property
    def mAP(self) -> float:
        if self.per_group:
            return float(np.mean([r.mAP for r in self.per_group.values()]))
        return float(np.mean(self.all_AP))

    @property
    def mINP(self) -> float:
        if self.per_group:
            return float(np.mean([r.mINP for r in self.per_group.values()]))
        return float(np.mean(self.all_INP))

    def as_tuple(self) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The host's return value ``(cmc, all_AP, all_INP)``."""
        return self.cmc, self.all_AP, self.all_INP

    def summary(self, ranks: Sequence[int] = (1, 5, 10, 20), percent: bool = False) -> Dict[str, float]:
        """``{"Rank-1": ..., "Rank-5": ..., "mAP": ..., "mINP": ...}`` (fractions, or
        percentages like the host's ``ReidEvaluator`` when ``percent``). Ranks beyond
        ``len(cmc)`` are left out."""
        scale = 100.0 if percent else 1.0
        out = {f"Rank-{r}": float(self.cmc[r - 1]) * scale for r in ranks if 1 <= r <= len(self.cmc)}
        out["mAP"] = self.mAP * scale
        out["mINP"] = self.mINP * scale
        return out


# --------------------------------------------------------------------------------------------
# Input validation
# --------------------------------------------------------------------------------------------
def _check_distmat(distmat: Any) -> np.ndarray:
    if isinstance(distmat, torch.Tensor):
        distmat = distmat.detach().cpu().numpy()
    d = np.asarray(distmat)
    if d.ndim != 2:
        raise ValueError(f"distmat must be 2-D (num_query, num_gallery), got shape {d.shape}")
    if d.shape[0] == 0 or d.shape[1] == 0:
        raise ValueError(f"distmat is empty: shape {d.shape} (no query or no gallery item)")
    if not (np.issubdtype(d.dtype, np.floating) or np.issubdtype(d.dtype, np.integer)):
        raise ValueError(f"distmat must hold real numbers, got dtype {d.dtype}")
    # one cheap reduction first (non-finite entries make the sum non-finite); exact count after
    if np.issubdtype(d.dtype, np.floating) and not np.isfinite(d.sum()) and not np.isfinite(d).all():
        bad = int(np.count_nonzero(~np.isfinite(d)))
        raise ValueError(f"distmat has {bad} non-finite values (NaN or inf) out of {d.size}")
    return d


def validate_rank_inputs(distmat, q_pids, g_pids, q_camids, g_camids):
    """Checks and converts the five inputs of :func:`evaluate_rank` (raises ``ValueError``)."""
    d = _check_distmat(distmat)
    nq, ng = d.shape
    return (
        d,
        as_1d("q_pids", q_pids, nq),
        as_1d("g_pids", g_pids, ng),
        as_1d("q_camids", q_camids, nq),
        as_1d("g_camids", g_camids, ng),
    )


def check_protocol(protocol: str) -> None:
    if protocol not in PROTOCOLS:
        raise ValueError(f"Unknown protocol {protocol!r}; expected one of {PROTOCOLS}")


def check_max_rank(max_rank: Any) -> int:
    if isinstance(max_rank, bool) or not isinstance(max_rank, (int, np.integer)) or max_rank < 1:
        raise ValueError(f"max_rank must be a positive int, got {max_rank!r}")
    return int(max_rank)


# --------------------------------------------------------------------------------------------
# Gallery structure shared by every chunk
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class GalleryLabels:
    """Gallery items grouped by pid (for the sparse same-pid look-up) and the protocol's
    global junk columns (MARS protocols: pid -1) and its tie rule."""

    g_pids: np.ndarray  # (G,)
    g_camids: np.ndarray  # (G,)
    by_pid: np.ndarray  # (G,) gallery indices, grouped by pid
    uniq: np.ndarray  # (U,) sorted distinct pids
    starts: np.ndarray  # (U,) start of each pid's run in by_pid
    counts: np.ndarray  # (U,) length of each run
    global_junk: Optional[np.ndarray]  # (G,) bool, or None when no column is junk for all
    keep_cols: Optional[np.ndarray]  # (G',) columns kept for every query, or None (all)
    stable_ties: bool = False  # equal distances in gallery order (else the host's argsort)

    @classmethod
    def build(cls, g_pids: np.ndarray, g_camids: np.ndarray, protocol: str) -> "GalleryLabels":
        by_pid = np.argsort(g_pids, kind="stable")
        uniq, starts, counts = np.unique(g_pids[by_pid], return_index=True, return_counts=True)
        global_junk = keep_cols = None
        spec = PROTOCOL_SPECS[protocol]
        if spec.junk_unlabelled:
            gj = np.asarray(g_pids == -1)
            if gj.any():
                global_junk = gj
                keep_cols = np.flatnonzero(~gj)
        return cls(g_pids, g_camids, by_pid, uniq, starts, counts, global_junk, keep_cols, spec.stable_ties)


def _same_pid_pairs(q_pids: np.ndarray, gidx: GalleryLabels) -> Tuple[np.ndarray, np.ndarray]:
    """All (row, gallery column) pairs with the same pid, without a dense ``(Q, G)`` mask."""
    loc = np.searchsorted(gidx.uniq, q_pids)
    loc = np.minimum(loc, len(gidx.uniq) - 1)
    found = gidx.uniq[loc] == q_pids
    cnt = np.where(found, gidx.counts[loc], 0)
    total = int(cnt.sum())
    rows = np.repeat(np.arange(len(q_pids)), cnt)
    # position inside each row's run: 0..cnt-1
    run_start = np.repeat(np.cumsum(cnt) - cnt, cnt)
    within = np.arange(total) - run_start
    cols = gidx.by_pid[np.repeat(gidx.starts[loc], cnt) + within]
    return rows, cols


def _padded_sorted(rows: np.ndarray, vals: np.ndarray, n_rows: int, pad) -> Tuple[np.ndarray, np.ndarray]:
    """Ragged per-row values -> ``(n_rows, max_len)`` array sorted along rows, padded with
    ``pad`` (which sorts last); and the per-row lengths."""
    n = np.bincount(rows, minlength=n_rows)
    width = max(int(n.max()) if n_rows else 0, 1)
    out = np.full((n_rows, width), pad, dtype=vals.dtype)
    if len(rows):
        order = np.argsort(rows, kind="stable")
        r = rows[order]
        first = np.cumsum(n) - n
        out[r, np.arange(len(r)) - first[r]] = vals[order]
    out.sort(axis=1)
    return out, n


def _searchsorted(sorted_rows: np.ndarray, values: np.ndarray, right: bool = False) -> np.ndarray:
    """Row-wise ``searchsorted`` (batched, zero-copy through torch).

    Run on one intra-op thread: these calls are small and memory-bound, and torch's thread
    pool costs ~10x more than the search itself (measured: 25 ms vs 2.5 ms on 2 shared cores).
    """
    n_threads = torch.get_num_threads()
    try:
        if n_threads != 1:
            torch.set_num_threads(1)
        return torch.searchsorted(
            torch.from_numpy(np.ascontiguousarray(sorted_rows)),
            torch.from_numpy(np.ascontiguousarray(values)),
            right=right,
        ).numpy()
    finally:
        if n_threads != 1:
            torch.set_num_threads(n_threads)


def _work_dtype(d: np.ndarray) -> np.ndarray:
    """float16 -> float32 and integers -> float64: exact and order-preserving (ties kept)."""
    if d.dtype == np.float16:
        return d.astype(np.float32)
    if np.issubdtype(d.dtype, np.integer):
        if d.size and max(abs(int(d.min())), abs(int(d.max()))) > 2**53:
            raise ValueError("integer distances beyond 2**53 cannot be ranked exactly")
        return d.astype(np.float64)
    return d


def match_positions_argsort(
    d_rows: np.ndarray, q_pids: np.ndarray, q_camids: np.ndarray, gidx: GalleryLabels
) -> Tuple[np.ndarray, np.ndarray]:
    """Positions of the matches in the kept sequence from ``np.argsort`` of the rows (exactly the
    host's call; a stable sort, gallery order among ties, when ``gidx.stable_ties``). Returns
    ``(pos (R, P) int64 padded with G, npos (R,))``."""
    if gidx.stable_ties:
        order = np.argsort(d_rows, axis=1, kind="stable")  # MATLAB sort(..., 'ascend')
    else:
        order = np.argsort(d_rows, axis=1)  # (R, G), the host's call
    gp = gidx.g_pids[order]
    match = gp == q_pids[:, None]
    removed = match & (gidx.g_camids[order] == q_camids[:, None])
    if gidx.global_junk is not None:
        removed |= gidx.global_junk[order]
    keep = ~removed
    kept_pos = np.cumsum(keep, axis=1) - 1
    good = match & keep
    r, c = np.nonzero(good)  # row-major: positions come out ascending per row
    vals = kept_pos[r, c]
    npos = np.bincount(r, minlength=d_rows.shape[0])
    width = max(int(npos.max()), 1)
    pos = np.full((d_rows.shape[0], width), d_rows.shape[1], dtype=np.int64)
    pos[r, np.arange(len(r)) - (np.cumsum(npos) - npos)[r]] = vals
    return pos, npos


def _rank_in_sorted(sorted_rows: np.ndarray, pv: np.ndarray, offset: np.ndarray):
    """``left[i, k]`` = entries of row i strictly below ``pv[i, k]``; ``tie[i, k]`` when the entry
    ``offset[i, k]`` places after them still equals ``pv[i, k]``."""
    left = _searchsorted(sorted_rows, pv)
    probe = left + offset
    width = sorted_rows.shape[1]
    val = np.take_along_axis(sorted_rows, np.minimum(probe, width - 1), axis=1)
    return left, (probe < width) & (val == pv)


#: Above this fraction of selected entries the plain full-row sort is cheaper.
_PREFIX_MAX_FRACTION = 0.4


def _rank_by_prefix(w: np.ndarray, gidx: GalleryLabels, pv: np.ndarray, npos: np.ndarray, offset: np.ndarray):
    """As :func:`_rank_in_sorted` on ``np.sort(w[:, kept columns])``, but sorting only the
    entries of each row up to its farthest match (all that the positions depend on), in
    buckets of rows of similar length (power-of-two widths). A good model ranks its matches
    early, so this sorts a small fraction of the row; otherwise it falls back to the full sort."""
    n_rows, n_cols = w.shape
    has = npos > 0
    thr = np.where(has, pv[np.arange(n_rows), np.maximum(npos - 1, 0)], -np.inf)  # (R,)
    mask = w <= thr[:, None]  # (R, G)
    if gidx.global_junk is not None:
        mask &= ~gidx.global_junk[None, :]
    cnt = np.count_nonzero(mask, axis=1)
    n_kept = n_cols if gidx.keep_cols is None else len(gidx.keep_cols)
    if cnt.sum() > _PREFIX_MAX_FRACTION * n_rows * n_kept:
        dk = w if gidx.keep_cols is None else np.take(w, gidx.keep_cols, axis=1)
        return _rank_in_sorted(np.sort(dk, axis=1), pv, offset)
    flat = np.flatnonzero(mask)  # row-major; 10x faster than the 2-D np.nonzero
    del mask
    r = flat // n_cols
    vals = w.reshape(-1)[flat] if w.flags.c_contiguous else w[r, flat - r * n_cols]
    del flat
    within = np.arange(len(r)) - (np.cumsum(cnt) - cnt)[r]
    bucket = np.ceil(np.log2(np.maximum(cnt, 32))).astype(np.uint8)  # width 2**bucket
    order = np.argsort(bucket[r], kind="stable")  # entries grouped by bucket, row-major inside
    left = np.zeros(pv.shape, dtype=np.int64)
    tie = np.zeros(pv.shape, dtype=bool)
    bounds = np.searchsorted(bucket[r][order], np.arange(257))
    for b in np.unique(bucket[has]):
        rows_b = np.flatnonzero(has & (bucket == b))
        slot = np.empty(n_rows, dtype=np.int64)
        slot[rows_b] = np.arange(len(rows_b))
        e = order[bounds[b] : bounds[b + 1]]
        sb = np.full((len(rows_b), 1 << int(b)), np.inf, dtype=w.dtype)
        sb[slot[r[e]], within[e]] = vals[e]
        sb.sort(axis=1)
        left[rows_b], tie[rows_b] = _rank_in_sorted(sb, pv[rows_b], offset[rows_b])
    return left, tie


def match_positions(
    d: np.ndarray,
    q_pids: np.ndarray,
    q_camids: np.ndarray,
    gidx: GalleryLabels,
    sorted_rows: Optional[np.ndarray] = None,
) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """0-based positions of each query's valid matches in its kept sequence, ordered as the
    protocol says (the host's argsort, or gallery order among ties).

    Args:
        d: ``(R, G)`` distances of R queries to the whole gallery (not modified).
        q_pids, q_camids: ``(R,)``.
        gidx: gallery structure.
        sorted_rows: optional ``np.sort`` of ``d[:, gidx.keep_cols]`` along rows (e.g. sorted on
            a GPU); computed here when None.

    Returns:
        ``pos`` ``(R, P)`` int64, ascending per row, padded with ``G``; ``npos`` ``(R,)``;
        ``tied`` ``(R,)`` bool, rows recomputed with an argsort (the host's, or a stable one)
        because a kept non-match has exactly a match's distance.
    """
    n_rows = d.shape[0]
    w = _work_dtype(d)
    pad = np.inf
    rows, cols = _same_pid_pairs(q_pids, gidx)
    if gidx.global_junk is not None:
        ok = ~gidx.global_junk[cols]
        rows, cols = rows[ok], cols[ok]
    same_cam = gidx.g_camids[cols] == q_camids[rows]
    vals = w[rows, cols]
    pv, npos = _padded_sorted(rows[~same_cam], vals[~same_cam], n_rows, pad)  # (R, P) matches
    jv, _ = _padded_sorted(rows[same_cam], vals[same_cam], n_rows, pad)  # (R, J) junk

    k0 = _searchsorted(pv, pv)  # matches strictly closer
    k1 = _searchsorted(pv, pv, right=True)
    j_left = _searchsorted(jv, pv)  # junk strictly closer
    j_right = _searchsorted(jv, pv, right=True)
    kk = np.arange(pv.shape[1])[None, :]
    valid = kk < npos[:, None]
    # A kept non-match with exactly a match's distance sits right after the equal matches/junk.
    offset = (k1 - k0) + (j_right - j_left)

    if sorted_rows is not None:
        left, tie = _rank_in_sorted(sorted_rows.astype(w.dtype, copy=False), pv, offset)
    else:
        left, tie = _rank_by_prefix(w, gidx, pv, npos, offset)
    tied = (valid & tie).any(axis=1)
    pos = left - j_left - k0 + kk  # (R, P)
    pos = np.where(valid, pos, d.shape[1])
    if tied.any():
        npos = npos.copy()
        tied_rows = np.flatnonzero(tied)
        # the argsort path needs ~27 bytes per element: a third of the chunk at a time keeps it
        # within the chunk's own footprint
        step = max(1, n_rows // 3)
        for s in range(0, len(tied_rows), step):
            t = tied_rows[s : s + step]
            tpos, tn = match_positions_argsort(d[t], q_pids[t], q_camids[t], gidx)
            width = max(pos.shape[1], tpos.shape[1])
            if width > pos.shape[1]:
                pos = np.pad(pos, ((0, 0), (0, width - pos.shape[1])), constant_values=d.shape[1])
            pos[t] = d.shape[1]
            pos[t, : tpos.shape[1]] = tpos
            npos[t] = tn
    return pos, npos, tied


def average_precision(p: np.ndarray, n: np.ndarray, kind: str = "noninterp") -> np.ndarray:
    """AP of each row from its match positions.

    Args:
        p: ``(V, P)`` float64 0-based positions of the matches in the kept list, ascending,
            padded beyond ``n``.
        n: ``(V,)`` number of matches of each row (>= 1).
        kind: ``"noninterp"`` or ``"trapezoid"`` (:class:`ProtocolSpec`).
    """
    j = np.arange(1, p.shape[1] + 1, dtype=np.float64)[None, :]  # 1-based match index
    m = j <= n[:, None]
    r = p + 1.0  # 1-based kept rank
    prec = j / r
    if kind == "trapezoid":
        # precision of the kept item just before the j-th match: (j - 1) / (r - 1); 1 at r = 1
        before = np.where(r > 1.0, (j - 1.0) / np.maximum(r - 1.0, 1.0), 1.0)
        prec = (before + prec) / 2.0
    elif kind != "noninterp":
        raise ValueError(f"unknown AP definition {kind!r}; expected 'noninterp' or 'trapezoid'")
    return np.where(m, prec, 0.0).sum(axis=1) / n


def metrics_from_positions(pos: np.ndarray, npos: np.ndarray, max_rank: int, ap_kind: str = "noninterp"):
    """AP (``ap_kind``, :func:`average_precision`), INP and CMC hit counts from match positions
    (see the module docstring).

    Returns ``(valid (R,) bool, ap (V,) float64, inp (V,) float64, cmc_hits (max_rank,) int64)``.
    """
    valid = npos > 0
    p = pos[valid].astype(np.float64)  # (V, P)
    n = npos[valid]
    ap = average_precision(p, n, ap_kind)
    last = p[np.arange(len(n)), n - 1]
    inp = n / (last + 1.0)
    first = np.minimum(pos[valid, 0], max_rank)
    hits = np.cumsum(np.bincount(first, minlength=max_rank + 1)[:max_rank])
    return valid, ap, inp, hits


def _finish(hits: np.ndarray, aps, inps, valid_mask: np.ndarray, cmc_rows=None) -> RankResult:
    num_valid = int(valid_mask.sum())
    num_skipped = int(valid_mask.size - num_valid)
    if num_valid == 0:
        raise NoValidQueryError("Error: all query identities do not appear in gallery")
    if num_skipped:
        logger.info("Rank evaluation: %d of %d queries have no valid match and are skipped",
                    num_skipped, valid_mask.size)
    if cmc_rows is None:
        # host: float32 sum of 0/1 rows (exact integers) / python float -> float32
        cmc = hits.astype(np.float32) / np.float32(num_valid)
    else:
        cmc = np.asarray(cmc_rows, dtype=np.float32).sum(0) / np.float32(num_valid)
    return RankResult(
        cmc=cmc,
        all_AP=np.concatenate(aps).astype(np.float64),
        all_INP=np.concatenate(inps).astype(np.float64),
        num_valid=num_valid,
        num_skipped=num_skipped,
        valid_mask=valid_mask,
    )


def _effective_max_rank(max_rank: int, num_g: int) -> int:
    if num_g < max_rank:
        logger.info("Note: number of gallery samples is quite small, got %d", num_g)
        return num_g
    return max_rank


# --------------------------------------------------------------------------------------------
# CUHK03 single-gallery-shot
# --------------------------------------------------------------------------------------------
def sgs_cmc_rows(
    d_rows: np.ndarray,
    q_pids: np.ndarray,
    q_camids: np.ndarray,
    gidx: GalleryLabels,
    max_rank: int,
    num_repeats: int,
    rng,
) -> np.ndarray:
    """Single-gallery-shot CMC of each *valid* query, as the host's ``eval_cuhk03``: in each of
    ``num_repeats`` draws one kept gallery item per pid is sampled uniformly
    (``rng.randint``, drawn in the host's order: query, repeat, pid in order of first
    appearance in the ranked list), and CMC is computed on the sampled list. Returns
    ``(V, max_rank)`` float32 (each row already divided by ``num_repeats`` like the host).

    One Python iteration per query for the random draws (the host's RNG stream is sequential);
    the gallery itself is handled with array operations.
    """
    order = np.argsort(d_rows, axis=1)  # the host's call
    out = []
    for i in range(d_rows.shape[0]):
        o = order[i]
        gp = gidx.g_pids[o]
        keep = ~((gp == q_pids[i]) & (gidx.g_camids[o] == q_camids[i]))
        kp = gp[keep]  # (G',) kept pids in ranked order
        if not np.any(kp == q_pids[i]):
            continue
        uniq, first, inv, cnt = np.unique(kp, return_index=True, return_inverse=True, return_counts=True)
        by_first = np.argsort(first)  # pid rank by first appearance (the host's dict order)
        rank_of = np.empty_like(by_first)
        rank_of[by_first] = np.arange(len(by_first))
        # positions of each pid's items, grouped in first-appearance order, ascending
        grp = rank_of[inv]
        pos_sorted = np.argsort(grp, kind="stable")
        cnt_f = cnt[by_first]
        start_f = np.cumsum(cnt_f) - cnt_f
        draws = rng.randint(0, np.tile(cnt_f, num_repeats)).reshape(num_repeats, -1)
        sel = pos_sorted[start_f[None, :] + draws]  # (R, U) sampled positions
        qcol = rank_of[np.searchsorted(uniq, q_pids[i])]
        rank = (sel < sel[:, qcol : qcol + 1]).sum(axis=1)  # (R,)
        hit = (np.arange(max_rank)[None, :] >= rank[:, None]).astype(np.float32)
        cmc = np.zeros(max_rank, dtype=np.float32)
        for r in range(num_repeats):  # host accumulates float32 repeat by repeat
            cmc += hit[r]
        cmc /= num_repeats
        out.append(cmc)
    return np.asarray(out, dtype=np.float32).reshape(-1, max_rank)


def rank_from_chunks(
    chunks: Iterable[Tuple[np.ndarray, np.ndarray, np.ndarray, Optional[np.ndarray]]],
    g_pids: np.ndarray,
    g_camids: np.ndarray,
    max_rank: int,
    protocol: str,
    num_repeats: int = 10,
    rng=None,
) -> RankResult:
    """Accumulates the metrics over chunks of query rows.

    Args:
        chunks: yields ``(d_rows (R, G), q_pids (R,), q_camids (R,), sorted_rows or None)``
            in query order; ``sorted_rows`` is ``np.sort`` of the kept columns when the caller
            already sorted them (e.g. on a GPU).
        protocol: any of :data:`PROTOCOLS` but ``groupwise``.
    """
    max_rank = _effective_max_rank(max_rank, len(g_pids))
    ap_kind = PROTOCOL_SPECS[protocol].ap
    gidx = GalleryLabels.build(g_pids, g_camids, protocol)
    if protocol == "cuhk03_sgs" and rng is None:
        rng = np.random.mtrand._rand  # the global np.random state, like the host
    hits = np.zeros(max_rank, dtype=np.int64)
    aps, inps, valids, cmc_rows = [], [], [], []
    for d_rows, qp, qc, sorted_rows in chunks:
        pos, npos, _ = match_positions(d_rows, qp, qc, gidx, sorted_rows)
        valid, ap, inp, h = metrics_from_positions(pos, npos, max_rank, ap_kind)
        if protocol == "cuhk03_sgs":
            cmc_rows.append(sgs_cmc_rows(d_rows, qp, qc, gidx, max_rank, num_repeats, rng))
        hits += h
        aps.append(ap)
        inps.append(inp)
        valids.append(valid)
    if protocol == "cuhk03_sgs":
        return _finish(hits, aps, inps, np.concatenate(valids), cmc_rows=np.concatenate(cmc_rows))
    return _finish(hits, aps, inps, np.concatenate(valids))


def _matrix_chunks(d, q_pids, q_camids, bytes_per_elem: int):
    step = max(1, _CHUNK_BYTES // max(1, d.shape[1] * bytes_per_elem))
    for s in range(0, d.shape[0], step):
        sl = slice(s, min(s + step, d.shape[0]))
        yield d[sl], q_pids[sl], q_camids[sl], None


# --------------------------------------------------------------------------------------------
# Public entry point
# --------------------------------------------------------------------------------------------
def evaluate_rank(
    distmat,
    q_pids,
    g_pids,
    q_camids,
    g_camids,
    max_rank: int = 50,
    protocol: str = "cross_camera",
    q_groups=None,
    g_groups=None,
    num_repeats: int = 10,
    rng=None,
) -> RankResult:
    """CMC, AP and INP of every query, identical to the host's ``eval_market1501``.

    Args:
        distmat: ``(Q, G)`` distances (numpy or CPU tensor; float or int). Not modified.
        q_pids, q_camids: ``(Q,)``; g_pids, g_camids: ``(G,)``.
        max_rank: CMC length (clipped to ``G`` like the host).
        protocol:
            * ``"cross_camera"`` (Market-1501 / MARS standard, the host's): for each query drop
              gallery items with its pid *and* camera.
            * ``"mars_official"``: exactly the MARS authors' MATLAB evaluation
              (``evaluation_mars.m`` + ``compute_AP.m``): junk = gallery pid ``-1`` or same pid
              and camera (the caller passes the whole test set, queries included, as gallery),
              trapezoidal AP, ties in gallery order (:class:`ProtocolSpec`).
            * ``"mars_official_noninterp"``: the same gallery and junk, scored with the
              non-interpolated AP and the host's tie order (what the Python evaluators give).
            * ``"cuhk03_sgs"``: the host's ``eval_cuhk03`` single-gallery-shot CMC
              (``num_repeats`` random draws from ``rng``, default the global ``np.random`` like the
              host); AP and INP over the whole kept gallery (the host's ``mAP``).
            * ``"groupwise"``: for each group of ``q_groups``, the queries of that group against
              the gallery items of the same group (``g_groups``), ``cross_camera`` within; the
              result's ``per_group`` holds each group's :class:`RankResult`, its CMC / mAP / mINP
              are the unweighted means over the groups with at least one valid query
              (``skipped_groups`` lists the others).
        q_groups, g_groups: group labels, only for ``"groupwise"``.

    Returns:
        A :class:`RankResult` for every protocol: ``cmc`` float32 ``(max_rank,)`` averaged over
        the valid queries, ``all_AP`` and ``all_INP`` float64 arrays over the valid queries in
        query order (the host returns lists of the same numbers; ``.as_tuple()`` gives the
        host's ``(cmc, all_AP, all_INP)``). Queries without a valid match are skipped (counted
        in ``num_skipped``); if none is valid, :class:`NoValidQueryError` is raised.

    Unlike the host (which fails on a ragged array), a query whose kept gallery is shorter than
    ``max_rank`` is handled: its CMC stays 1 beyond its last item.
    """
    check_protocol(protocol)
    max_rank = check_max_rank(max_rank)
    d, q_pids, g_pids, q_camids, g_camids = validate_rank_inputs(distmat, q_pids, g_pids, q_camids, g_camids)
    if protocol == "groupwise":
        return _rank_groupwise(d, q_pids, g_pids, q_camids, g_camids, max_rank, q_groups, g_groups)
    if q_groups is not None or g_groups is not None:
        raise ValueError(f"q_groups / g_groups are only used by protocol 'groupwise', not {protocol!r}")
    bpe = 40 if protocol == "cuhk03_sgs" else max(4, d.dtype.itemsize)
    return rank_from_chunks(
        _matrix_chunks(d, q_pids, q_camids, bpe), g_pids, g_camids, max_rank, protocol, num_repeats, rng
    )


def rank_groupwise(evaluate_group, q_groups, g_groups, nq: int, ng: int) -> RankResult:
    """Group-wise protocol: ``evaluate_group(qi, gi) -> RankResult`` on the queries and gallery
    items of each group (cross-camera inside the group), combined into one :class:`RankResult`
    (unweighted means over the groups; groups without a gallery item or a valid query are
    skipped and listed)."""
    if q_groups is None or g_groups is None:
        raise ValueError("protocol 'groupwise' needs q_groups and g_groups")
    q_groups = as_1d("q_groups", q_groups, nq)
    g_groups = as_1d("g_groups", g_groups, ng)
    per_group: Dict[Any, RankResult] = {}
    rows: Dict[Any, np.ndarray] = {}
    skipped = []
    for grp in np.unique(q_groups):
        qi = np.flatnonzero(q_groups == grp)
        gi = np.flatnonzero(g_groups == grp)
        key = grp.item() if hasattr(grp, "item") else grp
        if len(gi) == 0:
            skipped.append(key)
            continue
        try:
            per_group[key] = evaluate_group(qi, gi)
            rows[key] = qi
        except NoValidQueryError:
            skipped.append(key)
    if skipped:
        logger.info("groupwise evaluation: groups without a valid query skipped: %s", skipped)
    if not per_group:
        raise NoValidQueryError("groupwise evaluation: no group has a valid query")
    cmcs = [r.cmc for r in per_group.values()]
    width = min(len(c) for c in cmcs)
    valid_mask = np.zeros(nq, dtype=bool)
    valid_rows, aps, inps = [], [], []
    for key, r in per_group.items():
        qv = rows[key][r.valid_mask]
        valid_mask[qv] = True
        valid_rows.append(qv)
        aps.append(r.all_AP)
        inps.append(r.all_INP)
    order = np.argsort(np.concatenate(valid_rows), kind="stable")  # back to query order
    num_valid = int(valid_mask.sum())
    return RankResult(
        cmc=np.mean([c[:width] for c in cmcs], axis=0).astype(np.float32),
        all_AP=np.concatenate(aps)[order],
        all_INP=np.concatenate(inps)[order],
        num_valid=num_valid,
        num_skipped=nq - num_valid,
        valid_mask=valid_mask,
        per_group=per_group,
        skipped_groups=tuple(skipped),
    )


def _rank_groupwise(d, q_pids, g_pids, q_camids, g_camids, max_rank, q_groups, g_groups):
    def evaluate_group(qi, gi):
        dg = d[np.ix_(qi, gi)]
        return rank_from_chunks(
            _matrix_chunks(dg, q_pids[qi], q_camids[qi], max(4, dg.dtype.itemsize)),
            g_pids[gi], g_camids[gi], max_rank, "cross_camera",
        )

    return rank_groupwise(evaluate_group, q_groups, g_groups, d.shape[0], d.shape[1])
