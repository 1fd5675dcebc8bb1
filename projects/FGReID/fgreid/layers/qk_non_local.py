"""Non-local block with a shared query/key projection (Q = K), Eq. (5)-(9) of the FGReID paper."""
from __future__ import annotations

from typing import Tuple

import torch
import torch.nn.functional as F
from torch import nn


class QKNonLocal(nn.Module):
    """Non-local block over all ``T * H * W`` positions of a clip.

    - Eq. (5): ``Q = K = L2norm(relu(theta(A1)))`` (normalised per position over the
      ``c_bar`` channels, as the authors' code), or separate ``phi`` for K when
      ``shared_qk=False`` (the "KQV" ablation of Table 8);
    - Eq. (6): ``V = relu(g(A1))``;
    - Eq. (7): ``W = softmax(Q^T K)`` row-wise, ``(T H W) x (T H W)``;
    - Eq. (8)-(9): ``A2 = w_z(W V) + A1`` with ``w_z`` zero-initialised, so the block is the
      identity at initialisation.

    All 1x1 convolutions are bias-free (``c* -> c*/4 -> c*``).
    """

    def __init__(self, in_channels: int, reduction: int = 4, shared_qk: bool = True):
        super().__init__()
        if in_channels % reduction != 0:
            raise ValueError(f"c*={in_channels} is not divisible by the reduction {reduction}")
        inter = in_channels // reduction
        self.shared_qk = shared_qk
        self.theta = nn.Conv2d(in_channels, inter, kernel_size=1, bias=False)
        self.phi = None if shared_qk else nn.Conv2d(in_channels, inter, kernel_size=1, bias=False)
        self.g = nn.Conv2d(in_channels, inter, kernel_size=1, bias=False)
        self.w_z = nn.Conv2d(inter, in_channels, kernel_size=1, bias=False)
        for conv in (self.theta, self.phi, self.g):
            if conv is not None:
                nn.init.kaiming_normal_(conv.weight, mode="fan_out")
        nn.init.zeros_(self.w_z.weight)

    def affinity(self, a1: torch.Tensor, frames_per_clip: int) -> torch.Tensor:
        """Eq. (5)+(7): the row-stochastic ``(B, THW, THW)`` affinity ``W``.

        Args:
            a1: ``(B * T, C, H, W)``.
        """
        q = self._embed(self.theta, a1, frames_per_clip)  # (B, THW, c_bar)
        k = q if self.phi is None else self._embed(self.phi, a1, frames_per_clip)
        return torch.bmm(q, k.transpose(1, 2)).softmax(dim=-1)

    def forward(self, a1: torch.Tensor, frames_per_clip: int) -> torch.Tensor:
        """``(B * T, C, H, W) -> (B * T, C, H, W)``."""
        h, w = a1.shape[2:]
        w_aff = self.affinity(a1, frames_per_clip)  # (B, THW, THW)
        v = _positions(F.relu(self.g(a1)), frames_per_clip)  # (B, THW, c_bar)
        v_avg = torch.bmm(w_aff, v)  # (B, THW, c_bar)
        v_avg = _frames(v_avg, frames_per_clip, (h, w))  # (B * T, c_bar, H, W)
        return self.w_z(v_avg) + a1

    @staticmethod
    def _embed(conv: nn.Conv2d, a1: torch.Tensor, frames_per_clip: int) -> torch.Tensor:
        return F.normalize(_positions(F.relu(conv(a1)), frames_per_clip), p=2, dim=-1)


def _positions(x: torch.Tensor, t: int) -> torch.Tensor:
    """``(B * T, C, H, W) -> (B, T * H * W, C)`` (clip-major frames)."""
    n, c, h, w = x.shape
    return x.reshape(n // t, t, c, h * w).permute(0, 1, 3, 2).reshape(n // t, t * h * w, c)


def _frames(x: torch.Tensor, t: int, hw: Tuple[int, int]) -> torch.Tensor:
    """Inverse of :func:`_positions`: ``(B, T * H * W, C) -> (B * T, C, H, W)``."""
    b, _, c = x.shape
    h, w = hw
    return x.reshape(b, t, h * w, c).permute(0, 1, 3, 2).reshape(b * t, c, h, w)
