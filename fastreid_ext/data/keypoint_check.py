"""Auxiliary labels are checked before training: the keypoints of the train items.

A keypoint file (``extras["keypoints"]``, :mod:`.video_dataset`) whose keys do not match the
frame paths, or whose coordinates are not pixels of the frames, gives every frame ``v = 0`` or
joints outside the picture: a keypoint loss (e.g. a pose-guided location loss or joint stream)
then learns nothing, silently. :func:`check_train_keypoints` counts, per keypoint file, the train
items with a matching, in-frame entry (the first frame of the item that has an entry with a
visible joint; its visible joints must lie inside the frame, and not all within ``[0, 1]``:
normalised coordinates are not pixels), logs the counts and raises ``ValueError`` naming the
file and an example when the fraction is below ``INPUT.KEYPOINTS_MIN_MATCH`` (0 disables).
"""
from __future__ import annotations

import logging
import os
from collections import defaultdict
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from .items import extras_of
from .video_dataset import _load_keypoint_file

__all__ = ["check_train_keypoints", "keypoint_coverage"]

logger = logging.getLogger(__name__)


def _frame_size(path: str) -> Optional[Tuple[int, int]]:
    """``(width, height)`` from the image header; ``None`` when unreadable."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            return im.size
    except (OSError, ValueError):
        return None


def _item_verdict(frames: Sequence[str], table: Dict[str, np.ndarray], root: str) -> Tuple[str, str]:
    """``("ok" | "unmatched" | "outside" | "normalised", example)`` for one item."""
    invisible = None
    for p in frames:
        rel = os.path.relpath(os.path.abspath(p), root).replace(os.sep, "/")
        joints = table.get(rel)
        if joints is not None and not (joints[:, 2] > 0).any():
            invisible = invisible or rel
        if joints is None or not (joints[:, 2] > 0).any():
            continue
        size = _frame_size(p)
        if size is None:
            return "ok", rel  # unreadable frames are the loader's business (replaced, counted)
        w, h = size
        vis = joints[joints[:, 2] > 0, :2]
        if w > 2 and h > 2 and (vis <= 1.0).all() and (vis >= 0).all():
            return "normalised", f"{rel}: joints within [0, 1] on a {w}x{h} frame"
        out = (vis[:, 0] < 0) | (vis[:, 0] > w) | (vis[:, 1] < 0) | (vis[:, 1] > h)
        if out.any():
            x, y = vis[out][0]
            return "outside", f"{rel}: joint ({x:.1f}, {y:.1f}) outside its {w}x{h} frame"
        return "ok", rel
    if invisible is not None:
        return "invisible", f"{invisible}: no joint with v > 0"
    first = os.path.relpath(os.path.abspath(frames[0]), root).replace(os.sep, "/")
    return "unmatched", f"{frames[0]} (looked up as {first!r})"


def keypoint_coverage(items: Sequence) -> Dict[str, dict]:
    """``{keypoint file: {"items", "ok", "unmatched", "invisible", "outside", "normalised", "examples"}}``
    over the ``items`` whose extras name a keypoint file."""
    groups: Dict[str, List] = defaultdict(list)
    for it in items:
        path = extras_of(it).get("keypoints")
        if path:
            groups[path].append(it)
    report = {}
    for path, group in groups.items():
        table = _load_keypoint_file(path)
        root = os.path.dirname(os.path.abspath(path))
        counts = {"items": len(group), "ok": 0, "unmatched": 0, "invisible": 0, "outside": 0, "normalised": 0,
                  "examples": {}}
        for it in group:
            frames = (it[0],) if isinstance(it[0], str) else tuple(it[0])
            verdict, example = _item_verdict(frames, table, root)
            counts[verdict] += 1
            counts["examples"].setdefault(verdict, example)
        counts["sample_key"] = next(iter(table), None)
        report[path] = counts
    return report


def check_train_keypoints(items: Sequence, min_match: float) -> Dict[str, dict]:
    """Count (and log) the train items with a matching, in-frame keypoint entry per keypoint
    file; raise ``ValueError`` naming the file when their fraction is below ``min_match``."""
    if not 0 <= min_match <= 1:
        raise ValueError(f"INPUT.KEYPOINTS_MIN_MATCH must be a fraction in [0, 1] (0: off), got {min_match}")
    report = keypoint_coverage(items)
    for path, c in report.items():
        frac = c["ok"] / c["items"]
        logger.info(f"keypoints {path}: {c['ok']} of {c['items']} train items ({frac:.0%}) have a matching, "
                    f"in-frame entry ({c['unmatched']} match no key, {c['invisible']} no visible joint, "
                    f"{c['outside']} joints outside the frame, {c['normalised']} normalised coordinates)")
        if min_match > 0 and frac < min_match:
            ex = c["examples"]
            why = "; ".join(f"{c[k]} {label}, e.g. {ex[k]}" for k, label in (
                ("unmatched", "match no key"), ("invisible", "have no visible joint (v > 0)"),
                ("outside", "have joints outside the frame"),
                ("normalised", "have normalised coordinates (pixels expected)")) if c[k])
            raise ValueError(
                f"keypoint file {path}: only {c['ok']} of {c['items']} train items ({frac:.0%}) have a matching, "
                f"in-frame entry, below INPUT.KEYPOINTS_MIN_MATCH {min_match}: {why}. The file's keys look "
                f"like {c['sample_key']!r} (frame paths relative to the file's folder, joints in pixels). Fix "
                f"the file (tools/make_keypoints.py) or set INPUT.KEYPOINTS_MIN_MATCH 0 to train anyway")
    return report
