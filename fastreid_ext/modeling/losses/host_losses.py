"""The host's losses (``fastreid/modeling/losses``) exposed through the loss registry under the
host's own names, so one YAML can mix host and plugin losses."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from fastreid.modeling.losses import cross_entropy_loss, log_accuracy, triplet_loss
from fastreid.modeling.losses.circle_loss import pairwise_circleloss, pairwise_cosface
from fastreid.modeling.losses.triplet_loss import hard_example_mining, weighted_example_mining

from .registry import LOSS_REGISTRY, ReIDLoss


@LOSS_REGISTRY.register()
class CrossEntropyLoss(ReIDLoss):
    """Label-smoothed cross-entropy (host ``cross_entropy_loss``); node ``MODEL.LOSSES.CE``."""

    output_name = "loss_cls"
    required_keys = ("cls_outputs",)
    config_node = "CE"
    config_args = {"eps": "EPSILON", "alpha": "ALPHA"}

    def __init__(self, eps: float = 0.1, alpha: float = 0.2, scale: float = 1.0):
        super().__init__(scale)
        self.eps, self.alpha = eps, alpha

    def compute(self, outputs, targets):
        if "pred_class_logits" in outputs:
            log_accuracy(outputs["pred_class_logits"].detach(), targets)
        return cross_entropy_loss(outputs["cls_outputs"], targets, self.eps, self.alpha)


TRIPLET_DISTANCES = ("host", "cosine")


def cosine_triplet_loss(embedding: torch.Tensor, targets: torch.Tensor, margin: float,
                        hard_mining: bool = True) -> torch.Tensor:
    """Triplet loss on the cosine distance ``1 - cos(x_i, x_j)``, as the public code of the video
    baseline (``TripletLoss(margin, 'cosine')``: batch-hard on cosine similarity).

    The host's ``triplet_loss`` with ``norm_feat`` uses ``2 - 2 cos`` (``fastreid/modeling/
    losses/utils.py:44-48``), twice this distance: its loss is twice as large and its margin
    half as wide. Mining is the host's (``hard_example_mining`` / ``weighted_example_mining``);
    ``margin <= 0`` gives the soft margin ``log(1 + exp(d_ap - d_an))``.
    """
    x = F.normalize(embedding, dim=1)
    dist = 1.0 - x @ x.t()  # (N, N)
    n = dist.shape[0]
    same = targets.view(n, 1).eq(targets.view(1, n))
    is_pos, is_neg = same.to(dist.dtype), (~same).to(dist.dtype)
    mining = hard_example_mining if hard_mining else weighted_example_mining
    dist_ap, dist_an = mining(dist, is_pos, is_neg)
    y = torch.ones_like(dist_an)
    if margin > 0:
        return F.margin_ranking_loss(dist_an, dist_ap, y, margin=margin)
    return F.soft_margin_loss(dist_an - dist_ap, y)


@LOSS_REGISTRY.register()
class TripletLoss(ReIDLoss):
    """Batch-hard (or soft-weighted) triplet loss; ``MODEL.LOSSES.TRI``. ``DISTANCE host``: the
    host's ``triplet_loss`` (Euclidean, or ``2 - 2 cos`` with ``NORM_FEAT``); ``DISTANCE
    cosine``: :func:`cosine_triplet_loss` (``1 - cos``, the papers' public code)."""

    output_name = "loss_triplet"
    pairwise = True
    config_node = "TRI"
    config_args = {"margin": "MARGIN", "norm_feat": "NORM_FEAT", "hard_mining": "HARD_MINING",
                   "distance": "DISTANCE"}

    def __init__(self, margin: float = 0.3, norm_feat: bool = False, hard_mining: bool = True,
                 scale: float = 1.0, distance: str = "host"):
        super().__init__(scale)
        if distance not in TRIPLET_DISTANCES:
            raise ValueError(f"unknown MODEL.LOSSES.TRI.DISTANCE {distance!r}; known: "
                             f"{', '.join(TRIPLET_DISTANCES)}")
        self.margin, self.norm_feat, self.hard_mining = margin, norm_feat, hard_mining
        self.distance = distance

    def compute(self, outputs, targets):
        if self.distance == "cosine":
            return cosine_triplet_loss(outputs["features"], targets, self.margin, self.hard_mining)
        return triplet_loss(outputs["features"], targets, self.margin, self.norm_feat, self.hard_mining)


class PairwiseMarginLoss(ReIDLoss):
    """A host pairwise loss ``fn(features, targets, margin, gamma)`` on ``features``; the node's
    ``MARGIN`` and ``GAMMA``. Subclasses set ``loss_fn``, ``config_node`` and ``output_name``."""

    pairwise = True
    config_args = {"margin": "MARGIN", "gamma": "GAMMA"}
    loss_fn = None  # staticmethod(host function)

    def __init__(self, margin: float = 0.25, gamma: float = 128, scale: float = 1.0):
        super().__init__(scale)
        self.margin, self.gamma = margin, gamma

    def compute(self, outputs, targets):
        return self.loss_fn(outputs["features"], targets, self.margin, self.gamma)


@LOSS_REGISTRY.register()
class CircleLoss(PairwiseMarginLoss):
    """Pairwise circle loss (host ``pairwise_circleloss``); ``MODEL.LOSSES.CIRCLE``."""

    output_name = "loss_circle"
    config_node = "CIRCLE"
    loss_fn = staticmethod(pairwise_circleloss)


@LOSS_REGISTRY.register()
class Cosface(PairwiseMarginLoss):
    """Pairwise CosFace loss (host ``pairwise_cosface``); ``MODEL.LOSSES.COSFACE``."""

    output_name = "loss_cosface"
    config_node = "COSFACE"
    loss_fn = staticmethod(pairwise_cosface)
