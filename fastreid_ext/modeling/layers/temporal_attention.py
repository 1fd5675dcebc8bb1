"""Temporal attention pooling of Gao & Nevatia (2018), the base model of the video-baseline paper
("Video Person Re-ID: Fantastic Techniques and Where to Find Them", Methodology, Fig. 2).

Per frame, a Conv2d whose kernel covers the whole feature map gives a ``D``-vector (+ ReLU);
a Conv1d over time (kernel 3, padding 1, + ReLU) gives one score per frame; a softmax over
``T`` turns the scores into weights for a weighted sum of the per-frame GAP features.
"""
from __future__ import annotations

from typing import Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from fastreid.layers.weight_init import weights_init_kaiming

__all__ = ["TemporalAttention", "temporal_weighted_sum", "ATTENTION_INITS", "SCORE_ACTIVATIONS"]

#: ``MODEL.TEMPORAL.ATT_INIT``: how the two convs are initialised: ``fan_out`` (the host's
#: ``weights_init_kaiming``) or ``fan_in`` (the video-baseline public code,
#: ``tools/helplayer.py:12-15``: ``kaiming_normal_(mode='fan_in')``, zero bias)
ATTENTION_INITS = ("fan_out", "fan_in")
#: ``MODEL.TEMPORAL.ATT_SCORE_ACT``: activation of the temporal conv's output (the score)
SCORE_ACTIVATIONS = ("relu", "none")


def temporal_weighted_sum(frame_feats: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """``sum_t w_t f_t``: ``frame_feats`` ``(B, T, C)``, ``weights`` ``(B, T)`` -> ``(B, C)``."""
    if frame_feats.shape[:2] != weights.shape:
        raise ValueError(f"features {tuple(frame_feats.shape)} and weights "
                         f"{tuple(weights.shape)} disagree on (B, T)")
    return (frame_feats * weights.unsqueeze(-1)).sum(dim=1)


class TemporalAttention(nn.Module):
    """Scores and softmax weights of the frames of a clip.

    Args:
        in_channels: channels ``C`` of the frame feature maps (2048 for ResNet-50).
        hidden_dim: output channels of the spatial conv (256 in Gao & Nevatia;
            ``MODEL.TEMPORAL.ATT_DIM``).
        map_size: ``(h, w)`` of the frame feature maps = the spatial conv's kernel, e.g.
            ``(16, 8)`` for 256x128 inputs with a last-stride-1 ResNet (``(14, 7)`` for the
            224x112 inputs of the paper's code). Maps of another size (e.g. a test size that
            differs from the training size) are first resized to ``map_size`` by adaptive
            average pooling, which is the identity when the sizes match.
    """

    def __init__(self, in_channels: int, hidden_dim: int, map_size: Sequence[int],
                 init: str = "fan_out", score_act: str = "relu"):
        super().__init__()
        if init not in ATTENTION_INITS:
            raise ValueError(f"unknown MODEL.TEMPORAL.ATT_INIT {init!r}; known: {', '.join(ATTENTION_INITS)}")
        if score_act not in SCORE_ACTIVATIONS:
            raise ValueError(f"unknown MODEL.TEMPORAL.ATT_SCORE_ACT {score_act!r}; known: "
                             f"{', '.join(SCORE_ACTIVATIONS)}")
        self.score_act = score_act
        self.map_size: Tuple[int, int] = (int(map_size[0]), int(map_size[1]))
        self.spatial_conv = nn.Conv2d(in_channels, hidden_dim, kernel_size=self.map_size)
        self.temporal_conv = nn.Conv1d(hidden_dim, 1, kernel_size=3, padding=1)
        if init == "fan_out":
            self.spatial_conv.apply(weights_init_kaiming)
            self.temporal_conv.apply(weights_init_kaiming)
        else:
            for conv in (self.spatial_conv, self.temporal_conv):
                nn.init.kaiming_normal_(conv.weight, mode="fan_in", nonlinearity="relu")
                nn.init.zeros_(conv.bias)

    def scores(self, maps: torch.Tensor) -> torch.Tensor:
        """Pre-softmax attention scores ``(B, T)`` (>= 0, after the ReLU) of maps
        ``(B, T, C, h, w)``; these are what the attention loss (the video-baseline paper, Eq. (1)) penalises."""
        b, t, c, h, w = maps.shape
        x = maps.reshape(b * t, c, h, w)
        if (h, w) != self.map_size:
            x = F.adaptive_avg_pool2d(x, self.map_size)
        x = F.relu(self.spatial_conv(x))                    # (B*T, D, 1, 1)
        x = x.reshape(b, t, -1).transpose(1, 2)              # (B, D, T)
        x = self.temporal_conv(x)                            # (B, 1, T)
        if self.score_act == "relu":
            x = F.relu(x)
        return x.reshape(b, t)                               # (B, T)

    def forward(self, maps: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Returns ``(weights, scores)``, both ``(B, T)``; weights sum to 1 over ``T``."""
        scores = self.scores(maps)
        return F.softmax(scores, dim=1), scores
