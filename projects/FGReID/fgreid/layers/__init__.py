"""FGReID building blocks (Eq. 1-10 of the FGReID paper)."""
from .fine_grained_attention import (
    MIN_SCOPES,
    attentive_pooling,
    channel_weights,
    fine_grained_attention,
    shift_to_nonnegative,
)
from .qk_non_local import QKNonLocal

__all__ = [
    "MIN_SCOPES",
    "QKNonLocal",
    "attentive_pooling",
    "channel_weights",
    "fine_grained_attention",
    "shift_to_nonnegative",
]
