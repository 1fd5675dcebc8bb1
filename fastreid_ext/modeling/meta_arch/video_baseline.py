"""Video baseline of Pathak et al. ("Video Person Re-ID: Fantastic Techniques and Where to Find
Them", Pathak et al., AAAI 2020 student abstract) with the bag of tricks (Luo et al. 2019).

    clips (B, T, 3, H, W) --host backbone per frame--> maps (B, T, C, h, w)
      --temporal aggregation--> (B, C) --BNNeck head--> embedding / logits

Temporal aggregation: the :mod:`~fastreid_ext.modeling.aggregation` registered under
``MODEL.TEMPORAL.AGG`` (core: ``avg``, the mean of the per-frame GAP features; ``attention``,
Gao & Nevatia's temporal attention; projects add theirs), built for the backbone's map size at
``INPUT.SIZE_TRAIN``. Its scores / frame weights reach the losses as ``attention_scores`` /
``attention_weights`` (:meth:`~fastreid_ext.modeling.aggregation.TemporalAggregation.loss_inputs`)
and its diagnostics are the model's :meth:`VideoBaseline.diagnostics`.

The head is the host's (``MODEL.HEADS.NAME``, normally ``EmbeddingHead`` with
``WITH_BNNECK True``) applied to the clip feature viewed as a ``(B, C, 1, 1)`` map (its pooling
is then the identity). ``MODEL.HEADS.NECK_FEAT`` picks the feature the metric losses see:
``after`` (post-BN, what the video-baseline paper and the method notes use) or ``before`` (pre-BN, as in Luo
et al.'s image baseline). Evaluation returns the post-BN ``(B, D)`` embedding.

Losses come from the plugin's registry (``MODEL.LOSSES.NAME``) and are reachable as
``model.losses`` (a ``LossSet``; the trainer steps their own optimizers, e.g. the center loss's).
"""
from __future__ import annotations

from typing import Dict, Optional, Sequence, Union

import torch
from torch import nn

from fastreid.config import configurable
from fastreid.modeling.heads import build_heads
from fastreid.modeling.meta_arch import META_ARCH_REGISTRY

from ..aggregation import AvgPooling, TemporalAggregation, build_aggregation
from ..losses import LossSet, build_losses
from ..video_utils import build_backbone_offline, feature_map_shape, frame_features
from .base import ReidMetaArch

__all__ = ["VideoBaseline"]


@META_ARCH_REGISTRY.register()
class VideoBaseline(ReidMetaArch):
    """Per-frame backbone + temporal aggregation + BNNeck head (the video-baseline paper / bag of tricks)."""

    @configurable
    def __init__(self, *, backbone: nn.Module, heads: nn.Module, losses: LossSet,
                 pixel_mean: Sequence[float], pixel_std: Sequence[float],
                 aggregation: Optional[TemporalAggregation] = None, feat_dim: int,
                 frame_chunk: int = 0):
        """
        Args:
            backbone: 2-D backbone mapping ``(N, 3, H, W)`` to ``(N, feat_dim, h, w)``.
            heads: host-style head called as ``heads(x, targets)`` in training (returns the
                dict of ``cls_outputs``, ``pred_class_logits``, ``features``) and ``heads(x)``
                in eval (returns ``(B, D)``), with ``x`` ``(B, feat_dim, 1, 1)``.
            losses: the ``LossSet`` called on the head outputs in training.
            pixel_mean, pixel_std: per-channel normalisation (0..255 scale).
            aggregation: the temporal aggregation of the frame maps (default: average pooling).
            feat_dim: channels of the backbone maps.
            frame_chunk: frames per backbone call at inference (0: all at once;
                ``TEST.VIDEO.FRAME_CHUNK``).
        """
        super().__init__(pixel_mean=pixel_mean, pixel_std=pixel_std)
        self.backbone = backbone
        self.aggregation = aggregation if aggregation is not None else AvgPooling()
        self.heads = heads
        self.losses = losses
        self.feat_dim = int(feat_dim)
        self.frame_chunk = int(frame_chunk)
        self._last_erased: Optional[torch.Tensor] = None  # erased flags of the last training batch

    @classmethod
    def from_config(cls, cfg) -> Dict:
        backbone = build_backbone_offline(cfg)
        channels, map_h, map_w = feature_map_shape(backbone, cfg.INPUT.SIZE_TRAIN)
        if channels != cfg.MODEL.BACKBONE.FEAT_DIM:
            raise ValueError(f"the backbone ({cfg.MODEL.BACKBONE.NAME}, depth "
                             f"{cfg.MODEL.BACKBONE.DEPTH}) outputs {channels} channels but "
                             f"MODEL.BACKBONE.FEAT_DIM is {cfg.MODEL.BACKBONE.FEAT_DIM}; set it "
                             f"to {channels}")
        num_classes = cls.num_classes_of(cfg)
        aggregation = build_aggregation(cfg, cfg.MODEL.TEMPORAL.AGG, channels=channels,
                                        map_size=(map_h, map_w))
        heads = build_heads(cfg)

        emb_dim = cfg.MODEL.HEADS.EMBEDDING_DIM
        neck_feat = cfg.MODEL.HEADS.NECK_FEAT
        if neck_feat not in ("before", "after"):
            raise ValueError(f"MODEL.HEADS.NECK_FEAT must be 'before' or 'after', got {neck_feat!r}")
        loss_feat_dim = emb_dim if (emb_dim > 0 and neck_feat == "after") else channels
        ctx = {"feat_dim": loss_feat_dim, "num_classes": num_classes}
        cls_weight = getattr(heads, "weight", None)
        if isinstance(cls_weight, torch.Tensor) and cls_weight.dim() == 2 \
                and cls_weight.shape[1] == loss_feat_dim:
            ctx["class_embeddings"] = cls_weight  # OSM without CL centers (Wang et al.)
        losses = build_losses(cfg, **ctx)
        return {
            "backbone": backbone,
            "heads": heads,
            "losses": losses,
            **cls.pixel_config(cfg),
            "aggregation": aggregation,
            "feat_dim": channels,
            "frame_chunk": cfg.TEST.VIDEO.FRAME_CHUNK,
        }

    def frame_maps(self, batched_inputs: Union[Dict, torch.Tensor]) -> torch.Tensor:
        """Images (``batched_inputs["images"]`` or a tensor) -> per-frame maps ``(B, T, C', h, w)``."""
        if isinstance(batched_inputs, torch.Tensor):
            batched_inputs = {"images": batched_inputs}
        clips = self.preprocess(batched_inputs)  # (B, T, C, H, W)
        chunk = None if self.training else self.frame_chunk
        maps = frame_features(self.backbone, clips, chunk)  # (B, T, C', h, w)
        if maps.shape[2] != self.feat_dim:
            raise ValueError(f"backbone maps have {maps.shape[2]} channels, expected {self.feat_dim}")
        return maps

    def forward(self, batched_inputs: Union[Dict, torch.Tensor]):
        """Training: ``{loss name: scalar}``; eval: ``(B, D)`` clip embeddings."""
        if isinstance(batched_inputs, torch.Tensor):
            batched_inputs = {"images": batched_inputs}
        maps = self.frame_maps(batched_inputs)
        agg = self.aggregation(maps)
        x = agg.features[..., None, None]  # (B, C', 1, 1) for the host head

        if not self.training:
            return self.heads(x)

        targets = self.batch_targets(batched_inputs)
        outputs = dict(self.heads(x, targets))
        outputs["erased"] = self._erased(batched_inputs, maps.shape[0], maps.shape[1])
        outputs.update(self.aggregation.loss_inputs(agg))
        self._last_erased = outputs["erased"]
        return self.losses(outputs, targets)

    def diagnostics(self) -> Dict[str, float]:
        """The aggregation's diagnostics at the last training forward (``{}`` before it), told
        which frames of that batch were erased (e.g. the temporal attention's ``att_*``)."""
        return self.aggregation.diagnostics(erased=self._last_erased)

    def _erased(self, batched_inputs: Dict, b: int, t: int) -> torch.Tensor:
        """The ``(B, T)`` bool ``erased`` flags (all False when the batch has none)."""
        erased = batched_inputs.get("erased")
        if erased is None:
            return torch.zeros(b, t, dtype=torch.bool, device=self.device)
        erased = torch.as_tensor(erased, device=self.device).to(torch.bool)
        if erased.dim() == 1 and t == 1:
            erased = erased.view(b, 1)
        if tuple(erased.shape) != (b, t):
            raise ValueError(f"batched_inputs['erased'] must be (B, T) = {(b, t)}, "
                             f"got {tuple(erased.shape)}")
        return erased
