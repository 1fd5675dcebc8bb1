"""FGPose's motion stream (section 4.1): optical-flow-guided features (OFF, Sun et al., CVPR
2018) between the feature maps of two segments ``Delta t`` frames apart.

OFF of a feature map ``f`` between times ``t`` and ``t + Delta t``: its spatial gradients
(Sobel, ``d f / d x`` and ``d f / d y`` of the map at ``t``) and its temporal difference
``f_{t + Delta t} - f_t``. Our OFF unit (the paper points to Sun et al. for the details; our
choice): a 1x1 conv + BN + ReLU reduces the level's channels to ``K = max(8, C / reduction)``
(shared by both times), then ``[Sobel_x, Sobel_y, temporal difference]`` (``3K`` channels),
then a 3x3 conv + BN + ReLU back to ``K`` channels: the level's motion map ``f_m``.
"""
from __future__ import annotations

from typing import List, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["SOBEL_X", "SOBEL_Y", "sobel", "temporal_difference", "OFFUnit", "MotionStream"]

#: Sobel kernels (cross-correlation, as ``F.conv2d`` applies them): x grows to the right, y down
SOBEL_X = ((-1.0, 0.0, 1.0), (-2.0, 0.0, 2.0), (-1.0, 0.0, 1.0))
SOBEL_Y = ((-1.0, -2.0, -1.0), (0.0, 0.0, 0.0), (1.0, 2.0, 1.0))


def sobel(x: torch.Tensor, kernels: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Per-channel Sobel gradients of ``(N, C, H, W)`` maps -> ``(N, 2C, H, W)``
    (``[d/dx of every channel, d/dy of every channel]``), zero padding at the border.
    ``kernels``: the ``(2, 3, 3)`` ``[SOBEL_X, SOBEL_Y]`` already on the device (a module
    buffer, :class:`OFFUnit`); built from the constants when not given."""
    c = x.shape[1]
    k = torch.tensor([SOBEL_X, SOBEL_Y]) if kernels is None else kernels
    k = k.to(device=x.device, dtype=x.dtype)  # (2, 3, 3); no copy when already there
    weight = k.unsqueeze(1).repeat(c, 1, 1, 1)  # (2C, 1, 3, 3): channel i -> 2i (x), 2i + 1 (y)
    g = F.conv2d(x, weight, padding=1, groups=c)  # (N, 2C, H, W) interleaved
    n, _, h, w = g.shape
    g = g.view(n, c, 2, h, w)
    return torch.cat([g[:, :, 0], g[:, :, 1]], dim=1)


def temporal_difference(maps: torch.Tensor, segment_len: int, delta_t: int) -> torch.Tensor:
    """``(B, L, C, H, W)`` maps of ``L >= segment_len + delta_t`` consecutive frames ->
    ``(B, segment_len, C, H, W)``: ``maps[:, t + delta_t] - maps[:, t]`` for
    ``t < segment_len`` (segment ``t`` and segment ``t + Delta t``, frame by frame)."""
    if maps.shape[1] < segment_len + delta_t:
        raise ValueError(f"need {segment_len + delta_t} frames for segment_len {segment_len} and "
                         f"delta_t {delta_t}, got {maps.shape[1]}")
    return maps[:, delta_t:delta_t + segment_len] - maps[:, :segment_len]


class OFFUnit(nn.Module):
    """One level's OFF unit: ``(B, L, C, H, W)`` maps -> ``(B, T, K, H, W)`` motion maps."""

    def __init__(self, in_channels: int, reduction: int = 4):
        super().__init__()
        k = max(8, in_channels // max(1, int(reduction)))
        self.out_channels = k
        self.reduce = nn.Sequential(nn.Conv2d(in_channels, k, 1, bias=False), nn.BatchNorm2d(k), nn.ReLU(inplace=True))
        self.fuse = nn.Sequential(nn.Conv2d(3 * k, k, 3, padding=1, bias=False), nn.BatchNorm2d(k),
                                  nn.ReLU(inplace=True))
        # constant kernels as a buffer: moved with the module, not copied to the device per
        # forward; not persistent (checkpoints keep their keys)
        self.register_buffer("sobel_kernels", torch.tensor([SOBEL_X, SOBEL_Y]), persistent=False)

    def forward(self, maps: torch.Tensor, segment_len: int, delta_t: int) -> torch.Tensor:
        b, length, c, h, w = maps.shape
        r = self.reduce(maps.reshape(b * length, c, h, w)).view(b, length, -1, h, w)
        first = r[:, :segment_len]  # segment t
        grads = sobel(first.reshape(b * segment_len, -1, h, w), self.sobel_kernels)
        diff = temporal_difference(r, segment_len, delta_t).reshape(b * segment_len, -1, h, w)
        out = self.fuse(torch.cat([grads, diff], dim=1))
        return out.view(b, segment_len, -1, h, w)


class MotionStream(nn.Module):
    """OFF units on every level; the motion feature is the concatenation of the levels'
    globally pooled motion maps, averaged over the segment's frames."""

    def __init__(self, level_channels: Sequence[int], reduction: int = 4):
        super().__init__()
        self.units = nn.ModuleList(OFFUnit(c, reduction) for c in level_channels)
        self.level_channels = [u.out_channels for u in self.units]
        self.out_dim = sum(self.level_channels)

    def forward(self, level_maps: Sequence[torch.Tensor], segment_len: int, delta_t: int):
        """``level_maps``: per level ``(B, L, C_i, h_i, w_i)``. Returns ``(feature (B, D),
        [time-averaged motion map (B, K_i, h_i, w_i) per level])``."""
        maps: List[torch.Tensor] = []
        pooled = []
        for unit, x in zip(self.units, level_maps):
            m = unit(x, segment_len, delta_t)  # (B, T, K, h, w)
            maps.append(m.mean(dim=1))
            pooled.append(m.mean(dim=(1, 3, 4)))
        return torch.cat(pooled, dim=1), maps
