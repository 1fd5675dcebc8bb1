"""Center loss (Wen et al., ECCV 2016), one of the tricks of Luo et al. (2019) that the video-baseline paper
("Video Person Re-ID: Fantastic Techniques and Where to Find Them") adds to its baseline.

The centers are trained by their own SGD step (lr ``MODEL.LOSSES.CENTER.LR``, 0.5 in the
reference code) on the gradient of the *unweighted* loss: :meth:`CenterLoss.before_own_step`
divides the centers' gradient by ``MODEL.LOSSES.CENTER.SCALE`` (0.0005) before the step, as the
reference code does. The trainer leaves the centers out of the main optimizer
(``LossSet.own_optimizers()``).
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from .registry import LOSS_REGISTRY, ReIDLoss

__all__ = ["center_loss", "CenterLoss"]


def center_loss(features: torch.Tensor, targets: torch.Tensor,
                centers: torch.Tensor) -> torch.Tensor:
    """``1/B sum_i ||x_i - c_{y_i}||^2``.

    Wen et al. 2016 Eq. (2) is ``1/2 sum_i ||x_i - c_{y_i}||^2``; like the bag-of-tricks and
    the video-baseline paper's reference code this averages over the batch and drops the ``1/2``.

    Args:
        features: ``(B, D)``; targets: ``(B,)`` int64 in ``[0, C)``; centers: ``(C, D)``.
    """
    if features.dim() != 2 or centers.dim() != 2 or features.shape[1] != centers.shape[1]:
        raise ValueError(f"features {tuple(features.shape)} and centers "
                         f"{tuple(centers.shape)} must be (B, D) and (C, D)")
    diff = features - centers[targets]  # (B, D)
    return diff.pow(2).sum(dim=1).mean()


@LOSS_REGISTRY.register()
class CenterLoss(ReIDLoss):
    """Registered center loss; node ``MODEL.LOSSES.CENTER`` (``SCALE``, ``LR``, ``FEAT``).

    ``centers``: ``(num_classes, feat_dim)`` parameter, initialised from N(0, 1) like the
    reference code. ``FEAT`` names the head output it pulls to the centers (``features``).
    """

    output_name = "loss_center"
    config_node = "CENTER"
    config_args = {"lr": "LR", "feat_key": "FEAT"}

    def __init__(self, num_classes: int, feat_dim: int, scale: float = 0.0005,
                 lr: float = 0.5, feat_key: str = "features"):
        super().__init__(scale)
        if num_classes <= 0 or feat_dim <= 0:
            raise ValueError(f"CenterLoss needs num_classes > 0 and feat_dim > 0, got "
                             f"{num_classes} and {feat_dim} (is MODEL.HEADS.NUM_CLASSES set?)")
        if scale <= 0:
            raise ValueError(f"MODEL.LOSSES.CENTER.SCALE must be > 0 (its gradient is divided "
                             f"by it before the centers' own step), got {scale}")
        self.lr, self.feat_key = float(lr), feat_key
        self.required_keys = (feat_key,)
        self.centers = nn.Parameter(torch.randn(num_classes, feat_dim))
        self._optimizer: Optional[torch.optim.Optimizer] = None

    @classmethod
    def from_config(cls, cfg, **ctx):
        missing = [k for k in ("num_classes", "feat_dim") if k not in ctx]
        if missing:
            raise KeyError(f"CenterLoss.from_config needs {missing} in build_losses(...)")
        return cls(num_classes=int(ctx["num_classes"]), feat_dim=int(ctx["feat_dim"]),
                   **cls.config_kwargs(cfg))

    def compute(self, outputs, targets):
        return center_loss(outputs[self.feat_key], targets, self.centers)

    def own_optimizer(self) -> torch.optim.Optimizer:
        """Plain SGD over the centers (created once, then the same object)."""
        if self._optimizer is None:
            self._optimizer = torch.optim.SGD([self.centers], lr=self.lr)
        return self._optimizer

    def before_own_step(self) -> None:
        """Undo the loss weight: the centers step on the gradient of the unweighted loss."""
        if self.centers.grad is not None:
            self.centers.grad.mul_(1.0 / self.scale)
