"""Location module (the MGRe paper, Eq. (1)), location loss (Eq. (3)) and keypoint boxes.

The location module is "convolution, ReLU, batch normalisation, max pooling and fully
connected layers" (section 3.1); sizes are not stated. Ours: 3x3 conv ``C -> hidden`` (no
bias), ReLU, BatchNorm2d, adaptive max pooling to ``pool`` (``(4, 2)`` by default), one Linear
``hidden * 4 * 2 -> 4 R`` whose bias holds the Table 1 priors. Units: fractions of the map
(Eq. (2) divided by ``W``, ``H``), the scale of Eq. (3)'s 0.05 margin and of the keypoints.
"""
from __future__ import annotations

import math
from typing import Dict, Sequence, Tuple

import torch
import torch.distributed as dist
from torch import nn

from fastreid_ext.modeling.losses.gather import distributed

from .sampling import region_corners

__all__ = ["LocationModule", "location_loss_terms", "location_loss", "boxes_from_keypoints",
           "box_iou", "offmap_fraction", "LOCATION_MARGIN", "LOCATION_PARAMETRIZATIONS"]

#: the boundary margin of Eq. (3)
LOCATION_MARGIN = 0.05


#: ``MODEL.MGRE.LOC_PARAM`` values
LOCATION_PARAMETRIZATIONS = ("bounded", "paper")


def _logit(p: torch.Tensor) -> torch.Tensor:
    return torch.log(p) - torch.log1p(-p)


class LocationModule(nn.Module):
    """Eq. (1): ``L(G)`` -> the centre and size of ``R`` regions (fractions of the map).

    Two readings of Eq. (1)'s output (``parametrization``):

    - ``"paper"``: ``c = C + tanh(raw_c)``, ``l = exp(raw_l)`` exactly as Eq. (1) writes it. Nothing
      keeps a region on the map: centres reach ``C +- 1`` and sizes are unbounded, so a region
      can drift off the map, where it samples the padding and gets no gradient back.
    - ``"bounded"`` (default): ``l = l_min + (1 - l_min) sigmoid(raw_l)`` (at most the whole map)
      and ``c = l / 2 + (1 - l) sigmoid(raw_c)``, so the whole box always lies inside the map.
      Same four outputs per region, same roles (centre offset, size), bounded.

    The Linear starts at the Table 1 priors (its bias; a prior size of the full map is clipped to
    ``max_prior`` in the bounded reading) with small random weights (``init_std``, so its conv gets
    gradient from the first step; 0 gives exactly the priors for every input).

    Args:
        in_channels: channels of the stage map ``G``.
        priors: ``R`` tuples ``(C_x, C_y, l1, l2)`` (centre and prior size, fractions of the map).
        hidden: channels of the conv layer.
        pool: output size of the adaptive max pooling.
        parametrization: ``"bounded"`` or ``"paper"``.
        init_std: std of the Linear's initial weights.
        min_size: ``l_min`` of the bounded reading.
        max_prior: largest prior size in the bounded reading (the sigmoid never reaches 1).
    """

    def __init__(self, in_channels: int, priors: Sequence[Sequence[float]], hidden: int = 128,
                 pool: Sequence[int] = (4, 2), parametrization: str = "bounded", init_std: float = 1e-3,
                 min_size: float = 0.02, max_prior: float = 0.95):
        super().__init__()
        if len(priors) == 0:
            raise ValueError("a location module needs at least one region prior")
        if parametrization not in LOCATION_PARAMETRIZATIONS:
            raise ValueError(f"unknown location parametrization {parametrization!r}; "
                             f"known: {', '.join(LOCATION_PARAMETRIZATIONS)}")
        if not 0.0 < min_size < max_prior < 1.0:
            raise ValueError(f"need 0 < min_size < max_prior < 1, got {min_size}, {max_prior}")
        self.num_regions = len(priors)
        self.parametrization = parametrization
        self.min_size = float(min_size)
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, hidden, 3, padding=1, bias=False),
            nn.ReLU(inplace=True),
            nn.BatchNorm2d(hidden),
            nn.AdaptiveMaxPool2d(tuple(int(p) for p in pool)),
        )
        self.fc = nn.Linear(hidden * int(pool[0]) * int(pool[1]), 4 * self.num_regions)
        pri = torch.tensor([list(p) for p in priors], dtype=torch.float64)  # (R, 4)
        if pri.shape[1] != 4 or bool((pri[:, 2:] <= 0).any()):
            raise ValueError(f"priors must be (C_x, C_y, l1 > 0, l2 > 0) tuples, got {priors}")
        self.register_buffer("prior_centers", pri[:, :2].float().clone(), persistent=False)
        bias = torch.zeros(self.num_regions, 4, dtype=torch.float64)
        if parametrization == "paper":
            bias[:, 2:] = pri[:, 2:].log()
        else:
            size = pri[:, 2:].clamp(min_size + 1e-3, max_prior)
            bias[:, 2:] = _logit((size - min_size) / (1 - min_size))
            frac = ((pri[:, :2] - size / 2) / (1 - size)).clamp(0.02, 0.98)
            bias[:, :2] = _logit(frac)
        with torch.no_grad():
            if init_std > 0:
                nn.init.normal_(self.fc.weight, std=float(init_std))
            else:
                self.fc.weight.zero_()
            self.fc.bias.copy_(bias.float().view(-1))

    def boxes(self, raw: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Eq. (1) outputs ``raw`` ``(..., R, 4)`` -> ``(centers, sizes)`` ``(..., R, 2)``."""
        if self.parametrization == "paper":
            return self.prior_centers.to(raw) + torch.tanh(raw[..., :2]), torch.exp(raw[..., 2:])
        sizes = self.min_size + (1 - self.min_size) * torch.sigmoid(raw[..., 2:])
        centers = sizes / 2 + (1 - sizes) * torch.sigmoid(raw[..., :2])
        return centers, sizes

    def forward(self, maps: torch.Tensor) -> Dict[str, torch.Tensor]:
        """``maps`` ``(B, C, H, W)`` -> ``raw`` ``(B, R, 4)`` (Eq. (1) outputs), ``centers``
        and ``sizes`` ``(B, R, 2)`` (fractions of the map, see :meth:`boxes`)."""
        raw = self.fc(self.body(maps).flatten(1)).view(maps.shape[0], self.num_regions, 4)
        centers, sizes = self.boxes(raw)
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
    images that have at least one visible joint in one of them (0 when none has).

    Under DDP the average is over every rank's images: the count is summed over the ranks and
    the rank's sum scaled by the number of ranks, so that DDP's gradient average gives the
    gradient of one process on the whole batch (ranks may hold different counts)."""
    terms, valid = location_loss_terms(centers, sizes, keypoints, region_joints, margin)
    images = valid.any(dim=1).sum().to(terms.dtype)
    scale = 1.0
    if distributed():
        dist.all_reduce(images)
        scale = float(dist.get_world_size())
    return terms.sum() * scale / images.clamp(min=1)


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


def box_iou(centers_a: torch.Tensor, sizes_a: torch.Tensor, centers_b: torch.Tensor,
            sizes_b: torch.Tensor) -> torch.Tensor:
    """IoU of boxes given by centre and size (``(..., 2)`` each) -> ``(...)``."""
    ax0, ax1, ay0, ay1 = region_corners(centers_a, sizes_a)
    bx0, bx1, by0, by1 = region_corners(centers_b, sizes_b)
    iw = (torch.minimum(ax1, bx1) - torch.maximum(ax0, bx0)).clamp(min=0)
    ih = (torch.minimum(ay1, by1) - torch.maximum(ay0, by0)).clamp(min=0)
    inter = iw * ih
    union = sizes_a[..., 0] * sizes_a[..., 1] + sizes_b[..., 0] * sizes_b[..., 1] - inter
    return inter / union.clamp(min=1e-12)


def offmap_fraction(centers: torch.Tensor, sizes: torch.Tensor) -> torch.Tensor:
    """Fraction of each box's area outside the map ``[0, 1]^2`` -> ``(...)``."""
    x0, x1, y0, y1 = region_corners(centers, sizes)
    iw = (x1.clamp(max=1) - x0.clamp(min=0)).clamp(min=0)
    ih = (y1.clamp(max=1) - y0.clamp(min=0)).clamp(min=0)
    area = sizes[..., 0] * sizes[..., 1]
    return (1 - iw * ih / area.clamp(min=1e-12)).clamp(0, 1)
