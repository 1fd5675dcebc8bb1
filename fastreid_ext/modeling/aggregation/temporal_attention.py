"""Temporal attention pooling of Gao & Nevatia (2018), the base model of the video-baseline paper
("Video Person Re-ID: Fantastic Techniques and Where to Find Them", Methodology, Fig. 2).

Per frame, a Conv2d whose kernel covers the whole feature map gives a ``D``-vector (+ ReLU);
a Conv1d over time (kernel 3, padding 1, + ReLU) gives one score per frame; a softmax over
``T`` turns the scores into weights for a weighted sum of the per-frame GAP features.
Registered as ``MODEL.TEMPORAL.AGG attention``.

The conv kernel is the frame-map size for ``INPUT.SIZE_TRAIN``, measured once on the built
backbone (e.g. 16x8 for 256x128 with last stride 1); other map sizes are adaptively pooled to it.

:meth:`TemporalAttention.diagnostics` reports, for the last training batch, whether the
attention is alive: ``att_dead_frac`` (fraction of clips whose pre-softmax scores are all 0,
i.e. a plain average with no gradient into the attention), ``att_entropy`` (mean entropy of the
softmax weights; ``log T`` for a uniform average) and ``att_entropy_norm`` (the same divided by
``log T``); see :mod:`fastreid_ext.modeling.losses.attention_loss` for why the faithful
attention loss (``MODEL.LOSSES.ATT.TARGET scores``) drives the scores to 0.
"""
from __future__ import annotations

import math
from typing import Dict, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from fastreid.config import configurable
from fastreid.layers.weight_init import weights_init_kaiming

from .base import AGGREGATION_REGISTRY, AggregationOutput, TemporalAggregation

__all__ = ["TemporalAttention", "temporal_weighted_sum", "attention_diagnostics", "ATTENTION_INITS",
           "SCORE_ACTIVATIONS"]

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


@AGGREGATION_REGISTRY.register_as("attention")
class TemporalAttention(TemporalAggregation):
    """Scores and softmax weights of the frames of a clip, and the weighted sum of their GAP
    features.

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

    @configurable
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
        self._last: Optional[Tuple[torch.Tensor, torch.Tensor]] = None  # last training (scores, weights)

    @classmethod
    def from_config(cls, cfg, channels: int, map_size: Sequence[int]):
        t = cfg.MODEL.TEMPORAL
        att = cfg.MODEL.LOSSES.ATT
        if "AttentionLoss" in cfg.MODEL.LOSSES.NAME and att.TARGET == "scores" \
                and t.ATT_SCORE_ACT == "none":
            raise ValueError("MODEL.LOSSES.ATT.TARGET 'scores' needs MODEL.TEMPORAL.ATT_SCORE_ACT "
                             "'relu': without it the scores are unbounded below and so is the loss")
        return {"in_channels": channels, "hidden_dim": t.ATT_DIM, "map_size": map_size,
                "init": t.ATT_INIT, "score_act": t.ATT_SCORE_ACT}

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

    def forward(self, maps: torch.Tensor) -> AggregationOutput:
        """``features`` ``(B, C)`` = ``sum_t w_t GAP(maps_t)``; ``frame_weights`` ``w`` and
        ``scores``, both ``(B, T)``; the weights sum to 1 over ``T``."""
        frame_feats = maps.mean(dim=(-2, -1))  # (B, T, C) per-frame GAP
        scores = self.scores(maps)
        weights = F.softmax(scores, dim=1)
        if self.training:
            self._last = (scores.detach(), weights.detach())
        return AggregationOutput(features=temporal_weighted_sum(frame_feats, weights),
                                 frame_weights=weights, scores=scores)

    def diagnostics(self, erased: Optional[torch.Tensor] = None) -> Dict[str, float]:
        """:func:`attention_diagnostics` of the last training forward (``{}`` before it)."""
        if self._last is None:
            return {}
        return attention_diagnostics(*self._last, erased=erased)


def attention_diagnostics(scores: torch.Tensor, weights: torch.Tensor,
                          erased: Optional[torch.Tensor] = None) -> Dict[str, float]:
    """Plain-float health measures of temporal attention ``scores`` / softmax ``weights``
    (both ``(B, T)``): fraction of clips whose scores are all zero (``att_dead_frac``) or all
    equal (``att_flat_frac``: the weights are exactly ``1/T``), mean
    entropy of the weights (``att_entropy``), that entropy over ``log T`` (``att_entropy_norm``;
    ``T = 1`` gives 0) and the mean score (``att_score_mean``). With ``erased`` flags
    ``(B, T)`` and at least one erased frame, also ``att_erased_weight``: the mean weight of an
    erased frame times ``T`` (1 = as in a plain average, < 1 = the attention avoids them)."""
    if scores.shape != weights.shape or scores.dim() != 2:
        raise ValueError(f"scores {tuple(scores.shape)} and weights {tuple(weights.shape)} "
                         "must both be (B, T)")
    scores, weights = scores.detach().double(), weights.detach().double()
    t = scores.shape[1]
    dead = (scores.abs().amax(dim=1) == 0).double().mean().item()
    flat = ((scores.amax(dim=1) - scores.amin(dim=1)) == 0).double().mean().item()
    entropy = -(weights * weights.clamp_min(1e-300).log()).sum(dim=1).mean().item()
    out = {
        "att_dead_frac": dead,
        "att_flat_frac": flat,
        "att_entropy": entropy,
        "att_entropy_norm": entropy / math.log(t) if t > 1 else 0.0,
        "att_score_mean": scores.mean().item(),
    }
    if erased is not None:
        if erased.shape != scores.shape:
            raise ValueError(f"erased {tuple(erased.shape)} must be (B, T) = {tuple(scores.shape)}")
        mask = erased.detach().to(device=weights.device, dtype=torch.bool)
        if bool(mask.any()):
            out["att_erased_weight"] = weights[mask].mean().item() * t
    return out
