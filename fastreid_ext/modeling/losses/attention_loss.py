"""Attention loss of paper 003 ("Video Person Re-ID: Fantastic Techniques and Where to Find
Them", Eq. (1)): penalise the temporal attention scores of frames that were randomly erased."""
from __future__ import annotations

import torch

from .registry import LOSS_REGISTRY, ReIDLoss

__all__ = ["attention_loss", "AttentionLoss"]


def attention_loss(scores: torch.Tensor, erased: torch.Tensor) -> torch.Tensor:
    """Eq. (1) of paper 003: ``1/N sum_i label(i) * score(i)``.

    ``label(i)`` is 1 for a randomly erased frame and 0 otherwise, ``score(i)`` its pre-softmax
    attention score and ``N`` the number of frames in the batch (``B * T``). (The method notes
    describe the public code as the mean over clips of ``sum_t``, i.e. ``T`` times this value;
    ``MODEL.LOSSES.ATT.SCALE`` absorbs the factor.)

    Args:
        scores: ``(B, T)``; erased: bool or 0/1 ``(B, T)``.
    """
    if scores.shape != erased.shape:
        raise ValueError(f"attention scores {tuple(scores.shape)} and erased flags "
                         f"{tuple(erased.shape)} must both be (B, T)")
    labels = erased.to(device=scores.device, dtype=scores.dtype)
    return (labels * scores).sum() / scores.numel()


@LOSS_REGISTRY.register()
class AttentionLoss(ReIDLoss):
    """Registered attention loss; node ``MODEL.LOSSES.ATT`` (``SCALE``). Needs head outputs
    ``attention_scores`` and ``erased`` (``MODEL.TEMPORAL.AGG attention`` and
    ``INPUT.VIDEO.FRAME_ERASE.ENABLED``)."""

    output_name = "loss_att"
    required_keys = ("attention_scores", "erased")

    def __init__(self, scale: float = 1.0):
        super().__init__()
        self.scale = float(scale)

    @classmethod
    def from_config(cls, cfg, **ctx):
        return cls(scale=cfg.MODEL.LOSSES.ATT.SCALE)

    def forward(self, outputs, targets):
        return attention_loss(outputs["attention_scores"], outputs["erased"]) * self.scale
