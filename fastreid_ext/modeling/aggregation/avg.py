"""Temporal average pooling (``MODEL.TEMPORAL.AGG avg``): the mean over ``T`` of the per-frame
global-average-pooled features, every frame weighted ``1 / T`` (the video-baseline paper's
temporal pooling, Fig. 2)."""
from __future__ import annotations

from typing import Sequence

import torch

from fastreid.config import configurable

from .base import AGGREGATION_REGISTRY, AggregationOutput, TemporalAggregation

__all__ = ["AvgPooling"]


@AGGREGATION_REGISTRY.register_as("avg")
class AvgPooling(TemporalAggregation):
    """``(B, T, C, h, w)`` -> mean over ``T`` of the per-frame GAP features ``(B, C)``."""

    fixed_weights = True

    @configurable
    def __init__(self):
        super().__init__()

    @classmethod
    def from_config(cls, cfg, channels: int, map_size: Sequence[int]):
        return {}

    def forward(self, maps: torch.Tensor) -> AggregationOutput:
        frame_feats = maps.mean(dim=(-2, -1))  # (B, T, C) per-frame GAP
        b, t = frame_feats.shape[:2]
        return AggregationOutput(features=frame_feats.mean(dim=1),
                                 frame_weights=frame_feats.new_full((b, t), 1.0 / t))
