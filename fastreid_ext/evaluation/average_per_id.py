"""Image test embeddings averaged per identity (``TEST.IMAGE.AVERAGE_PER_ID``).

Pathak, "Fine-Grained Re-Identification" (section 4.3, implementation details): "for images, we average all query and
gallery set embeddings per identity". This is **not** the standard image protocol (one query
image against every gallery image): the query set becomes one entry per identity (mean of its
query images), the gallery one entry per identity (mean of its gallery images), so every query
has at most one true match and the numbers are not comparable with per-image results.

``TEST.IMAGE.AVERAGE_KEY``:

- ``id`` (the paper's words): one entry per identity in each set; the entries lose their
  camera (query entries get camera -1, gallery entries -2), so the same-camera filter of the
  cross-camera protocol removes nothing.
- ``id_camera``: one entry per (identity, camera) in each set; the cross-camera filter applies
  as usual (a query identity's gallery images from its own camera stay out).

The means are taken over the raw embeddings (before the L2 normalisation of
``TEST.METRIC cosine``, after the flip averaging of ``TEST.FLIP``); the public code has no
such averaging (``main_scripts/Image.py`` ranks every query image).
"""
from __future__ import annotations

from typing import Dict, List, Sequence, Tuple

import numpy as np
import torch

from .embedding import l2_normalized, uses_l2
from .video_evaluator import VideoClipEvaluator

__all__ = ["AVERAGE_KEYS", "average_per_id", "IdAveragedEvaluator"]

AVERAGE_KEYS = ("id", "id_camera")


def _groups(pids: np.ndarray, camids: np.ndarray, key: str) -> List[List[int]]:
    """Row indices of each group, groups in order of first appearance."""
    out: Dict[Tuple, List[int]] = {}
    for i, (p, c) in enumerate(zip(pids.tolist(), camids.tolist())):
        out.setdefault((p,) if key == "id" else (p, c), []).append(i)
    return list(out.values())


def average_per_id(feats: torch.Tensor, num_query: int, pids: Sequence[int], camids: Sequence[int],
                   key: str = "id") -> Tuple[torch.Tensor, int, np.ndarray, np.ndarray]:
    """Mean embedding of each group of the query rows ``[0, num_query)`` and, separately, of the
    gallery rows. Returns ``(features, new num_query, pids, camids)``; with ``key == "id"`` the
    cameras are -1 (query) and -2 (gallery)."""
    if key not in AVERAGE_KEYS:
        raise ValueError(f"TEST.IMAGE.AVERAGE_KEY must be one of {AVERAGE_KEYS}, got {key!r}")
    pids, camids = np.asarray(pids), np.asarray(camids)
    rows, new_pids, new_cams, sizes = [], [], [], []
    for part, (lo, hi) in enumerate(((0, num_query), (num_query, len(pids)))):
        for g in _groups(pids[lo:hi], camids[lo:hi], key):
            idx = [lo + i for i in g]
            rows.append(feats[idx].double().mean(dim=0))
            new_pids.append(pids[idx[0]])
            new_cams.append(camids[idx[0]] if key == "id_camera" else -1 - part)
        sizes.append(len(rows))
    return (torch.stack(rows).to(feats.dtype), sizes[0], np.asarray(new_pids),
            np.asarray(new_cams))


class IdAveragedEvaluator(VideoClipEvaluator):
    """:class:`VideoClipEvaluator` on per-identity means (:func:`average_per_id`): the query /
    gallery entries are replaced by the group means before the metrics; AQE, re-ranking and
    the metric work on those. Rank-list pictures are off (an entry is no longer one image)."""

    def __init__(self, cfg, num_query: int, num_tracklets: int, pids, camids, *args, **kwargs):
        super().__init__(cfg, num_query, num_tracklets, pids, camids, *args, **kwargs)
        if self._groups is not None:
            raise ValueError("TEST.IMAGE.AVERAGE_PER_ID works with the cross-camera protocol only "
                             f"(this test set uses {self._protocol!r})")
        self._key = cfg.TEST.IMAGE.AVERAGE_KEY  # checked by fastreid_ext.config.validate
        self._per_image = (self._num_query, self._pids, self._camids)
        self._items = None

    def tracklet_features(self):
        self._num_query, self._pids, self._camids = self._per_image  # per image, every call
        feats = super().tracklet_features()
        if feats is None:
            return None
        raw, self._num_query, self._pids, self._camids = average_per_id(
            self._raw_features, self._num_query, self._pids, self._camids, self._key)
        self._raw_features = raw
        return l2_normalized(raw, uses_l2(self.cfg.TEST.METRIC))
