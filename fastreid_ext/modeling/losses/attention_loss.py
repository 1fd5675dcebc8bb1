"""Attention loss of the video baseline ("Video Person Re-ID: Fantastic Techniques and Where to
Find Them", Pathak et al., Eq. (1)): penalise the temporal attention given to frames that were
randomly erased.

What Eq. (1) penalises, and why it can kill the attention
--------------------------------------------------------
The paper's ``Attention_score(i)`` is, in the authors' public code (``ResNet50TA_BT2`` returns
``a_vals``), the *pre-softmax* score of frame ``i``: the output of the temporal Conv1d after its
ReLU, so ``>= 0``. Penalising it (``TARGET = "scores"``, the faithful setting) has its global minimum
at "every score is 0", and the Conv1d's bias gets a gradient ``sum_i label(i) * [score_i > 0]
>= 0`` at every step: the loss pushes the shared bias down until every frame of every clip has a
negative pre-ReLU value. Then all scores are 0, no gradient reaches the attention any more (dead
ReLU) and the softmax gives every frame ``1/T``: the temporal attention has become the temporal
average for good.

``TARGET = "weights"`` penalises the softmax weights ``w_i = softmax_t(score)_i`` instead. The
weights of a clip sum to 1, so the loss can only move weight from erased to clean frames; it
is invariant to a shift shared by all scores of a clip (its gradient with respect to the
Conv1d's bias is exactly 0 when the whole clip is active), so it cannot drive the scores
below zero.

Normalisation: Eq. (1) divides by the number of frames ``N = B * T`` (``REDUCTION =
"frame_mean"``); the public code sums over the ``T`` frames of a clip and averages over clips
(``attn_noise.sum(1).mean()``, ``REDUCTION = "clip_sum"``), i.e. ``T`` times Eq. (1).
"""
from __future__ import annotations

import torch

from ..aggregation.base import FRAME_WEIGHTS_KEY, SCORES_KEY
from .registry import LOSS_REGISTRY, ReIDLoss

__all__ = ["attention_loss", "AttentionLoss", "ATTENTION_LOSS_TARGETS", "ATTENTION_LOSS_REDUCTIONS"]

#: ``MODEL.LOSSES.ATT.TARGET`` -> the head output the loss reads: the temporal aggregation's
#: ``scores`` or ``frame_weights`` (:meth:`~fastreid_ext.modeling.aggregation.TemporalAggregation.loss_inputs`)
ATTENTION_LOSS_TARGETS = {"scores": SCORES_KEY, "weights": FRAME_WEIGHTS_KEY}
ATTENTION_LOSS_REDUCTIONS = ("frame_mean", "clip_sum")


def attention_loss(values: torch.Tensor, erased: torch.Tensor,
                   reduction: str = "frame_mean") -> torch.Tensor:
    """Eq. (1): ``1/N sum_i label(i) * value(i)``.

    ``label(i)`` is 1 for a randomly erased frame and 0 otherwise, ``value(i)`` its attention
    score (or softmax weight) and ``N`` the number of frames in the batch (``B * T``) with
    ``reduction="frame_mean"``; ``reduction="clip_sum"`` sums over the ``T`` frames of a clip
    and averages over the ``B`` clips (the public code: ``T`` times Eq. (1)).

    Args:
        values: ``(B, T)``; erased: bool or 0/1 ``(B, T)``.
    """
    if values.shape != erased.shape or values.dim() != 2:
        raise ValueError(f"attention values {tuple(values.shape)} and erased flags "
                         f"{tuple(erased.shape)} must both be (B, T)")
    if reduction not in ATTENTION_LOSS_REDUCTIONS:
        raise ValueError(f"unknown attention loss reduction {reduction!r}; known: "
                         f"{', '.join(ATTENTION_LOSS_REDUCTIONS)}")
    labels = erased.to(device=values.device, dtype=values.dtype)
    total = (labels * values).sum()
    return total / (values.numel() if reduction == "frame_mean" else values.shape[0])


@LOSS_REGISTRY.register()
class AttentionLoss(ReIDLoss):
    """Registered attention loss; node ``MODEL.LOSSES.ATT`` (``SCALE``, ``TARGET``,
    ``REDUCTION``). Needs a temporal aggregation that gives raw ``scores`` (``TARGET scores``,
    head output ``attention_scores``) or input-dependent ``frame_weights`` (``TARGET weights``,
    ``attention_weights``), e.g. ``MODEL.TEMPORAL.AGG attention``, and the ``erased`` flags
    (``INPUT.VIDEO.FRAME_ERASE.ENABLED``)."""

    output_name = "loss_att"
    config_node = "ATT"
    config_args = {"on": "TARGET", "reduction": "REDUCTION"}

    def __init__(self, scale: float = 1.0, on: str = "scores", reduction: str = "frame_mean"):
        super().__init__(scale)
        if on not in ATTENTION_LOSS_TARGETS:
            raise ValueError(f"unknown MODEL.LOSSES.ATT.TARGET {on!r}; known: "
                             f"{', '.join(ATTENTION_LOSS_TARGETS)}")
        if reduction not in ATTENTION_LOSS_REDUCTIONS:
            raise ValueError(f"unknown MODEL.LOSSES.ATT.REDUCTION {reduction!r}; known: "
                             f"{', '.join(ATTENTION_LOSS_REDUCTIONS)}")
        self.on = on
        self.reduction = reduction
        self.key = ATTENTION_LOSS_TARGETS[on]
        self.required_keys = (self.key, "erased")

    def compute(self, outputs, targets):
        return attention_loss(outputs[self.key], outputs["erased"], self.reduction)
