"""FGReID (Pathak, "Fine-Grained Re-Identification") for ``fastreid_ext``.

Importing this package registers the ``FGReID`` meta-architecture and the losses
``AveragedCrossEntropyLoss``, ``VarianceLoss``, ``KLConsistencyLoss``, ``SatisfiedRankLoss``.
"""
import fastreid_ext  # noqa: F401  (host compat shims and shared registries first)

from . import (
    losses,  # noqa: F401
    modeling,  # noqa: F401
)
from .config import add_fgreid_config
from .modeling import FGReID

__all__ = ["FGReID", "add_fgreid_config"]
