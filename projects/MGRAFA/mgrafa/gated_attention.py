"""SE- and CBAM-style attention on the frame maps, used under the multi-granularity design for
Table 5 of the MG-RAFA paper ("SE (MG)", "CBAM (MG)").

The paper applies these modules "on the extracted feature maps F_t" and then (as for its
Baseline) aggregates by spatio-temporal averaging; it gives no further detail. Here each
module gates the nodes of one channel group of every frame (SE: per-frame channel gate,
Hu et al. 2018; CBAM: per-frame channel then spatial gate, Woo et al. 2018) and the gated
nodes are averaged. Each returns the node weights ``(B, C, K)`` so that ``v = sum_k w_k x_k``
like the softmax attention (here the weights of a channel sum to the mean gate, not to 1).
"""
from __future__ import annotations

from typing import Tuple

import torch
from torch import nn

from .nodes import to_nodes
from .rafa import reduced


class SEGate(nn.Module):
    """Squeeze-and-excitation channel gate per frame: ``g_t = sigmoid(W2 ReLU(W1 mean_hw F_t))``."""

    def __init__(self, channels: int, reduction: int = 16):
        super().__init__()
        hidden = reduced(channels, reduction)
        self.fc = nn.Sequential(nn.Linear(channels, hidden), nn.ReLU(inplace=True),
                                nn.Linear(hidden, channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, T, C, h, w)`` -> gates ``(B, T, C, 1, 1)``."""
        return torch.sigmoid(self.fc(x.mean(dim=(3, 4))))[..., None, None]


class CBAMGate(nn.Module):
    """CBAM gate per frame: channel gate from the average- and max-pooled maps through a shared
    MLP, then a spatial gate from a 7x7 conv over the channel mean and max."""

    def __init__(self, channels: int, reduction: int = 16, kernel_size: int = 7):
        super().__init__()
        hidden = reduced(channels, reduction)
        self.mlp = nn.Sequential(nn.Linear(channels, hidden), nn.ReLU(inplace=True),
                                 nn.Linear(hidden, channels))
        self.spatial = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, T, C, h, w)`` -> gates ``(B, T, C, h, w)`` (channel gate x spatial gate)."""
        b, t, c, h, w = x.shape
        g_c = torch.sigmoid(self.mlp(x.mean(dim=(3, 4))) + self.mlp(x.amax(dim=(3, 4))))
        y = (x * g_c[..., None, None]).reshape(b * t, c, h, w)
        s = torch.cat([y.mean(dim=1, keepdim=True), y.amax(dim=1, keepdim=True)], dim=1)
        g_s = torch.sigmoid(self.spatial(s)).reshape(b, t, 1, h, w)
        return g_c[..., None, None] * g_s


class GatedAverage(nn.Module):
    """Gate the nodes of a group with ``gate`` and average them over all ``K`` nodes."""

    def __init__(self, gate: nn.Module):
        super().__init__()
        self.gate = gate

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """``(B, T, C, h, w)`` -> ``v`` ``(B, C)`` and node weights ``(B, C, K)``."""
        gates = self.gate(x).expand_as(x)
        weights = to_nodes(gates) / float(x.shape[1] * x.shape[3] * x.shape[4])
        return (weights * to_nodes(x)).sum(dim=-1), weights
