"""Location module (paper 001, Eq. (1)), location loss (Eq. (3)) and keypoint boxes.

The location module is "convolution, ReLU, batch normalisation, max pooling and fully
connected layers" (section 3.1); sizes are not stated. Ours: 3x3 conv ``C -> hidden`` (no
bias), ReLU, BatchNorm2d, adaptive max pooling to ``pool`` (``(4, 2)`` by default), one Linear
``hidden * 4 * 2 -> 4 R``. The Linear's weights start at zero and its bias at
``(0, 0, log l1_prior, log l2_prior)``, so an untrained module returns the Table 1 priors.
"""
from __future__ import annotations

import math
from typing import Dict, Sequence, Tuple

import torch
from torch import nn

from .sampling import region_corners

__all__ = ["LocationModule", "location_loss_terms", "location_loss", "boxes_from_keypoints",
           "LOCATION_MARGIN"]

#: the boundary margin of Eq. (3)
LOCATION_MARGIN = 0.05


class LocationModule(nn.Module):
    """Eq. (1): ``(atanh dC_x, atanh dC_y, log l1, log l2) = L(G)`` for ``R`` regions.

    Args:
        in_channels: channels of the stage map ``G``.
        priors: ``R`` tuples ``(C_x, C_y, l1, l2)`` (centre and prior size, fractions of the map).
        hidden: channels of the conv layer.
        pool: output size of the adaptive max pooling.
    """

    def __init__(self, in_channels: int, priors: Sequence[Sequence[float]], hidden: int = 128,
                 pool: Sequence[int] = (4, 2)):
        super().__init__()
        if len(priors) == 0:
            raise ValueError("a location module needs at least one region prior")
        self.num_regions = len(priors)
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, hidden, 3, padding=1, bias=False),
            nn.ReLU(inplace=True),
            nn.BatchNorm2d(hidden),
            nn.AdaptiveMaxPool2d(tuple(int(p) for p in pool)),
        )
        self.fc = nn.Linear(hidden * int(pool[0]) * int(pool[1]), 4 * self.num_regions)
        pri = torch.tensor([list(p) for p in priors], dtype=torch.float32)  # (R, 4)
        if pri.shape[1] != 4 or bool((pri[:, 2:] <= 0).any()):
            raise ValueError(f"priors must be (C_x, C_y, l1 > 0, l2 > 0) tuples, got {priors}")
        self.register_buffer("prior_centers", pri[:, :2].clone(), persistent=False)
        with torch.no_grad():
            self.fc.weight.zero_()
            bias = torch.zeros(self.num_regions, 4)
            bias[:, 2:] = pri[:, 2:].log()
            self.fc.bias.copy_(bias.view(-1))

    def forward(self, maps: torch.Tensor) -> Dict[str, torch.Tensor]:
        """``maps`` ``(B, C, H, W)`` -> ``raw`` ``(B, R, 4)`` (Eq. (1) outputs), ``centers``
        ``(B, R, 2)`` = ``C + tanh(raw[..., :2])`` and ``sizes`` ``(B, R, 2)`` = ``exp(raw[..., 2:])``
        (fractions of the map)."""
        raw = self.fc(self.body(maps).flatten(1)).view(maps.shape[0], self.num_regions, 4)
        centers = self.prior_centers.unsqueeze(0) + torch.tanh(raw[..., :2])
        sizes = torch.exp(raw[..., 2:])
        return {"raw": raw, "centers": centers, "sizes": sizes}


def _visible_extent(keypoints: torch.Tensor, joints: Sequence[int]) -> Tuple[torch.Tensor, ...]:
    """Per image: min / max of the visible ``joints`` (``v > 0``) and whether any is visible.
    ``keypoints`` ``(B, 17, 3)``; returns ``(x_min, x_max, y_min, y_max, valid)`` each ``(B,)``."""
    kp = keypoints[:, list(joints)]  # (B, J, 3)
    vis = kp[..., 2] > 0
    inf = torch.full_like(kp[..., 0], math.inf)
    x_min = torch.where(vis, kp[..., 0], inf).amin(dim=1)
    x_max = torch.where(vis, kp[..., 0], -inf).amax(dim=1)
    y_min = torch.where(vis, kp[..., 1], inf).amin(dim=1)
    y_max = torch.where(vis, kp[..., 1], -inf).amax(dim=1)
    return x_min, x_max, y_min, y_max, vis.any(dim=1)


def location_loss_terms(centers: torch.Tensor, sizes: torch.Tensor, keypoints: torch.Tensor,
                        region_joints: Sequence[Sequence[int]],
                        margin: float = LOCATION_MARGIN) -> Tuple[torch.Tensor, torch.Tensor]:
    """Eq. (3) per image and region.

    Args:
        centers, sizes: ``(B, R, 2)`` predicted ``(c_x, c_y)`` and ``(l1, l2)`` (fractions).
        keypoints: ``(B, 17, 3)`` pseudo-label joints, ``x, y`` in ``[0, 1]``, ``v > 0`` visible.
        region_joints: ``R`` joint index lists (the sets ``I_p``).
        margin: the boundary margin (0.05 in the paper).

    Returns:
        ``(terms, valid)``: ``(B, R)`` values of
        ``[x_min - min X_p + m]^2 + [x_max - max X_p - m]^2 + [y_min - min Y_p + m]^2 +
        [y_max - max Y_p - m]^2`` (0 where the region has no visible joint) and the ``(B, R)``
        bool mask of regions with at least one visible joint.
    """
    if centers.shape[1] != len(region_joints):
        raise ValueError(f"{centers.shape[1]} regions predicted but {len(region_joints)} joint sets given")
    x0, x1, y0, y1 = region_corners(centers, sizes)  # each (B, R)
    terms, valid = [], []
    for r, joints in enumerate(region_joints):
        kx0, kx1, ky0, ky1, ok = _visible_extent(keypoints, joints)
        zero = torch.zeros_like(kx0)
        kx0, kx1 = torch.where(ok, kx0, zero), torch.where(ok, kx1, zero)
        ky0, ky1 = torch.where(ok, ky0, zero), torch.where(ok, ky1, zero)
        t = ((x0[:, r] - kx0 + margin) ** 2 + (x1[:, r] - kx1 - margin) ** 2
             + (y0[:, r] - ky0 + margin) ** 2 + (y1[:, r] - ky1 - margin) ** 2)
        terms.append(torch.where(ok, t, torch.zeros_like(t)))
        valid.append(ok)
    return torch.stack(terms, dim=1), torch.stack(valid, dim=1)


def location_loss(centers: torch.Tensor, sizes: torch.Tensor, keypoints: torch.Tensor,
                  region_joints: Sequence[Sequence[int]], margin: float = LOCATION_MARGIN) -> torch.Tensor:
    """``L_i^loc`` of one stage: Eq. (3) summed over the stage's regions, averaged over the
    images that have at least one visible joint in one of them (0 when none has)."""
    terms, valid = location_loss_terms(centers, sizes, keypoints, region_joints, margin)
    images = valid.any(dim=1).sum().clamp(min=1)
    return terms.sum() / images


def boxes_from_keypoints(keypoints: torch.Tensor, region_joints: Sequence[Sequence[int]],
                         prior_centers: torch.Tensor, prior_sizes: torch.Tensor,
                         margin: float = LOCATION_MARGIN, min_size: float = 1e-2) -> Tuple[torch.Tensor, torch.Tensor]:
    """Regions read off the pose pseudo labels ("MGRe w/o JO", Table 7): the box of the visible
    joints of each region grown by ``margin`` on every side (the minimiser of Eq. (3)); the
    prior box where a region has no visible joint.

    Args:
        keypoints: ``(B, 17, 3)``; prior_centers, prior_sizes: ``(R, 2)``.

    Returns:
        ``centers``, ``sizes``: ``(B, R, 2)``.
    """
    centers, sizes = [], []
    for r, joints in enumerate(region_joints):
        x0, x1, y0, y1, ok = _visible_extent(keypoints, joints)
        c = torch.stack([(x0 + x1) / 2, (y0 + y1) / 2], dim=1)
        s = torch.stack([x1 - x0 + 2 * margin, y1 - y0 + 2 * margin], dim=1).clamp(min=min_size)
        ok = ok.unsqueeze(1)
        centers.append(torch.where(ok, c, prior_centers[r].to(c)))
        sizes.append(torch.where(ok, s, prior_sizes[r].to(s)))
    return torch.stack(centers, dim=1), torch.stack(sizes, dim=1)
