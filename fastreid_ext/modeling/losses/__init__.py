"""Loss registry and the losses shared by every method (see :mod:`.registry`)."""
from . import host_losses  # noqa: F401  (registers the host's CE / triplet / circle / cosface)
from .attention_loss import AttentionLoss, attention_loss  # noqa: F401  (the video-baseline paper, Eq. 1)
from .center_loss import CenterLoss, center_loss  # noqa: F401
from .osm_loss import OSMLoss, osm_loss  # noqa: F401
from .registry import (
    LOSS_REGISTRY,
    LossSet,
    ReIDLoss,
    build_losses,
    get_loss_class,
    known_losses,
    pairwise_losses,
)

__all__ = ["LOSS_REGISTRY", "LossSet", "ReIDLoss", "build_losses", "get_loss_class", "known_losses",
           "pairwise_losses",
           "AttentionLoss", "attention_loss", "CenterLoss", "center_loss", "OSMLoss", "osm_loss"]
