"""Small pure functions on spatio-temporal feature nodes (the MG-RAFA paper, sections 3.2-3.3).

A clip's frame maps ``(B, T, C, H, W)`` hold ``K = T*H*W`` feature nodes of ``C`` channels;
they are laid out as ``(B, C, K)`` with the node index running over ``(t, y, x)`` (raster
scan per frame, frames in order).
"""
from __future__ import annotations

from typing import Sequence, Tuple

import torch
import torch.nn.functional as F

REFERENCE_STRATEGIES = ("temporal_avg", "spatial_pool", "temporal_pool", "all")


def check_clip(x: torch.Tensor, name: str = "features") -> None:
    if x.dim() != 5:
        raise ValueError(f"{name} must be (B, T, C, H, W), got shape {tuple(x.shape)}")


def to_nodes(x: torch.Tensor) -> torch.Tensor:
    """``(B, T, C, H, W) -> (B, C, T*H*W)``: the node set ``F_all`` of section 3.2."""
    check_clip(x)
    b, t, c, h, w = x.shape
    return x.permute(0, 2, 1, 3, 4).reshape(b, c, t * h * w)


def temporal_residual_nodes(x: torch.Tensor) -> torch.Tensor:
    """``(B, T, C, H, W) -> (B, C, T*H*W)``: every node minus the temporal mean of its own
    position (for the ``temporal_avg`` reference that is the reference node at the same
    position). A pattern that every frame shares at a position (background, body layout,
    padding) cancels; what differs between frames (an occluder, a blurred frame) stays.
    ``MODEL.MGRAFA.SCORE_INPUT temporal_residual`` feeds it to the attention (ours)."""
    check_clip(x)
    return to_nodes(x - x.mean(dim=1, keepdim=True))


def from_nodes(nodes: torch.Tensor, t: int, h: int, w: int) -> torch.Tensor:
    """Inverse of :func:`to_nodes`: ``(B, C, T*H*W) -> (B, T, C, H, W)``."""
    b, c, k = nodes.shape
    if k != t * h * w:
        raise ValueError(f"{k} nodes cannot be laid out as T={t} x {h} x {w}")
    return nodes.reshape(b, c, t, h, w).permute(0, 2, 1, 3, 4)


def granularity_size(h: int, w: int, m: int) -> Tuple[int, int]:
    """Spatial size of granularity ``m`` (1-based): ``(H / 2^(m-1), W / 2^(m-1))`` (section 3.3),
    rounded up and at least 1 so that small test maps still have one node."""
    if m < 1:
        raise ValueError(f"granularity index starts at 1, got {m}")
    f = 2 ** (m - 1)
    return max(1, -(-h // f)), max(1, -(-w // f))


def pool_spatial(x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Spatial average pooling of every frame to ``size``: ``(B, T, C, H, W) -> (B, T, C, h, w)``.

    Equals ``avg_pool2d`` with kernel ``H / h`` when the sizes divide."""
    check_clip(x)
    b, t, c, h, w = x.shape
    if (h, w) == tuple(size):
        return x
    y = F.adaptive_avg_pool2d(x.reshape(b * t, c, h, w), tuple(size))
    return y.reshape(b, t, c, size[0], size[1])


def num_reference_nodes(strategy: str, h: int, w: int, t: int,
                        spatial_size: Sequence[int] = (8, 2), temporal_size: int = 2) -> int:
    """Number ``D`` of reference nodes (S-RFNs) of a strategy of Table 3."""
    if strategy == "temporal_avg":
        return h * w
    if strategy == "spatial_pool":
        sh, sw = min(spatial_size[0], h), min(spatial_size[1], w)
        return sh * sw * t
    if strategy == "temporal_pool":
        return h * w * min(temporal_size, t)
    if strategy == "all":
        return h * w * t
    raise KeyError(f"unknown S-RFN strategy {strategy!r}; known: {REFERENCE_STRATEGIES}")


def reference_nodes(x: torch.Tensor, strategy: str = "temporal_avg",
                    spatial_size: Sequence[int] = (8, 2), temporal_size: int = 2) -> torch.Tensor:
    """The reference node set ``F_R`` (S-RFNs) as ``(B, C, D)``.

    - ``temporal_avg`` (the paper's choice): average of the T frame maps, ``D = H*W`` nodes.
    - ``spatial_pool`` (S-P): every frame pooled to ``spatial_size`` (clipped to ``H x W``),
      ``D = h*w*T``.
    - ``temporal_pool`` (T-P): frames averaged in ``temporal_size`` consecutive bins,
      ``D = H*W*temporal_size`` (T must be a multiple of it).
    - ``all`` (ST): every node, ``D = H*W*T``.
    """
    check_clip(x)
    b, t, c, h, w = x.shape
    if strategy == "temporal_avg":
        return x.mean(dim=1).reshape(b, c, h * w)
    if strategy == "spatial_pool":
        size = (min(spatial_size[0], h), min(spatial_size[1], w))
        return to_nodes(pool_spatial(x, size))
    if strategy == "temporal_pool":
        bins = min(temporal_size, t)
        if t % bins:
            raise ValueError(f"temporal_pool: T={t} is not a multiple of {bins} bins")
        return to_nodes(x.reshape(b, bins, t // bins, c, h, w).mean(dim=2))
    if strategy == "all":
        return to_nodes(x)
    raise KeyError(f"unknown S-RFN strategy {strategy!r}; known: {REFERENCE_STRATEGIES}")


def relation_vectors(query: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Eq. (1)-(2): ``r_ij = mu(x_i)^T nu(y_j)`` stacked over the reference nodes ``j``.

    ``query``: embedded nodes ``mu(x)``, ``(B, C', K)``; ``reference``: ``nu(y)``, ``(B, C', D)``.
    Returns the relation vectors channel-first, ``(B, D, K)`` (column ``i`` is ``r_i``).
    """
    return torch.bmm(reference.transpose(1, 2), query)


def softmax_aggregate(scores: torch.Tensor, nodes: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Eq. (4): softmax of the scores over the K nodes, per channel, then the weighted sum.

    ``scores``, ``nodes``: ``(B, C, K)``. Returns ``v`` ``(B, C)`` and the weights ``(B, C, K)``
    (each channel's weights sum to 1).
    """
    if scores.shape != nodes.shape:
        raise ValueError(f"scores {tuple(scores.shape)} and nodes {tuple(nodes.shape)} differ")
    weights = torch.softmax(scores, dim=-1)
    return (weights * nodes).sum(dim=-1), weights
