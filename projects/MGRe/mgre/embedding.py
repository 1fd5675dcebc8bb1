"""Feature extraction module and embedding operation of MGRe (section 3.1, Fig. 3).

- :class:`ResidualBlock`: "each feature extraction module is designed as one residual block"
  (a bottleneck ``C -> C/4 -> C/4 -> C`` with an identity shortcut; one per granularity, its
  weights shared by the regions of that granularity, never across granularities).
- :class:`StageEmbedding`: per region GAP + GMP, concatenation over the stage's regions, a
  linear projection to ``dim`` (512), then a BNNeck (BN, bias frozen) and a bias-free
  classifier (:class:`fastreid_ext.modeling.heads.BNNeckClassifier`). The ID loss reads the
  logits, the triplet loss the pre-BN feature.
"""
from __future__ import annotations

from typing import Dict, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from fastreid_ext.modeling.heads import BNNeckClassifier

__all__ = ["ResidualBlock", "StageEmbedding", "gap_gmp", "weighted_concat"]


class ResidualBlock(nn.Module):
    """Bottleneck residual block keeping ``channels`` and the spatial size."""

    def __init__(self, channels: int, reduction: int = 4):
        super().__init__()
        mid = max(1, channels // reduction)
        self.conv1 = nn.Conv2d(channels, mid, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(mid)
        self.conv2 = nn.Conv2d(mid, mid, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(mid)
        self.conv3 = nn.Conv2d(mid, channels, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(channels)
        nn.init.zeros_(self.bn3.weight)  # starts as the identity (zero-init residual)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(x)))
        y = F.relu(self.bn2(self.conv2(y)))
        return F.relu(x + self.bn3(self.conv3(y)))


def gap_gmp(x: torch.Tensor) -> torch.Tensor:
    """GAP + GMP of ``(N, C, h, w)`` maps -> ``(N, C)`` (Fig. 3)."""
    return x.mean(dim=(2, 3)) + x.amax(dim=(2, 3))


def weighted_concat(features: Sequence[torch.Tensor], weights: Sequence[float]) -> torch.Tensor:
    """Eq. (6): ``[lambda_1 F_1 / |F_1|, ..., lambda_K F_K / |F_K|]`` of ``(B, D_k)`` vectors."""
    if len(features) != len(weights):
        raise ValueError(f"{len(features)} stage features but {len(weights)} weights")
    return torch.cat([w * F.normalize(f, dim=1) for f, w in zip(features, weights)], dim=1)


class StageEmbedding(nn.Module):
    """Embedding of one stage: ``R`` region maps -> ``(B, dim)`` (Fig. 3).

    Args:
        in_channels: channels of the region maps.
        num_regions: ``R`` (regions concatenated; 1 for stage 3 / 4).
        dim: output dimension (512).
        num_classes: identities of the classifier.
    """

    def __init__(self, in_channels: int, num_regions: int, dim: int, num_classes: int):
        super().__init__()
        self.proj = nn.Linear(in_channels * num_regions, dim, bias=False)
        # BNNeck + bias-free classifier, weight N(0, 0.001^2) (drawn after nn.Linear's draw, the
        # random stream this module has always had)
        self.classifier = BNNeckClassifier(dim, num_classes, init_std=0.001, weight_init="linear_then_normal")
        nn.init.kaiming_normal_(self.proj.weight, mode="fan_out")

    def project(self, region_vectors: Sequence[torch.Tensor]) -> torch.Tensor:
        """``R`` tensors ``(N, C)`` -> pre-BN feature ``(N, dim)``."""
        return self.proj(torch.cat(list(region_vectors), dim=1))

    def head(self, feat: torch.Tensor, targets: Optional[torch.Tensor] = None) -> Dict[str, torch.Tensor]:
        """Pre-BN ``(B, dim)`` -> ``{"features" (pre-BN, for the triplet loss), "bn_features",
        "cls_outputs", "pred_class_logits"}``."""
        out = self.classifier(feat, targets)
        return {"features": feat, "bn_features": out["neck_features"], "cls_outputs": out["cls_outputs"],
                "pred_class_logits": out["pred_class_logits"]}
