"""``fastreid_ext.modeling.resnet_levels``: the levels of the host ResNet that MGRe and FGPose read."""
import torch

import fastreid_ext
from fastreid.modeling.backbones import build_backbone
from fastreid_ext.modeling.resnet_levels import missing_resnet_parts, resnet_levels


def test_levels_end_in_the_backbone_output_and_halve_the_size():
    cfg = fastreid_ext.get_cfg()
    cfg.MODEL.BACKBONE.DEPTH = "18x"
    cfg.MODEL.BACKBONE.PRETRAIN = False
    cfg.MODEL.BACKBONE.LAST_STRIDE = 2
    torch.manual_seed(0)
    backbone = build_backbone(cfg).eval()
    x = torch.rand(2, 3, 64, 32)
    with torch.no_grad():
        levels = resnet_levels(backbone, x)
        out = backbone(x)
    assert [tuple(t.shape[1:]) for t in levels] == [(64, 16, 8), (64, 16, 8), (128, 8, 4), (256, 4, 2), (512, 2, 1)]
    torch.testing.assert_close(levels[-1], out)
    assert missing_resnet_parts(backbone) == []
    assert missing_resnet_parts(torch.nn.Linear(2, 2)) == ["conv1", "bn1", "relu", "maxpool",
                                                           "layer1", "layer2", "layer3", "layer4"]
