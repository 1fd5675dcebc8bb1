"""Differentiable region sampling of MGRe (Eq. (2), (4), (5)).

Coordinates: a feature map of width ``W`` spans ``[0, W]``; pixel ``m`` (0-based) has its centre
at ``m + 1/2``. A region is ``(c_x, c_y, l_1, l_2)`` with the centre ``c = C + dC`` and the
size ``(l_1, l_2)`` as fractions of the map (Eq. (2) divided by ``W`` / ``H``). Output pixel
``j`` (centre ``j + 1/2``) of an ``N x M`` sample reads the source point (Eq. (4))

    x_s = c_x W + (j + 1/2 - M/2) l_1 W / M,   y_s = c_y H + (i + 1/2 - N/2) l_2 H / N

with bilinear weights ``max(0, 1 - |x_s - (m + 1/2)|) max(0, 1 - |y_s - (n + 1/2)|)`` (Eq. (5));
points outside the map read zeros (``padding_mode="border"``: the nearest border pixel). This
is exactly ``affine_grid`` + ``grid_sample`` (``align_corners=False``) with
``theta = [[l_1, 0, 2 c_x - 1], [0, l_2, 2 c_y - 1]]``.
"""
from __future__ import annotations

from typing import Sequence, Tuple

import torch
import torch.nn.functional as F

__all__ = ["region_theta", "sample_region", "region_corners"]


def region_theta(centers: torch.Tensor, sizes: torch.Tensor) -> torch.Tensor:
    """``(B, 2, 3)`` affine matrices of regions with ``centers`` ``(B, 2)`` = ``(c_x, c_y)`` and
    ``sizes`` ``(B, 2)`` = ``(l_1, l_2)``, all in fractions of the map (Eq. (4))."""
    b = centers.shape[0]
    theta = centers.new_zeros(b, 2, 3)
    theta[:, 0, 0] = sizes[:, 0]
    theta[:, 1, 1] = sizes[:, 1]
    theta[:, 0, 2] = 2 * centers[:, 0] - 1
    theta[:, 1, 2] = 2 * centers[:, 1] - 1
    return theta


def sample_region(maps: torch.Tensor, centers: torch.Tensor, sizes: torch.Tensor,
                  out_size: Sequence[int], padding_mode: str = "zeros") -> torch.Tensor:
    """Bilinearly sample one region per map (Eq. (4)-(5)).

    Args:
        maps: ``(B, C, H, W)`` feature maps.
        centers: ``(B, 2)`` region centres ``(c_x, c_y)`` in ``[0, 1]`` of the map.
        sizes: ``(B, 2)`` region ``(width, height)`` as fractions of the map.
        out_size: ``(N, M)`` = (height, width) of the sampled map.
        padding_mode: what points outside the map read: ``"zeros"`` (Eq. (5) literally) or
            ``"border"`` (the nearest border pixel, so a region partly off the map still
            gets a gradient that moves it back).

    Returns:
        ``(B, C, N, M)``; differentiable w.r.t. ``maps``, ``centers`` and ``sizes``.
    """
    if maps.dim() != 4:
        raise ValueError(f"maps must be (B, C, H, W), got {tuple(maps.shape)}")
    if padding_mode not in ("zeros", "border"):
        raise ValueError(f"padding_mode must be 'zeros' or 'border', got {padding_mode!r}")
    n, m = int(out_size[0]), int(out_size[1])
    # Sampled in (at least) float32 with autocast off: half-precision coordinates quantise the
    # region positions, and affine_grid has no half / bfloat16 CPU kernel (CPU autocast fails).
    dtype = torch.promote_types(maps.dtype, torch.float32)
    with torch.autocast(device_type=maps.device.type, enabled=False):
        theta = region_theta(centers.to(dtype), sizes.to(dtype))
        grid = F.affine_grid(theta, [maps.shape[0], maps.shape[1], n, m], align_corners=False)
        return F.grid_sample(maps.to(dtype), grid, mode="bilinear", padding_mode=padding_mode,
                             align_corners=False)


def region_corners(centers: torch.Tensor, sizes: torch.Tensor) -> Tuple[torch.Tensor, ...]:
    """Eq. (2) in fractions of the map: ``(x_min, x_max, y_min, y_max)``, each shaped like
    ``centers[..., 0]``."""
    half_w, half_h = sizes[..., 0] / 2, sizes[..., 1] / 2
    cx, cy = centers[..., 0], centers[..., 1]
    return cx - half_w, cx + half_w, cy - half_h, cy + half_h
