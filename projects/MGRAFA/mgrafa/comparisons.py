"""Comparison rows of the MG-RAFA paper: non-local refinement (Table 4, NL(S) and
NL(ST)) and relation-aware global attention RGA-SC (Table 5, "RGA-SC (MG)").

Table 4: "a non-local module on the feature maps F_t for feature refinement followed by
spatio-temporal average pooling; NL(ST) performs non-local on all the spatio-temporal features,
NL(S) within each frame". :class:`NonLocalRefine` is the embedded-Gaussian non-local block
(Wang et al. 2018): ``z = x + BN(W_z softmax(theta(x)^T phi(x)) g(x))`` with inner channels
``C / 2`` and the last BN's gamma at 0 (the block starts as the identity).

Table 5: attention modules "on the extracted feature maps F_t", then (as the Baseline)
spatio-temporal averaging. :class:`RGAGate` is RGA-SC (Zhang et al. 2020, same authors): per
frame a spatial relation-aware attention (RGA-S) followed by a channel one (RGA-C). For node
``i`` the relation vector stacks ``r_i = [R(i, :), R(:, i)]`` of the pairwise affinities
``R = theta(x)^T phi(x)``; the attention is ``sigmoid(W_2 ReLU(W_1 [mean_c g(x_i), psi(r_i)]))``.
Embeddings are 1x1 conv + BN + ReLU with the reduction ``s``. Under the multi-granularity design
each channel group gets its own gate at its own resolution (:class:`mgrafa.gated_attention.GatedAverage`).
"""
from __future__ import annotations

from typing import Sequence, Tuple

import torch
from torch import nn

from .nodes import check_clip
from .rafa import reduced

__all__ = ["NonLocalRefine", "RGAGate", "NL_SCOPES"]

#: ``spatial`` = NL(S) (within each frame), ``spatiotemporal`` = NL(ST) (over all T*H*W nodes)
NL_SCOPES = ("spatial", "spatiotemporal")


class NonLocalRefine(nn.Module):
    """Embedded-Gaussian non-local block on ``(B, T, C, H, W)`` frame maps (Table 4).

    Args:
        channels: ``C``.
        scope: ``spatial`` (attention within each frame) or ``spatiotemporal`` (all nodes).
    """

    def __init__(self, channels: int, scope: str = "spatial"):
        super().__init__()
        if scope not in NL_SCOPES:
            raise KeyError(f"unknown non-local scope {scope!r}; known: {NL_SCOPES}")
        self.scope = scope
        inner = max(1, channels // 2)
        self.theta = nn.Conv1d(channels, inner, 1)
        self.phi = nn.Conv1d(channels, inner, 1)
        self.g = nn.Conv1d(channels, inner, 1)
        self.w_z = nn.Sequential(nn.Conv1d(inner, channels, 1, bias=False), nn.BatchNorm1d(channels))
        nn.init.zeros_(self.w_z[1].weight)  # starts as the identity

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, T, C, H, W) -> (B, T, C, H, W)`` (a new tensor)."""
        check_clip(x)
        b, t, c, h, w = x.shape
        if self.scope == "spatial":
            nodes = x.reshape(b * t, c, h * w)  # (B*T, C, HW)
        else:
            nodes = x.permute(0, 2, 1, 3, 4).reshape(b, c, t * h * w)  # (B, C, THW)
        q, k, v = self.theta(nodes), self.phi(nodes), self.g(nodes)  # (N, C/2, K)
        att = torch.softmax(torch.bmm(q.transpose(1, 2), k), dim=-1)  # (N, K, K)
        z = nodes + self.w_z(torch.bmm(v, att.transpose(1, 2)))  # (N, C, K)
        if self.scope == "spatial":
            return z.reshape(b, t, c, h, w)
        return z.reshape(b, c, t, h, w).permute(0, 2, 1, 3, 4)


class _EmbedBNReLU(nn.Sequential):
    def __init__(self, cin: int, cout: int):
        super().__init__(nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class _RelationAttention(nn.Module):
    """One RGA branch over ``n`` nodes of ``d``-dim features, input ``(N, d, n, 1)``;
    returns the attention ``(N, 1, n, 1)``."""

    def __init__(self, d: int, n: int, reduction: int):
        super().__init__()
        d_s = reduced(d, reduction)
        self.theta = _EmbedBNReLU(d, d_s)
        self.phi = _EmbedBNReLU(d, d_s)
        self.gx = _EmbedBNReLU(d, d_s)
        self.gr = _EmbedBNReLU(2 * n, reduced(2 * n, reduction))
        joint = 1 + reduced(2 * n, reduction)
        self.w = nn.Sequential(_EmbedBNReLU(joint, reduced(joint, reduction)),
                               nn.Conv2d(reduced(joint, reduction), 1, 1))

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        q = self.theta(f).flatten(2)  # (N, d/s, n)
        k = self.phi(f).flatten(2)
        rel = torch.bmm(q.transpose(1, 2), k)  # (N, n, n): R(i, j)
        r = torch.cat([rel, rel.transpose(1, 2)], dim=2)  # row i: [R(i, :), R(:, i)] -> (N, n, 2n)
        r = r.transpose(1, 2).unsqueeze(-1)  # (N, 2n, n, 1)
        joint = torch.cat([self.gx(f).mean(dim=1, keepdim=True), self.gr(r)], dim=1)
        return torch.sigmoid(self.w(joint))  # (N, 1, n, 1)


class RGAGate(nn.Module):
    """RGA-SC gate per frame: ``(B, T, C, h, w) -> (B, T, C, h, w)`` gates (spatial x channel).

    Args:
        channels: ``C`` of the group; size: its ``(h, w)``; reduction: ``s``.
    """

    def __init__(self, channels: int, size: Sequence[int], reduction: int = 8):
        super().__init__()
        self.size: Tuple[int, int] = (int(size[0]), int(size[1]))
        n = self.size[0] * self.size[1]
        self.spatial = _RelationAttention(channels, n, reduction)   # nodes = positions, C-dim
        self.channel = _RelationAttention(n, channels, reduction)   # nodes = channels, HW-dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_clip(x)
        b, t, c, h, w = x.shape
        if (h, w) != self.size:
            raise ValueError(f"RGAGate built for {self.size} maps, got {(h, w)}")
        f = x.reshape(b * t, c, h * w, 1)
        g_s = self.spatial(f).reshape(b * t, 1, h * w, 1)  # per position
        y = f * g_s
        g_c = self.channel(y.transpose(1, 2)).reshape(b * t, c, 1, 1)  # per channel
        return (g_s * g_c).reshape(b, t, c, h, w)
