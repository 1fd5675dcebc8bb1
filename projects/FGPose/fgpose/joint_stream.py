"""FGPose's joint-specific local dynamic pose stream (section 4.2, Fig. 6): four part images
per frame (:mod:`.joints`) -> FG-FN (four CNNs of the same structure, weights not shared:
five conv + BN + ReLU layers and an average pooling) -> FG-ULN (two convolutions: the first
links the parts, the second reduces the dimension) -> frame-level feature, averaged over the
segment's frames (the "dynamic" feature).

Sizes are not given in the paper (our choice): FG-FN channels ``W, 2W, 4W, 8W, 8W`` with
stride 2 in the first four layers; FG-ULN = 1x1 conv ``4 * 8W -> 4 * 8W`` + BN + ReLU, then
1x1 conv ``4 * 8W -> JS_DIM``.
"""
from __future__ import annotations

from typing import List

import torch
from torch import nn

from .joints import part_images

__all__ = ["PartCNN", "JointSpecificStream"]


class PartCNN(nn.Module):
    """One FG-FN branch: 5 x (3x3 conv + BN + ReLU), strides 2, 2, 2, 2, 1, then average pooling."""

    def __init__(self, width: int = 32, in_channels: int = 3):
        super().__init__()
        chans = [width, 2 * width, 4 * width, 8 * width, 8 * width]
        layers: List[nn.Module] = []
        prev = in_channels
        for i, c in enumerate(chans):
            layers += [nn.Conv2d(prev, c, 3, stride=2 if i < 4 else 1, padding=1, bias=False),
                       nn.BatchNorm2d(c), nn.ReLU(inplace=True)]
            prev = c
        self.body = nn.Sequential(*layers)
        self.out_dim = prev

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x).mean(dim=(2, 3))


class JointSpecificStream(nn.Module):
    """``(frames (N, 3, H, W), COCO keypoints (N, 17, 3))`` -> ``(N, out_dim)`` frame features."""

    PARTS = ("head", "body", "hands", "legs")

    def __init__(self, width: int = 32, out_dim: int = 512, part_size: int = 224, margin: float = 0.04):
        super().__init__()
        self.part_size = int(part_size)
        self.margin = float(margin)
        self.fn = nn.ModuleList(PartCNN(width) for _ in self.PARTS)  # FG-FN, unshared
        d = sum(b.out_dim for b in self.fn)
        self.uln = nn.Sequential(  # FG-ULN
            nn.Conv2d(d, d, 1, bias=False), nn.BatchNorm2d(d), nn.ReLU(inplace=True),
            nn.Conv2d(d, int(out_dim), 1))
        self.out_dim = int(out_dim)
        self.last_boxes = None

    def forward(self, frames: torch.Tensor, keypoints: torch.Tensor) -> torch.Tensor:
        parts, boxes = part_images(frames, keypoints, self.part_size, self.margin)
        self.last_boxes = boxes.detach()
        feats = torch.cat([cnn(p) for cnn, p in zip(self.fn, parts)], dim=1)  # (N, 4 * 8W)
        return self.uln(feats[:, :, None, None]).flatten(1)
