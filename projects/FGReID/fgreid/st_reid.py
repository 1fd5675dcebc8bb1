"""Spatial-temporal statistics (ST) of st-ReID (Wang et al., "Spatial-temporal person
re-identification", AAAI 2019), used by FGReID for its "+ ST" rows (Tables 5 and 7).

Market1501 frame numbers restart with every recording sequence (``c1s2``: camera 1, sequence 2);
as the public ``tools/generate_seq_market.py:19-63, 86-101`` does, each frame gets the sum of
the largest frame numbers of the camera's earlier sequences added (:func:`market_sequence_offsets`,
maxima over every name given: train, query and gallery), so gaps between sequences are real time.

From the training set: for every identity and camera the mean frame number; for every pair of
cameras of an identity, the gap between those means in bins of ``interval`` frames, counted in
``distribution[later camera][earlier camera][bin]`` and normalised per camera pair; then, as the
public ``tools/image_eval.py:60-71`` (``load_distribution``), a Gaussian smoothing over the bins
(``sigma`` bins) followed by a second normalisation per camera pair. At test time a query / gallery pair gets the
probability of its gap, ``p_st``, and the ranking uses the joint similarity

    ``s_joint = 1 / (1 + exp(-alpha s)) * 1 / (1 + lam exp(-alpha p_st))``

with ``s`` the cosine similarity of the embeddings (defaults alpha 5, lam 2, interval 100,
sigma 50: the st-ReID public scripts, which the FGReID public code copies).
"""
from __future__ import annotations

import os.path as osp
import re
from typing import Dict, Hashable, Iterable, Optional, Sequence, Tuple

import numpy as np

__all__ = ["parse_frame", "market_sequence_offsets", "st_distribution", "smooth_distribution",
           "st_probability", "joint_distance"]

_MARKET = re.compile(r"^(-?\d+)_c(\d+)s(\d+)_(\d+)_\d+")   # 0002_c1s1_000451_03.jpg
_VERI = re.compile(r"^(\d+)_c(\d+)_(\d+)_\d+")             # 0001_c001_00016450_0.jpg

SeqOffsets = Dict[Tuple[int, int], int]


def _market(path: str):
    m = _MARKET.match(osp.basename(path))
    return None if m is None else (int(m.group(2)), int(m.group(3)), int(m.group(4)))


def market_sequence_offsets(paths: Iterable[str]) -> SeqOffsets:
    """``{(camera, sequence): offset}`` for Market1501 names: the sum of the largest frame number
    seen in each earlier sequence ``1 .. s-1`` of the same camera (a sequence never seen counts
    0), as the public ``tools/generate_seq_market.py:19-63`` (maxima over train, query and
    gallery) and its ``parse_frame`` (lines 86-101). Names that are not Market1501's are skipped."""
    largest: Dict[Tuple[int, int], int] = {}
    for p in paths:
        m = _market(p)
        if m is not None:
            cam, seq, frame = m
            largest[(cam, seq)] = max(largest.get((cam, seq), 0), frame)
    return {(cam, seq): sum(largest.get((cam, i), 0) for i in range(1, seq))
            for cam, seq in largest}


def parse_frame(path: str, offsets: Optional[SeqOffsets] = None) -> Tuple[int, int]:
    """``(camera, frame)`` (camera from 1) of a Market1501 or VeRi image name; other names raise.

    Market1501: the frame number plus ``offsets[(camera, sequence)]`` when ``offsets`` is given
    (:func:`market_sequence_offsets`; a sequence missing from it raises), as it is otherwise."""
    name = osp.basename(path)
    m = _market(name)
    if m is not None:
        cam, seq, frame = m
        if offsets is None:
            return cam, frame
        if (cam, seq) not in offsets:
            raise ValueError(f"ST: no frame offset for camera {cam} sequence {seq} ({name!r})")
        return cam, frame + offsets[(cam, seq)]
    v = _VERI.match(name)
    if v is None:
        raise ValueError(f"ST: cannot read camera and frame from {name!r} (Market1501 or VeRi names)")
    return int(v.group(2)), int(v.group(3))


def st_distribution(cams: Sequence[int], pids: Sequence[Hashable], frames: Sequence[float],
                    num_cams: int, interval: float = 100.0, max_hist: int = 5000) -> np.ndarray:
    """``(num_cams, num_cams, max_hist)`` gap histograms, normalised per camera pair (cameras
    numbered from 1). ``[a, b, k]``: identities seen in camera ``a`` on average ``k`` bins
    after camera ``b``."""
    if not len(cams) == len(pids) == len(frames):
        raise ValueError("cams, pids and frames must have the same length")
    ids = {p: i for i, p in enumerate(dict.fromkeys(pids))}
    total = np.zeros((len(ids), num_cams))
    count = np.zeros((len(ids), num_cams))
    for c, p, f in zip(cams, pids, frames):
        if not 1 <= c <= num_cams:
            raise ValueError(f"camera {c} outside 1..{num_cams}")
        total[ids[p], c - 1] += f
        count[ids[p], c - 1] += 1
    mean = np.divide(total, count, out=np.zeros_like(total), where=count > 0)
    dist = np.zeros((num_cams, num_cams, max_hist))
    for i in range(len(ids)):
        seen = np.flatnonzero(count[i] > 0)
        for a_i, a in enumerate(seen):
            for b in seen[a_i + 1:]:
                later, earlier = (a, b) if mean[i, a] > mean[i, b] else (b, a)
                k = min(int(abs(mean[i, a] - mean[i, b]) / interval), max_hist - 1)
                dist[later, earlier, k] += 1
    return _normalise_pairs(dist)


def _normalise_pairs(dist: np.ndarray) -> np.ndarray:
    sums = dist.sum(axis=-1, keepdims=True)
    return np.divide(dist, sums, out=np.zeros_like(dist), where=sums > 0)


def smooth_distribution(dist: np.ndarray, sigma: float = 50.0, normalise: bool = True) -> np.ndarray:
    """Gaussian smoothing over the bins (a Gaussian pdf of ``sigma`` bins, truncated at
    ``int(3 sigma)`` bins), then each camera pair normalised to sum 1 again (``normalise``), the
    order of the public ``tools/image_eval.py:60-71`` (``gauss_smooth2`` then the division)."""
    if sigma > 0:
        r = int(3 * sigma)
        x = np.arange(-r, r + 1)
        kernel = np.exp(-x ** 2 / (2 * sigma ** 2)) / (sigma * np.sqrt(2 * np.pi))
        flat = dist.reshape(-1, dist.shape[-1])
        n = flat.shape[1]
        out = np.stack([np.convolve(row, kernel)[r:r + n] for row in flat])  # centred, any length
        dist = out.reshape(dist.shape)
    return _normalise_pairs(dist) if normalise else dist.copy()


def st_probability(dist: np.ndarray, q_cams, q_frames, g_cams, g_frames, interval: float = 100.0) -> np.ndarray:
    """``(Q, G)`` ``p_st`` of every query / gallery pair: the bin of their frame gap in the
    histogram of (later camera, earlier camera)."""
    qc, qf = np.asarray(q_cams)[:, None] - 1, np.asarray(q_frames, dtype=np.float64)[:, None]
    gc, gf = np.asarray(g_cams)[None, :] - 1, np.asarray(g_frames, dtype=np.float64)[None, :]
    q_later = qf > gf
    later = np.where(q_later, qc, gc)
    earlier = np.where(q_later, gc, qc)
    k = np.minimum((np.abs(qf - gf) / interval).astype(np.int64), dist.shape[-1] - 1)
    return dist[later, earlier, k]


def joint_distance(similarity: np.ndarray, p_st: np.ndarray, alpha: float = 5.0, lam: float = 2.0) -> np.ndarray:
    """``-s_joint`` (smaller = closer) from cosine similarities and ``p_st`` (both ``(Q, G)``)."""
    return -(1.0 / (1.0 + np.exp(-alpha * similarity))) * (1.0 / (1.0 + lam * np.exp(-alpha * p_st)))
