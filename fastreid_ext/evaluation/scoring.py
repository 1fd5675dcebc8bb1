"""How an evaluation was scored: the description written into ``results.json`` ("scoring").

A number is only comparable with a published one scored the same way. This records, for each
test set: the protocol, the AP definition and tie rule (:class:`.rank.ProtocolSpec`), the
metric, flip averaging, and for video test sets the clip length, the short-tracklet padding,
the clip cap and the frames each tracklet contributed (min / mean / max, and how many
tracklets were not seen whole). ``docs/scoring.md`` lists the protocols and which papers
report which.
"""
from __future__ import annotations

from typing import Any, Dict, Optional

import numpy as np

from .rank import PROTOCOL_SPECS

__all__ = ["AP_DEFINITIONS", "describe_scoring", "scoring_line"]

#: What each AP definition computes (:class:`.rank.ProtocolSpec`).
AP_DEFINITIONS = {
    "noninterp": "non-interpolated: mean over the matches of j / r_j (host, Python evaluators)",
    "trapezoid": "trapezoidal: precision-recall steps integrated from (0, 1) (MARS MATLAB compute_AP.m)",
}


def describe_scoring(cfg, protocol: str, test_set: Optional[Any] = None) -> Dict[str, Any]:
    """The scoring description of one test set.

    Args:
        cfg: the run's config (``TEST.METRIC``, ``TEST.FLIP``, ``TEST.VIDEO``,
            ``INPUT.VIDEO.SHORT_PAD``).
        protocol: the resolved protocol (not ``"auto"``).
        test_set: the test dataset; a video one (with ``frames_seen()`` / ``frame_counts()``,
            :class:`~fastreid_ext.data.video_dataset.VideoTestDataset`) adds the sampling fields.
    """
    spec = PROTOCOL_SPECS.get(protocol)  # fgpr (two_direction.py) uses the non-interpolated AP
    ap = spec.ap if spec is not None else "noninterp"
    out: Dict[str, Any] = {
        "protocol": protocol,
        "ap": ap,
        "ap_definition": AP_DEFINITIONS[ap],
        "ties": "gallery order" if spec is not None and spec.stable_ties else "host argsort",
        "metric": cfg.TEST.METRIC,
        "flip": bool(cfg.TEST.FLIP.ENABLED),
    }
    if test_set is None or not hasattr(test_set, "frames_seen"):
        out["sampling"] = "one image per item"
        return out
    seen = test_set.frames_seen()
    total = test_set.frame_counts()
    max_clips = int(test_set.max_clips)
    out.update({
        "sampling": "dense, every frame" if max_clips <= 0 else
                    f"dense, at most {max_clips} clips spread over the tracklet",
        "clip_len": int(test_set.seq_len),
        "max_clips": max_clips,
        "short_pad": test_set.pad,
        "frames_seen": {"min": int(seen.min()), "mean": round(float(seen.mean()), 2), "max": int(seen.max())},
        "tracklets_not_seen_whole": int(np.count_nonzero(seen < total)),
        "tracklets": int(len(seen)),
    })
    return out


def scoring_line(desc: Dict[str, Any]) -> str:
    """One log line of :func:`describe_scoring`'s dict."""
    parts = [f"protocol {desc['protocol']}", f"AP {desc['ap']}", f"ties: {desc['ties']}",
             f"metric {desc['metric']}", f"flip {desc['flip']}", f"sampling: {desc['sampling']}"]
    if "clip_len" in desc:
        fs = desc["frames_seen"]
        parts += [f"T={desc['clip_len']}", f"short tracklets: {desc['short_pad']}",
                  f"frames seen per tracklet min/mean/max {fs['min']}/{fs['mean']}/{fs['max']}",
                  f"{desc['tracklets_not_seen_whole']} of {desc['tracklets']} tracklets not seen whole"]
    return "Scored with " + ", ".join(parts)
