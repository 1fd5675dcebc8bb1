"""FGReID's losses in the plugin's loss registry (the FGReID paper, Eq. 11-12).

Head output keys they read (see :class:`fgreid.modeling.FGReID`): ``y1`` (global-branch
logits), ``y2`` (context-branch logits), ``features`` (``f*``).
"""
from __future__ import annotations

import logging

from fastreid.modeling.losses import log_accuracy
from fastreid_ext.modeling.losses import LOSS_REGISTRY, ReIDLoss
from fastreid_ext.modeling.losses.host_losses import CrossEntropyLoss

from .functional import (
    averaged_cross_entropy,
    kl_consistency,
    satisfied_rank,
    satisfied_rank_can_rank,
    variance_regularization,
)

logger = logging.getLogger(__name__)
LOGIT_KEYS = ("y1", "y2")


@LOSS_REGISTRY.register()
class AveragedCrossEntropyLoss(CrossEntropyLoss):
    """``L_CE^avg``: label-smoothed CE averaged over the label vectors the model produced
    (Y1 and Y2; only one of them in the "only GFM" / "w/o GFM" ablations).
    Reads ``MODEL.LOSSES.CE`` (``EPSILON``, ``ALPHA``, ``SCALE``); writes ``loss_cls``."""

    required_keys = ()

    def check_inputs(self, outputs):
        if not any(k in outputs for k in LOGIT_KEYS):
            raise KeyError(f"AveragedCrossEntropyLoss needs one of {LOGIT_KEYS}; the head "
                           f"returned {sorted(outputs)}")

    def compute(self, outputs, targets):
        logits = [outputs[k] for k in LOGIT_KEYS if k in outputs]
        if "pred_class_logits" in outputs:
            log_accuracy(outputs["pred_class_logits"].detach(), targets)
        return averaged_cross_entropy(logits, targets, self.eps, self.alpha)


@LOSS_REGISTRY.register()
class VarianceLoss(ReIDLoss):
    """Eq. (11) variance regularisation of ``f*`` per identity; ``MODEL.LOSSES.VAR``
    (``SCALE``, ``NORM``: ``paper`` = Eq. (11), ``code`` = the public code's normalisation)."""

    output_name = "loss_var"
    required_keys = ("features",)
    #: Eq. (11) sums over the batch's identities: under DDP each rank would sum its own share and
    #: DDP's gradient average would divide the weight by the number of processes. Gathered
    #: (``MODEL.LOSSES.GATHER``), every rank computes the whole batch's loss instead; not
    #: gathered, the ``LossSet`` multiplies the rank's sum by the world size (``sums_over_batch``)
    pairwise = True
    config_node = "VAR"
    config_args = {"norm": "NORM"}

    def __init__(self, scale: float = 6.818e-4, norm: str = "paper"):
        super().__init__(scale)
        self.norm = norm  # validated: fgreid.config.validate_fgreid_config

    def sums_over_batch(self) -> bool:
        return self.norm == "paper"  # "code" is a mean over the identities

    def compute(self, outputs, targets):
        return variance_regularization(outputs["features"], targets, self.norm)


@LOSS_REGISTRY.register()
class KLConsistencyLoss(ReIDLoss):
    """``L_cns`` between Y1 and Y2; ``MODEL.LOSSES.KL`` (``SCALE``, ``MARGIN``)."""

    output_name = "loss_kl"
    required_keys = ("y1", "y2")
    config_node = "KL"
    config_args = {"margin": "MARGIN"}

    def __init__(self, margin: float = 0.005, scale: float = 1.0):
        super().__init__(scale)
        self.margin = margin

    def compute(self, outputs, targets):
        return kl_consistency(outputs["y1"], outputs["y2"], self.margin)


@LOSS_REGISTRY.register()
class SatisfiedRankLoss(ReIDLoss):
    """``L_sr`` between Y1 and Y2; ``MODEL.LOSSES.SR`` (``SCALE``, ``MARGIN_RANK``,
    ``MARGIN_LIMIT``). With ``m_r >= 2 m_s`` (the paper's 2, 1) the rank term never acts and
    the loss is ``mean(2 m_s - p1 - p2)`` (:func:`~fgreid.losses.functional.satisfied_rank`);
    the log says so once."""

    output_name = "loss_sr"
    required_keys = ("y1", "y2")
    config_node = "SR"
    config_args = {"margin_rank": "MARGIN_RANK", "margin_limit": "MARGIN_LIMIT"}

    def __init__(self, margin_rank: float = 2.0, margin_limit: float = 1.0, scale: float = 1.0):
        super().__init__(scale)
        self.margin_rank, self.margin_limit = margin_rank, margin_limit
        if not satisfied_rank_can_rank(margin_rank, margin_limit):
            logger.info("SatisfiedRankLoss: m_r = %g >= 2 m_s = %g, so its rank term never acts: "
                        "L_sr = mean(2 m_s - p1 - p2)", margin_rank, 2 * margin_limit)

    def compute(self, outputs, targets):
        return satisfied_rank(outputs["y1"], outputs["y2"], targets, self.margin_rank, self.margin_limit)
