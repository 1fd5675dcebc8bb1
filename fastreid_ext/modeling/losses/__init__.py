"""Loss registry and the losses shared by every method (see :mod:`.registry`)."""
from .registry import LOSS_REGISTRY, LossSet, ReIDLoss, build_losses, get_loss_class, known_losses
from . import host_losses  # noqa: F401  (registers the host's CE / triplet / circle / cosface)

__all__ = ["LOSS_REGISTRY", "LossSet", "ReIDLoss", "build_losses", "get_loss_class", "known_losses"]
