"""``TEST.ROC``: the host's verification metrics ``TPR@FPR={1e-04, 1e-03, 1e-02}``.

The host (``fastreid/evaluation/reid_evaluation.py:115-121`` with ``evaluation/roc.py``) takes,
for every query, every gallery item except those of the same identity *and* camera, scores
each pair by its distance, labels same-identity pairs 0 and different-identity pairs 1, runs
``sklearn.metrics.roc_curve(labels, scores)`` and reports, for each target FPR, the TPR at
the ROC point whose FPR is nearest to it (fractions, not percentages). With these labels the
"positive" class of the curve is *different* identities, scored by distance.

:func:`roc_metrics` is that computation vectorised (the host loops over queries in Python or
Cython; the order of the pairs does not change ``roc_curve``'s output).
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Sequence

import numpy as np

__all__ = ["FPR_TARGETS", "roc_scores", "roc_metrics"]

FPR_TARGETS = (1e-4, 1e-3, 1e-2)


def roc_scores(distmat, q_pids, g_pids, q_camids, g_camids):
    """``(scores, labels)`` of the host's ``evaluate_roc``: the distances of the kept
    (query, gallery) pairs and 0 for same identity / 1 for different identities."""
    dist = np.asarray(distmat)
    q_pids, g_pids = np.asarray(q_pids), np.asarray(g_pids)
    q_camids, g_camids = np.asarray(q_camids), np.asarray(g_camids)
    if dist.shape != (q_pids.size, g_pids.size):
        raise ValueError(f"distmat must be ({q_pids.size}, {g_pids.size}), got {dist.shape}")
    same_pid = q_pids[:, None] == g_pids[None, :]
    keep = ~(same_pid & (q_camids[:, None] == g_camids[None, :]))
    return dist[keep], (~same_pid[keep]).astype(np.float64)


def roc_metrics(distmat, q_pids, g_pids, q_camids, g_camids,
                fpr_targets: Sequence[float] = FPR_TARGETS) -> "OrderedDict[str, float]":
    """``{"TPR@FPR=1e-04": tpr, ...}`` exactly as the host's ``ReidEvaluator`` reports them."""
    from sklearn import metrics

    scores, labels = roc_scores(distmat, q_pids, g_pids, q_camids, g_camids)
    if labels.size == 0 or labels.min() == labels.max():
        raise ValueError("TEST.ROC needs both same-identity and different-identity (query, gallery) pairs")
    fprs, tprs, _ = metrics.roc_curve(labels, scores)
    out = OrderedDict()
    for fpr in fpr_targets:
        out["TPR@FPR={:.0e}".format(fpr)] = float(tprs[np.argmin(np.abs(fprs - fpr))])
    return out
