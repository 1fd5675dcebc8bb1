"""The levels of a host-style ResNet (``fastreid/modeling/backbones/resnet.py``): the stem
(conv1, bn1, relu, maxpool) and the four residual stages, for methods that read intermediate
maps (multi-granularity regions, motion or joint streams)."""
from __future__ import annotations

from typing import List

import torch
from torch import nn

__all__ = ["RESNET_PARTS", "resnet_levels", "missing_resnet_parts"]

#: attributes a backbone needs for :func:`resnet_levels`
RESNET_PARTS = ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4")


def missing_resnet_parts(backbone: nn.Module) -> List[str]:
    """The :data:`RESNET_PARTS` that ``backbone`` lacks (empty for a host ResNet)."""
    return [n for n in RESNET_PARTS if not hasattr(backbone, n)]


def resnet_levels(backbone: nn.Module, x: torch.Tensor) -> List[torch.Tensor]:
    """``x`` ``(B, 3, H, W)`` -> ``[stem, layer1, layer2, layer3, layer4]`` outputs."""
    x = backbone.maxpool(backbone.relu(backbone.bn1(backbone.conv1(x))))
    outs = [x]
    for name in RESNET_PARTS[4:]:
        x = getattr(backbone, name)(x)
        outs.append(x)
    return outs
