"""Layers shared by the plugin's meta-architectures."""
from .temporal_attention import TemporalAttention, temporal_weighted_sum  # noqa: F401
