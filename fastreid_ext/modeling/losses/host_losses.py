"""The host's losses (``fastreid/modeling/losses``) exposed through the loss registry under the
host's own names, so one YAML can mix host and plugin losses."""
from __future__ import annotations

from fastreid.modeling.losses import cross_entropy_loss, log_accuracy, triplet_loss
from fastreid.modeling.losses.circle_loss import pairwise_circleloss, pairwise_cosface

from .registry import LOSS_REGISTRY, ReIDLoss


@LOSS_REGISTRY.register()
class CrossEntropyLoss(ReIDLoss):
    """Label-smoothed cross-entropy (host ``cross_entropy_loss``); node ``MODEL.LOSSES.CE``."""

    output_name = "loss_cls"
    required_keys = ("cls_outputs",)

    def __init__(self, eps: float = 0.1, alpha: float = 0.2, scale: float = 1.0):
        super().__init__()
        self.eps, self.alpha, self.scale = eps, alpha, scale

    @classmethod
    def from_config(cls, cfg, **ctx):
        c = cfg.MODEL.LOSSES.CE
        return cls(eps=c.EPSILON, alpha=c.ALPHA, scale=c.SCALE)

    def forward(self, outputs, targets):
        if "pred_class_logits" in outputs:
            log_accuracy(outputs["pred_class_logits"].detach(), targets)
        return cross_entropy_loss(outputs["cls_outputs"], targets, self.eps, self.alpha) * self.scale


@LOSS_REGISTRY.register()
class TripletLoss(ReIDLoss):
    """Batch-hard (or soft-weighted) triplet loss (host ``triplet_loss``); ``MODEL.LOSSES.TRI``."""

    output_name = "loss_triplet"

    def __init__(self, margin: float = 0.3, norm_feat: bool = False, hard_mining: bool = True,
                 scale: float = 1.0):
        super().__init__()
        self.margin, self.norm_feat, self.hard_mining, self.scale = margin, norm_feat, hard_mining, scale

    @classmethod
    def from_config(cls, cfg, **ctx):
        c = cfg.MODEL.LOSSES.TRI
        return cls(margin=c.MARGIN, norm_feat=c.NORM_FEAT, hard_mining=c.HARD_MINING, scale=c.SCALE)

    def forward(self, outputs, targets):
        return triplet_loss(outputs["features"], targets, self.margin, self.norm_feat,
                            self.hard_mining) * self.scale


@LOSS_REGISTRY.register()
class CircleLoss(ReIDLoss):
    """Pairwise circle loss (host ``pairwise_circleloss``); ``MODEL.LOSSES.CIRCLE``."""

    output_name = "loss_circle"

    def __init__(self, margin: float = 0.25, gamma: float = 128, scale: float = 1.0):
        super().__init__()
        self.margin, self.gamma, self.scale = margin, gamma, scale

    @classmethod
    def from_config(cls, cfg, **ctx):
        c = cfg.MODEL.LOSSES.CIRCLE
        return cls(margin=c.MARGIN, gamma=c.GAMMA, scale=c.SCALE)

    def forward(self, outputs, targets):
        return pairwise_circleloss(outputs["features"], targets, self.margin, self.gamma) * self.scale


@LOSS_REGISTRY.register()
class Cosface(ReIDLoss):
    """Pairwise CosFace loss (host ``pairwise_cosface``); ``MODEL.LOSSES.COSFACE``."""

    output_name = "loss_cosface"

    def __init__(self, margin: float = 0.25, gamma: float = 128, scale: float = 1.0):
        super().__init__()
        self.margin, self.gamma, self.scale = margin, gamma, scale

    @classmethod
    def from_config(cls, cfg, **ctx):
        c = cfg.MODEL.LOSSES.COSFACE
        return cls(margin=c.MARGIN, gamma=c.GAMMA, scale=c.SCALE)

    def forward(self, outputs, targets):
        return pairwise_cosface(outputs["features"], targets, self.margin, self.gamma) * self.scale
