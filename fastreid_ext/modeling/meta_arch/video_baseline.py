"""Video baseline of Pathak et al. ("Video Person Re-ID: Fantastic Techniques and Where to Find
Them", Pathak et al., AAAI 2020 student abstract) with the bag of tricks (Luo et al. 2019).

    clips (B, T, 3, H, W) --host backbone per frame--> maps (B, T, C, h, w)
      --GAP--> (B, T, C) --temporal aggregation--> (B, C) --BNNeck head--> embedding / logits

Temporal aggregation (``MODEL.TEMPORAL.AGG``):

- ``avg``: mean of the per-frame GAP features;
- ``attention``: Gao & Nevatia's temporal attention (Conv2d over the whole frame map + ReLU,
  Conv1d over time + ReLU, softmax over T; :class:`~fastreid_ext.modeling.layers.TemporalAttention`).
  The Conv2d kernel is the frame-map size for ``INPUT.SIZE_TRAIN``, measured once on the built
  backbone (e.g. 16x8 for 256x128 with last stride 1); other map sizes are adaptively pooled
  to it.

The head is the host's (``MODEL.HEADS.NAME``, normally ``EmbeddingHead`` with
``WITH_BNNECK True``) applied to the clip feature viewed as a ``(B, C, 1, 1)`` map (its pooling
is then the identity). ``MODEL.HEADS.NECK_FEAT`` picks the feature the metric losses see:
``after`` (post-BN, what the video-baseline paper and the method notes use) or ``before`` (pre-BN, as in Luo
et al.'s image baseline). Evaluation returns the post-BN ``(B, D)`` embedding.

Losses come from the plugin's registry (``MODEL.LOSSES.NAME``) and are reachable as
``model.losses`` (a ``LossSet``; the trainer steps their own optimizers, e.g. the center loss's).

:meth:`VideoBaseline.diagnostics` reports, for the last training batch, whether the temporal
attention is alive: ``att_dead_frac`` (fraction of clips whose pre-softmax scores are all 0,
i.e. a plain average with no gradient into the attention), ``att_entropy`` (mean entropy of the
softmax weights; ``log T`` for a uniform average) and ``att_entropy_norm`` (the same divided by
``log T``). See :mod:`fastreid_ext.modeling.losses.attention_loss` for why the faithful
attention loss (``MODEL.LOSSES.ATT.TARGET scores``) drives the scores to 0.
"""
from __future__ import annotations

import math
from typing import Dict, Optional, Sequence, Union

import torch
from torch import nn

from fastreid.config import configurable
from fastreid.modeling.heads import build_heads
from fastreid.modeling.meta_arch import META_ARCH_REGISTRY

from ..layers.temporal_attention import TemporalAttention, temporal_weighted_sum
from ..losses import LossSet, build_losses
from ..video_utils import build_backbone_offline, feature_map_shape, frame_features
from .base import ReidMetaArch

__all__ = ["VideoBaseline", "TEMPORAL_AGGREGATIONS", "attention_diagnostics"]

TEMPORAL_AGGREGATIONS = ("avg", "attention")


@META_ARCH_REGISTRY.register()
class VideoBaseline(ReidMetaArch):
    """Per-frame backbone + temporal aggregation + BNNeck head (the video-baseline paper / bag of tricks)."""

    @configurable
    def __init__(self, *, backbone: nn.Module, heads: nn.Module, losses: LossSet,
                 pixel_mean: Sequence[float], pixel_std: Sequence[float],
                 temporal_agg: str = "avg", temporal_attention: Optional[TemporalAttention] = None,
                 feat_dim: int, frame_chunk: int = 0):
        """
        Args:
            backbone: 2-D backbone mapping ``(N, 3, H, W)`` to ``(N, feat_dim, h, w)``.
            heads: host-style head called as ``heads(x, targets)`` in training (returns the
                dict of ``cls_outputs``, ``pred_class_logits``, ``features``) and ``heads(x)``
                in eval (returns ``(B, D)``), with ``x`` ``(B, feat_dim, 1, 1)``.
            losses: the ``LossSet`` called on the head outputs in training.
            pixel_mean, pixel_std: per-channel normalisation (0..255 scale).
            temporal_agg: ``"avg"`` or ``"attention"`` (then ``temporal_attention`` is needed).
            feat_dim: channels of the backbone maps.
            frame_chunk: frames per backbone call at inference (0: all at once;
                ``TEST.VIDEO.FRAME_CHUNK``).
        """
        super().__init__(pixel_mean=pixel_mean, pixel_std=pixel_std)
        if temporal_agg not in TEMPORAL_AGGREGATIONS:
            raise ValueError(f"unknown MODEL.TEMPORAL.AGG {temporal_agg!r}; "
                             f"known: {', '.join(TEMPORAL_AGGREGATIONS)}")
        if temporal_agg == "attention" and temporal_attention is None:
            raise ValueError("MODEL.TEMPORAL.AGG 'attention' needs a temporal_attention module")
        self.backbone = backbone
        self.temporal_agg = temporal_agg
        self.temporal_attention = temporal_attention if temporal_agg == "attention" else None
        self.heads = heads
        self.losses = losses
        self.feat_dim = int(feat_dim)
        self.frame_chunk = int(frame_chunk)
        self._last_attention: Optional[Dict[str, torch.Tensor]] = None  # detached, last training batch

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
        agg = cfg.MODEL.TEMPORAL.AGG
        if agg not in TEMPORAL_AGGREGATIONS:
            raise ValueError(f"unknown MODEL.TEMPORAL.AGG {agg!r}; known: "
                             f"{', '.join(TEMPORAL_AGGREGATIONS)}")
        att = cfg.MODEL.LOSSES.ATT
        if agg == "attention" and "AttentionLoss" in cfg.MODEL.LOSSES.NAME and att.TARGET == "scores" \
                and cfg.MODEL.TEMPORAL.ATT_SCORE_ACT == "none":
            raise ValueError("MODEL.LOSSES.ATT.TARGET 'scores' needs MODEL.TEMPORAL.ATT_SCORE_ACT "
                             "'relu': without it the scores are unbounded below and so is the loss")
        attention = (TemporalAttention(channels, cfg.MODEL.TEMPORAL.ATT_DIM, (map_h, map_w),
                                       init=cfg.MODEL.TEMPORAL.ATT_INIT,
                                       score_act=cfg.MODEL.TEMPORAL.ATT_SCORE_ACT)
                     if agg == "attention" else None)
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
            "temporal_agg": agg,
            "temporal_attention": attention,
            "feat_dim": channels,
            "frame_chunk": cfg.TEST.VIDEO.FRAME_CHUNK,
        }

    def aggregate(self, maps: torch.Tensor) -> Dict[str, torch.Tensor]:
        """Temporal aggregation of frame maps ``(B, T, C, h, w)``.

        Returns ``{"clip_features": (B, C), "frame_weights": (B, T)}`` plus
        ``"attention_scores": (B, T)`` (pre-softmax) with attention.
        """
        frame_feats = maps.mean(dim=(-2, -1))  # (B, T, C) per-frame GAP
        if self.temporal_attention is None:
            b, t = frame_feats.shape[:2]
            weights = frame_feats.new_full((b, t), 1.0 / t)
            return {"clip_features": frame_feats.mean(dim=1), "frame_weights": weights}
        weights, scores = self.temporal_attention(maps)
        return {"clip_features": temporal_weighted_sum(frame_feats, weights),
                "frame_weights": weights, "attention_scores": scores}

    def forward(self, batched_inputs: Union[Dict, torch.Tensor]):
        """Training: ``{loss name: scalar}``; eval: ``(B, D)`` clip embeddings."""
        if isinstance(batched_inputs, torch.Tensor):
            batched_inputs = {"images": batched_inputs}
        clips = self.preprocess(batched_inputs)  # (B, T, C, H, W)
        chunk = None if self.training else self.frame_chunk
        maps = frame_features(self.backbone, clips, chunk)  # (B, T, C', h, w)
        if maps.shape[2] != self.feat_dim:
            raise ValueError(f"backbone maps have {maps.shape[2]} channels, expected {self.feat_dim}")
        agg = self.aggregate(maps)
        x = agg["clip_features"][..., None, None]  # (B, C', 1, 1) for the host head

        if not self.training:
            return self.heads(x)

        targets = self.batch_targets(batched_inputs)
        outputs = dict(self.heads(x, targets))
        outputs["erased"] = self._erased(batched_inputs, clips.shape[0], clips.shape[1])
        if "attention_scores" in agg:
            outputs["attention_scores"] = agg["attention_scores"]
            outputs["attention_weights"] = agg["frame_weights"]
            self._last_attention = {"scores": agg["attention_scores"].detach(),
                                    "weights": agg["frame_weights"].detach(),
                                    "erased": outputs["erased"]}
        return self.losses(outputs, targets)

    def diagnostics(self) -> Dict[str, float]:
        """Health of the temporal attention at the last training forward (``{}`` before the
        first one or without attention): ``att_dead_frac``, ``att_entropy``,
        ``att_entropy_norm`` (entropy / ``log T``; 1 = plain average) and ``att_score_mean``."""
        if self.temporal_attention is None or self._last_attention is None:
            return {}
        return attention_diagnostics(**self._last_attention)

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


def attention_diagnostics(scores: torch.Tensor, weights: torch.Tensor,
                          erased: Optional[torch.Tensor] = None) -> Dict[str, float]:
    """Plain-float health measures of temporal attention ``scores`` / softmax ``weights``
    (both ``(B, T)``): fraction of clips whose scores are all zero (``att_dead_frac``) or all
    equal (``att_flat_frac``: the weights are exactly ``1/T``), mean
    entropy of the weights (``att_entropy``), that entropy over ``log T`` (``att_entropy_norm``;
    ``T = 1`` gives 0) and the mean score (``att_score_mean``). With ``erased`` flags
    ``(B, T)`` and at least one erased frame, also ``att_erased_weight``: the mean weight of an
    erased frame times ``T`` (1 = as in a plain average, < 1 = the attention avoids them)."""
    if scores.shape != weights.shape or scores.dim() != 2:
        raise ValueError(f"scores {tuple(scores.shape)} and weights {tuple(weights.shape)} "
                         "must both be (B, T)")
    scores, weights = scores.detach().double(), weights.detach().double()
    t = scores.shape[1]
    dead = (scores.abs().amax(dim=1) == 0).double().mean().item()
    flat = ((scores.amax(dim=1) - scores.amin(dim=1)) == 0).double().mean().item()
    entropy = -(weights * weights.clamp_min(1e-300).log()).sum(dim=1).mean().item()
    out = {
        "att_dead_frac": dead,
        "att_flat_frac": flat,
        "att_entropy": entropy,
        "att_entropy_norm": entropy / math.log(t) if t > 1 else 0.0,
        "att_score_mean": scores.mean().item(),
    }
    if erased is not None:
        if erased.shape != scores.shape:
            raise ValueError(f"erased {tuple(erased.shape)} must be (B, T) = {tuple(scores.shape)}")
        mask = erased.detach().to(device=weights.device, dtype=torch.bool)
        if bool(mask.any()):
            out["att_erased_weight"] = weights[mask].mean().item() * t
    return out
