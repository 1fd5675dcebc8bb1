"""MG-RAFA meta-architecture (the MG-RAFA paper, Fig. 2 and section 4.2): a host ResNet-50 (last
stride 1) on every frame, then :class:`mgrafa.head.MGRAFAHead`; trained with Eq. (7).

The paper's Baseline is the same network with ``MODEL.MGRAFA.ATTENTION: avg``.
"""
from __future__ import annotations

from typing import Dict, Sequence

import torch
from torch import nn

from fastreid.config import configurable
from fastreid.modeling.heads import REID_HEADS_REGISTRY
from fastreid.modeling.meta_arch import META_ARCH_REGISTRY
from fastreid_ext.modeling.aggregation import aggregation_of
from fastreid_ext.modeling.losses import LossSet, build_losses
from fastreid_ext.modeling.meta_arch import ReidMetaArch
from fastreid_ext.modeling.video_utils import (
    build_backbone_offline,
    feature_map_shape,
    frame_features,
)

from .config import validate_mgrafa_config


def eq7_losses(losses: LossSet, outputs: Dict[str, object], targets: torch.Tensor) -> Dict[str, torch.Tensor]:
    """Eq. (7): ``L = L_ID(v) + L_Tr(v) + 1/N sum_g (L_ID(v_g) + L_Tr(v_g))``.

    ``outputs``: the head's training dict (``group_outputs``: one dict per group). Returns
    named terms whose sum is ``L``: ``loss_cls``, ``loss_triplet`` for ``v`` and
    ``g{m}_loss_cls``, ``g{m}_loss_triplet`` (already divided by ``N``) for each group.
    """
    main = {k: v for k, v in outputs.items() if k != "group_outputs"}
    result = losses(main, targets)
    groups = outputs.get("group_outputs", [])
    for m, group in enumerate(groups, start=1):
        # without pred_class_logits the CE loss does not log_accuracy: the logged accuracy
        # stays the one of v (the embedding), not the last group's
        group = {k: v for k, v in group.items() if k != "pred_class_logits"}
        for name, value in losses(group, targets, prefix=f"g{m}_").items():
            result[name] = value / len(groups)
    return result


@META_ARCH_REGISTRY.register()
class MGRAFANet(ReidMetaArch):
    """Per-frame backbone + MG-RAFA head.

    ``forward(batched_inputs)``: ``images`` ``(B, T, 3, H, W)`` (or ``(B, 3, H, W)``), values
    0..255, never modified. Training returns Eq. (7)'s named losses; eval the ``(B, C)``
    clip embedding.
    """

    @configurable
    def __init__(self, *, backbone: nn.Module, heads: nn.Module, losses: LossSet,
                 pixel_mean: Sequence[float], pixel_std: Sequence[float], test_chunk: int = 0):
        """``test_chunk``: frames per backbone call at inference (0: all; ``TEST.VIDEO.FRAME_CHUNK``)."""
        super().__init__(pixel_mean=pixel_mean, pixel_std=pixel_std)
        self.backbone = backbone
        self.heads = heads
        self.losses = losses
        self.test_chunk = int(test_chunk)

    @classmethod
    def from_config(cls, cfg):
        validate_mgrafa_config(cfg)  # build_config ran it; again for a config made by hand
        backbone = build_backbone_offline(cfg)
        feat_shape = feature_map_shape(backbone, cfg.INPUT.SIZE_TRAIN)
        heads = REID_HEADS_REGISTRY.get(cfg.MODEL.HEADS.NAME)(cfg, feat_shape=feat_shape)
        losses = build_losses(cfg, feat_dim=feat_shape[0], num_classes=cls.num_classes_of(cfg))
        return {
            "backbone": backbone,
            "heads": heads,
            "losses": losses,
            **cls.pixel_config(cfg),
            "test_chunk": cfg.TEST.VIDEO.FRAME_CHUNK,
        }

    def frame_maps(self, batched_inputs) -> torch.Tensor:
        """Normalised images -> per-frame maps ``(B, T, C, h, w)``."""
        clips = self.preprocess(batched_inputs)  # (B, T, C, H, W)
        return frame_features(self.backbone, clips, None if self.training else self.test_chunk)

    def diagnostics(self) -> Dict[str, float]:
        """Attention scalars of the last training forward (``att_entropy_g{m}``,
        ``att_spread_g{m}``, ``att_dead_frac``; :meth:`MultiGranularityAggregation.diagnostics`)."""
        agg = aggregation_of(self)
        return agg.diagnostics() if agg is not None else {}

    def forward(self, batched_inputs):
        maps = self.frame_maps(batched_inputs)  # (B, T, C, h, w)
        if not self.training:
            return self.heads(maps)
        targets = self.batch_targets(batched_inputs)
        outputs = self.heads(maps, targets)
        return eq7_losses(self.losses, outputs, targets)
