"""Where an aggregation's node weights go: measures on the ``node_weights`` of the
temporal-aggregation contract (:class:`~fastreid_ext.modeling.aggregation.AggregationOutput`),
one ``(C_g, T, h_g, w_g)`` tensor per group and clip, against boxes in frame pixels (e.g. the
synthetic generator's occluder marks)."""
from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import torch

__all__ = ["frame_attention_mass", "nodes_in_box", "occluded_node_weights"]


def frame_attention_mass(weights: torch.Tensor) -> torch.Tensor:
    """``(C_m, T, H_m, W_m)`` softmax weights of one clip -> ``(T,)``: the share of each frame
    in the aggregation, averaged over the channels (sums to 1; ``1 / T`` each = uniform)."""
    if weights.dim() != 4:
        raise ValueError(f"weights must be (C, T, H_m, W_m), got {tuple(weights.shape)}")
    return weights.detach().float().sum(dim=(2, 3)).mean(dim=0)


def nodes_in_box(hm: int, wm: int, box: Sequence[float], frame_size: Sequence[int]) -> torch.Tensor:
    """``(H_m, W_m)`` bool: the nodes of an ``H_m x W_m`` map whose cell centre lies in ``box``
    ``(x0, y0, x1, y1)`` (pixels of a ``frame_size`` = (H, W) frame)."""
    h, w = float(frame_size[0]), float(frame_size[1])
    ys = (torch.arange(hm, dtype=torch.float32) + 0.5) * h / hm
    xs = (torch.arange(wm, dtype=torch.float32) + 0.5) * w / wm
    return ((ys[:, None] >= box[1]) & (ys[:, None] < box[3]) & (xs[None, :] >= box[0]) & (xs[None, :] < box[2]))


def occluded_node_weights(weights: torch.Tensor, boxes: Sequence[Optional[Sequence[float]]],
                          frame_size: Sequence[int]) -> Tuple[List[float], List[float]]:
    """Node weights of one clip relative to uniform, split by occlusion.

    ``weights``: ``(C_m, T, H_m, W_m)`` softmax weights (each channel sums to 1 over the
    ``K = T * H_m * W_m`` nodes); ``boxes``: per frame an occluder box ``(x0, y0, x1, y1)`` in
    pixels of a ``frame_size`` frame, or ``None``. Returns ``(occluded, visible)``: the
    channel-mean weight x ``K`` of every node inside a box and of every other node
    (1 = uniform, the average baseline; < 1 = attended less than by the average)."""
    if weights.dim() != 4:
        raise ValueError(f"weights must be (C, T, H_m, W_m), got {tuple(weights.shape)}")
    _, t_len, hm, wm = weights.shape
    if len(boxes) != t_len:
        raise ValueError(f"{len(boxes)} boxes for {t_len} frames")
    node = weights.detach().double().mean(dim=0) * (t_len * hm * wm)  # (T, H_m, W_m)
    mask = torch.zeros(t_len, hm, wm, dtype=torch.bool)
    for t, box in enumerate(boxes):
        if box is not None:
            mask[t] = nodes_in_box(hm, wm, box, frame_size)
    return node[mask].tolist(), node[~mask].tolist()
