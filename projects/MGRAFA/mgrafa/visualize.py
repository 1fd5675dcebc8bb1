"""Attention pictures in the style of Figure 3 of the MG-RAFA paper.

For each granularity ``m`` the node weights ``(C_m, T, H_m, W_m)`` are summed over the channels of
the group, rescaled to the frame size, normalised jointly over the ``T`` frames (so that frames
the module ignores look dark) and overlaid on the frames. The grid has one row of frames and one
row per granularity, ``T`` columns.
"""
from __future__ import annotations

from typing import Dict, List, Sequence

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from fastreid_ext.modeling.aggregation.measures import nodes_in_box


def group_attention_maps(weights: torch.Tensor, frame_size: Sequence[int]) -> torch.Tensor:
    """``(C_m, T, H_m, W_m)`` node weights of one clip -> ``(T, H, W)`` maps in ``[0, 1]``:
    the channel sum, bilinearly rescaled to ``frame_size`` and divided by its maximum over all
    frames (all zeros stays zeros)."""
    if weights.dim() != 4:
        raise ValueError(f"weights must be (C, T, H_m, W_m), got {tuple(weights.shape)}")
    maps = weights.detach().float().sum(dim=0, keepdim=True)  # (1, T, H_m, W_m)
    maps = F.interpolate(maps, size=tuple(int(s) for s in frame_size), mode="bilinear",
                         align_corners=False)[0]  # (T, H, W)
    maps = maps - maps.min()
    peak = maps.max()
    return maps / peak if peak > 0 else maps


def box_attention_ratio(weights: torch.Tensor, t: int, box: Sequence[float],
                        frame_size: Sequence[int]) -> float:
    """Mean channel-summed weight of frame ``t``'s nodes whose centre lies in ``box``
    ``(x0, y0, x1, y1)`` (pixels of a ``frame_size`` = (H, W) frame) over that of its other
    nodes; ``nan`` when either set is empty. ``< 1``: the box is attended less."""
    _, _, hm, wm = weights.shape
    node = weights.detach().float()[:, t].sum(dim=0)  # (H_m, W_m)
    inside = nodes_in_box(hm, wm, box, frame_size)
    if bool(inside.all()) or not bool(inside.any()):
        return float("nan")
    return float(node[inside].mean() / node[~inside].mean().clamp(min=1e-30))


def log_weight_variance(weights: torch.Tensor) -> Dict[str, float]:
    """Where the attention of one granularity varies: ``weights`` ``(N, C, T, H_m, W_m)`` node
    weights of N clips -> sample variance of the log weights (centred per clip and channel):
    ``total`` (over each clip's nodes, mean over clips and channels), ``frames`` (of the
    per-frame means: between frames), ``positions`` (of the per-position temporal means: a
    spatial pattern) and ``shared`` (of the per-channel, per-position means over all clips: a
    pattern the same in every clip). 0 = uniform; ``positions`` / ``shared`` are nan for 1x1
    maps."""
    if weights.dim() != 5:
        raise ValueError(f"weights must be (N, C, T, H_m, W_m), got {tuple(weights.shape)}")
    lw = weights.detach().double().clamp_min(1e-30).log()
    lw = lw - lw.mean(dim=(2, 3, 4), keepdim=True)
    pos = lw.mean(dim=2)  # (N, C, H_m, W_m)
    single = pos.shape[-2] * pos.shape[-1] == 1
    return {
        "total": float(lw.flatten(2).var(dim=2).mean()),
        "frames": float(lw.mean(dim=(3, 4)).var(dim=2).mean()),
        "positions": float("nan") if single else float(pos.flatten(2).var(dim=2).mean()),
        "shared": float("nan") if single else float(pos.mean(dim=0).var()),
    }


def attention_grid(frames: torch.Tensor, weights: List[torch.Tensor], alpha: float = 0.5,
                   marked: Sequence[int] = ()) -> np.ndarray:
    """BGR uint8 image ``((N + 1) * H, T * W, 3)``.

    Args:
        frames: ``(T, 3, H, W)`` RGB, values 0..255 (the un-normalised model input of one clip).
        weights: per granularity, the ``(C_m, T, H_m, W_m)`` weights of that clip
            (``MultiGranularityAggregation(...)["weights"][m][b]``).
        alpha: opacity of the heat map.
        marked: indices of frames to outline in red in the frame row (e.g. corrupted frames).
    """
    if frames.dim() != 4 or frames.shape[1] != 3:
        raise ValueError(f"frames must be (T, 3, H, W), got {tuple(frames.shape)}")
    t, _, h, w = frames.shape
    rgb = frames.detach().float().clamp(0, 255).permute(0, 2, 3, 1).cpu().numpy().astype(np.uint8)
    bgr = rgb[..., ::-1]
    top = [np.ascontiguousarray(f) for f in bgr]
    for i in marked:
        cv2.rectangle(top[int(i)], (0, 0), (w - 1, h - 1), (0, 0, 255), 2)
    rows = [np.concatenate(top, axis=1)]
    for group in weights:
        if group.shape[1] != t:
            raise ValueError(f"weights have T={group.shape[1]} frames, the clip has {t}")
        maps = (group_attention_maps(group, (h, w)).cpu().numpy() * 255).astype(np.uint8)
        tiles = []
        for frame, m in zip(bgr, maps):
            heat = cv2.applyColorMap(m, cv2.COLORMAP_JET)
            tiles.append(cv2.addWeighted(np.ascontiguousarray(frame), 1 - alpha, heat, alpha, 0))
        rows.append(np.concatenate(tiles, axis=1))
    return np.concatenate(rows, axis=0)


def save_attention_grid(path: str, frames: torch.Tensor, weights: List[torch.Tensor],
                        alpha: float = 0.5, marked: Sequence[int] = ()) -> np.ndarray:
    """Write :func:`attention_grid` as a PNG at ``path``; returns the image."""
    image = attention_grid(frames, weights, alpha, marked)
    if not cv2.imwrite(path, image):
        raise OSError(f"could not write {path}")
    return image
