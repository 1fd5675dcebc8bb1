"""Temporal aggregations: per-frame maps ``(B, T, C, h, w)`` -> clip feature, frame / node
weights, optional scores and declared diagnostics (the contract: :mod:`.base`).

The core registers ``avg`` (:class:`AvgPooling`) and ``attention`` (:class:`TemporalAttention`,
Gao & Nevatia); projects register theirs when imported.
"""
from .avg import AvgPooling
from .base import (
    AGGREGATION_REGISTRY,
    FRAME_WEIGHTS_KEY,
    SCORES_KEY,
    AggregationOutput,
    TemporalAggregation,
    aggregation_of,
    build_aggregation,
    frame_share,
)
from .temporal_attention import TemporalAttention, attention_diagnostics, temporal_weighted_sum

__all__ = ["AGGREGATION_REGISTRY", "AggregationOutput", "TemporalAggregation", "build_aggregation",
           "aggregation_of", "frame_share", "SCORES_KEY", "FRAME_WEIGHTS_KEY", "AvgPooling",
           "TemporalAttention", "attention_diagnostics", "temporal_weighted_sum"]
