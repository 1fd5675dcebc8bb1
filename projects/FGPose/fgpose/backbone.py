"""``build_fgpose_tiny_backbone``: a narrow ResNet for CPU runs (our choice, not the paper's
ResNet-50), with the host ResNet's attribute names (``conv1``, ``bn1``, ``relu``, ``maxpool``,
``layer1`` .. ``layer4``) so FGPose reads its five levels the same way. One BasicBlock per stage,
widths ``MODEL.FGPOSE.TINY_WIDTH x (1, 2, 4, 8)``, stride 2 in layers 2-4 (layer 4:
``MODEL.BACKBONE.LAST_STRIDE``)."""
from __future__ import annotations

from torch import nn

from fastreid.modeling.backbones import BACKBONE_REGISTRY
from fastreid.modeling.backbones.resnet import BasicBlock

__all__ = ["TinyResNet", "build_fgpose_tiny_backbone"]


class TinyResNet(nn.Module):
    def __init__(self, width: int = 16, last_stride: int = 2):
        super().__init__()
        w = int(width)
        self.conv1 = nn.Conv2d(3, w, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(w)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        chans = [w, 2 * w, 4 * w, 8 * w]
        strides = [1, 2, 2, int(last_stride)]
        prev = w
        for i, (c, s) in enumerate(zip(chans, strides), start=1):
            down = None
            if s != 1 or prev != c:
                down = nn.Sequential(nn.Conv2d(prev, c, 1, stride=s, bias=False), nn.BatchNorm2d(c))
            setattr(self, f"layer{i}", nn.Sequential(BasicBlock(prev, c, "BN", stride=s, downsample=down)))
            prev = c
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


@BACKBONE_REGISTRY.register()
def build_fgpose_tiny_backbone(cfg):
    return TinyResNet(cfg.MODEL.FGPOSE.TINY_WIDTH, cfg.MODEL.BACKBONE.LAST_STRIDE)
