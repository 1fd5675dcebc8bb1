"""Rank-list pictures: one PNG row per query (OpenCV only, no matplotlib).

A row is the query (a strip of up to ``max_query_frames`` frames for a tracklet, one frame for
an image) followed by its top-k gallery items (first frame), each with a green (correct) or red
(wrong) border and its distance written under it.
"""
from __future__ import annotations

import os
from typing import List, Optional, Sequence, Union

import cv2
import numpy as np

__all__ = ["load_frame", "draw_rank_list", "draw_rank_lists"]

Frame = Union[str, np.ndarray]  # a path, or an (H, W, 3) uint8 RGB array

GREEN = (0, 200, 0)  # RGB
RED = (220, 0, 0)
WHITE = (255, 255, 255)
BLUE = (0, 90, 220)


def load_frame(frame: Frame, size: Optional[tuple] = None) -> np.ndarray:
    """An ``(H, W, 3)`` uint8 RGB array from a path or an array (gray or RGBA accepted);
    resized to ``size = (H, W)`` when given. A missing file raises ``FileNotFoundError``."""
    if isinstance(frame, (str, os.PathLike)):
        img = cv2.imread(str(frame), cv2.IMREAD_COLOR)
        if img is None:
            raise FileNotFoundError(f"Cannot read image {frame}")
        img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    else:
        img = np.asarray(frame)
        if img.ndim == 2:
            img = np.repeat(img[:, :, None], 3, axis=2)
        if img.ndim != 3 or img.shape[2] not in (3, 4):
            raise ValueError(f"A frame must be (H, W, 3) RGB, got shape {img.shape}")
        img = img[:, :, :3]
        if img.dtype != np.uint8:
            img = np.clip(img, 0, 255).astype(np.uint8)
    if size is not None:
        img = cv2.resize(img, (int(size[1]), int(size[0])), interpolation=cv2.INTER_LINEAR)
    return np.ascontiguousarray(img)


def _first_frame(item) -> Frame:
    if isinstance(item, (list, tuple)):
        if not item:
            raise ValueError("A gallery item has no frame")
        return item[0]
    return item


def _bordered(img: np.ndarray, color, border: int) -> np.ndarray:
    return cv2.copyMakeBorder(img, border, border, border, border, cv2.BORDER_CONSTANT, value=color)


def _caption(width: int, text: str, height: int = 18) -> np.ndarray:
    cap = np.full((height, width, 3), 255, np.uint8)
    cv2.putText(cap, text, (3, height - 5), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    return cap


def draw_rank_list(
    query_frames: Sequence[Frame],
    gallery_items: Sequence,
    distances: Sequence[float],
    correct: Sequence[bool],
    out_png: Optional[str] = None,
    cell_size: tuple = (128, 64),
    border: int = 4,
    max_query_frames: int = 4,
    gap: int = 12,
) -> np.ndarray:
    """Draw one rank-list row and write it to ``out_png`` (when given).

    Args:
        query_frames: the query's frames (paths or RGB arrays); up to ``max_query_frames``
            evenly spaced ones form the query strip.
        gallery_items: the top-k gallery items, each a frame or a sequence of frames (its
            first frame is drawn).
        distances: ``(k,)`` distances, written under each gallery item.
        correct: ``(k,)`` booleans: green border when true, red otherwise.
        cell_size: ``(H, W)`` of every drawn frame.

    Returns:
        The ``(H', W', 3)`` uint8 RGB canvas.
    """
    if len(query_frames) == 0:
        raise ValueError("The query has no frame")
    if not (len(gallery_items) == len(distances) == len(correct)):
        raise ValueError(
            f"gallery_items, distances and correct differ in length: "
            f"{len(gallery_items)}, {len(distances)}, {len(correct)}"
        )
    n_q = min(max_query_frames, len(query_frames))
    pick = np.linspace(0, len(query_frames) - 1, n_q).round().astype(int)
    strip = np.concatenate([load_frame(query_frames[i], cell_size) for i in pick], axis=1)
    cells: List[np.ndarray] = [
        np.concatenate([_bordered(strip, BLUE, border), _caption(strip.shape[1] + 2 * border, "query")])
    ]
    for item, dist, ok in zip(gallery_items, distances, correct):
        img = _bordered(load_frame(_first_frame(item), cell_size), GREEN if ok else RED, border)
        cells.append(np.concatenate([img, _caption(img.shape[1], f"{float(dist):.3f}")]))
    height = cells[0].shape[0]
    spacer = np.full((height, gap, 3), 255, np.uint8)
    row = [cells[0], spacer]
    for c in cells[1:]:
        row += [c, spacer[:, : gap // 3]]
    canvas = np.concatenate(row, axis=1)
    if out_png is not None:
        os.makedirs(os.path.dirname(os.path.abspath(out_png)), exist_ok=True)
        if not cv2.imwrite(out_png, cv2.cvtColor(canvas, cv2.COLOR_RGB2BGR)):
            raise OSError(f"Could not write {out_png}")
    return canvas


def draw_rank_lists(
    distmat: np.ndarray,
    q_frames: Sequence[Sequence[Frame]],
    g_frames: Sequence[Sequence[Frame]],
    q_pids: np.ndarray,
    g_pids: np.ndarray,
    q_camids: np.ndarray,
    g_camids: np.ndarray,
    out_dir: str,
    num_queries: int = 8,
    topk: int = 10,
    exclude_same_camera: bool = True,
    **kwargs,
) -> List[str]:
    """One PNG per query for the first ``num_queries`` queries of ``distmat`` ``(Q, G)``;
    gallery items with the query's pid *and* camera are hidden when ``exclude_same_camera``
    (the cross-camera protocol ignores them). Returns the written paths."""
    distmat = np.asarray(distmat)
    paths = []
    for i in range(min(num_queries, distmat.shape[0])):
        order = np.argsort(distmat[i], kind="stable")
        if exclude_same_camera:
            junk = (g_pids[order] == q_pids[i]) & (g_camids[order] == q_camids[i])
            order = order[~junk]
        order = order[:topk]
        out = os.path.join(out_dir, f"rank_q{i:05d}_pid{q_pids[i]}.png")
        draw_rank_list(
            q_frames[i],
            [g_frames[j] for j in order],
            distmat[i, order],
            g_pids[order] == q_pids[i],
            out,
            **kwargs,
        )
        paths.append(out)
    return paths
