"""The MG-RAFA head: multi-granularity attentive aggregation of per-frame maps
followed by the BN + FC classifiers of section 3.4 (one on ``v``, one on each ``v_g``): "each
classifier consists of a BN layer followed by an FC layer", the plugin's BNNeck + classifier
(:class:`fastreid_ext.modeling.heads.BNNeckClassifier`)."""
from __future__ import annotations

from typing import Optional, Sequence, Tuple

import torch
from torch import nn

from fastreid.config import configurable
from fastreid.modeling.heads import REID_HEADS_REGISTRY
from fastreid_ext.modeling.aggregation import build_aggregation
from fastreid_ext.modeling.heads import BNNeckClassifier

from .aggregation import MultiGranularityAggregation, registry_name


def resnet_map_size(input_size: Sequence[int], last_stride: int) -> Tuple[int, int]:
    """``(h, w)`` of a host ResNet's last maps for ``(H, W)`` inputs: four stride-2 stages
    (``ceil(x / 2)`` each: conv1, max-pool, res3, res4) then res5 with ``last_stride``."""
    sizes = []
    for x in input_size:
        x = int(x)
        for _ in range(4):
            x = -(-x // 2)
        if last_stride == 2:
            x = -(-x // 2)
        sizes.append(x)
    return sizes[0], sizes[1]


@REID_HEADS_REGISTRY.register()
class MGRAFAHead(nn.Module):
    """Head over per-frame maps ``(B, T, C, H, W)``: :class:`MultiGranularityAggregation`, then
    one classifier on ``v`` and (``group_loss``) one per group on ``v_g`` (Eq. (7)).

    ``forward(features, targets)``: training returns the outputs of ``v`` (``cls_outputs``,
    ``pred_class_logits``, ``features``) plus ``group_outputs`` (a list with one such dict per
    group, empty when ``group_loss`` is off or there is a single group); eval returns the
    ``(B, C)`` embedding (``v``, or ``BN(v)`` with ``eval_feat="after"``).
    """

    @configurable
    def __init__(self, *, aggregation: MultiGranularityAggregation, num_classes: int,
                 group_loss: bool = True, eval_feat: str = "before", cls_type: str = "Linear",
                 scale: float = 1.0, margin: float = 0.0, norm_type: str = "BN",
                 neck_feat: str = "before"):
        super().__init__()  # eval_feat: validated (mgrafa.config.validate_mgrafa_config)
        self.aggregation = aggregation
        self.eval_feat = eval_feat
        c = aggregation.channels
        kw = dict(num_classes=num_classes, cls_type=cls_type, scale=scale, margin=margin,
                  norm_type=norm_type, neck_feat=neck_feat)
        self.classifier = BNNeckClassifier(c, **kw)
        n = aggregation.num_groups
        self.group_classifiers = nn.ModuleList(
            [BNNeckClassifier(c // n, **kw) for _ in range(n)] if group_loss and n > 1 else [])

    @classmethod
    def from_config(cls, cfg, feat_shape: Optional[Sequence[int]] = None):
        """``feat_shape``: ``(C, h, w)`` of the backbone maps (the meta-architecture measures
        it); by default ``MODEL.BACKBONE.FEAT_DIM`` and the host ResNet's map size for
        ``INPUT.SIZE_TRAIN``."""
        m = cfg.MODEL.MGRAFA
        if feat_shape is None:
            feat_shape = (cfg.MODEL.BACKBONE.FEAT_DIM,
                          *resnet_map_size(cfg.INPUT.SIZE_TRAIN, cfg.MODEL.BACKBONE.LAST_STRIDE))
        aggregation = build_aggregation(cfg, registry_name(m.ATTENTION), channels=feat_shape[0],
                                        map_size=feat_shape[1:], key="MODEL.MGRAFA.ATTENTION")
        return {
            "aggregation": aggregation,
            "num_classes": cfg.MODEL.HEADS.NUM_CLASSES,
            "group_loss": m.GROUP_LOSS,
            "eval_feat": m.EVAL_FEAT,
            "cls_type": cfg.MODEL.HEADS.CLS_LAYER,
            "scale": cfg.MODEL.HEADS.SCALE,
            "margin": cfg.MODEL.HEADS.MARGIN,
            "norm_type": cfg.MODEL.HEADS.NORM,
            "neck_feat": cfg.MODEL.HEADS.NECK_FEAT,
        }

    def forward(self, features: torch.Tensor, targets: Optional[torch.Tensor] = None):
        agg = self.aggregation(features)
        v = agg.features  # (B, C)
        if not self.training:
            return v if self.eval_feat == "before" else self.classifier.neck(v)
        if targets is None:
            raise ValueError("MGRAFAHead needs targets in training mode")
        outputs = self.classifier(v, targets)
        outputs["group_outputs"] = [clf(v_g, targets) for clf, v_g
                                    in zip(self.group_classifiers, agg.group_features)]
        return outputs

    @torch.no_grad()
    def attention_maps(self, features: torch.Tensor):
        """The normalised node weights of every group, ``(B, C/N, T, H_m, W_m)`` each (for the
        Figure 3 pictures)."""
        return self.aggregation(features).node_weights
