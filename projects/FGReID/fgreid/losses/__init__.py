"""FGReID losses (registered in ``fastreid_ext``'s loss registry on import)."""
from .fgreid_losses import (
    AveragedCrossEntropyLoss,
    KLConsistencyLoss,
    SatisfiedRankLoss,
    VarianceLoss,
)
from .functional import (
    averaged_cross_entropy,
    kl_consistency,
    satisfied_rank,
    satisfied_rank_can_rank,
    variance_regularization,
)

__all__ = [
    "AveragedCrossEntropyLoss",
    "KLConsistencyLoss",
    "SatisfiedRankLoss",
    "VarianceLoss",
    "averaged_cross_entropy",
    "kl_consistency",
    "satisfied_rank",
    "satisfied_rank_can_rank",
    "variance_regularization",
]
