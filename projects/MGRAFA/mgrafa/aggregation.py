"""Multi-granularity attentive aggregation of frame maps (the MG-RAFA paper, sections 3.2-3.3).

:class:`MultiGranularityAggregation` turns ``(B, T, C, H, W)`` frame maps into the clip vector
``v = [v_1 .. v_N]`` ``(B, C)``: the channels are split into ``N`` groups; group ``m`` is
spatially average-pooled by ``2^(m-1)`` ("multi") or kept at full resolution ("single",
SG-RAFA(S)); each group gets its own reference nodes, relations, attention (Eq. (5)-(6)) and
softmax-weighted sum (Eq. (4)). ``attention="avg"`` is the paper's Baseline (global
spatio-temporal average pooling); ``nl_s`` / ``nl_st`` (Table 4) refine the maps with a
non-local block before that average; ``rga_sc`` / ``se`` / ``cbam`` (Table 5) gate each group's
maps per frame and average them.

Every variant is registered in the core's temporal-aggregation registry as ``mgrafa_<attention>``
(:func:`registry_name`), built from ``MODEL.MGRAFA``: ``MODEL.MGRAFA.ATTENTION`` picks it for
the MG-RAFA head, and ``MODEL.TEMPORAL.AGG mgrafa_<attention>`` puts it in the video baseline.
"""
from __future__ import annotations

import math
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from torch import nn

from fastreid_ext.modeling.aggregation import (
    AGGREGATION_REGISTRY,
    AggregationOutput,
    TemporalAggregation,
    frame_share,
)

from .comparisons import NonLocalRefine, RGAGate
from .config import GRANULARITIES, validate_mgrafa_config
from .gated_attention import CBAMGate, GatedAverage, SEGate
from .nodes import (
    check_clip,
    granularity_size,
    num_reference_nodes,
    pool_spatial,
    reference_nodes,
    softmax_aggregate,
    temporal_residual_nodes,
    to_nodes,
)
from .rafa import AppearanceAttention, ReferenceAidedAttention

#: ``MODEL.MGRAFA.SCORE_INPUT``: what the attention scores are computed from
SCORE_INPUTS = ("node", "temporal_residual")
ATTENTIONS = ("avg", "rafa", "afa", "se", "cbam", "rga_sc", "nl_s", "nl_st")
#: attentions that refine the full maps and then average (single group)
_SINGLE_GROUP = ("avg", "nl_s", "nl_st")
#: registry names of the variants: ``mgrafa_<attention>``
REGISTRY_PREFIX = "mgrafa_"


def registry_name(attention: str) -> str:
    """The registry name of ``MODEL.MGRAFA.ATTENTION`` ``attention`` (``KeyError`` if unknown)."""
    if attention not in ATTENTIONS:
        raise KeyError(f"unknown MODEL.MGRAFA.ATTENTION {attention!r}; known: {ATTENTIONS}")
    return REGISTRY_PREFIX + attention


def group_sizes(feat_size: Sequence[int], num_groups: int, granularity: str) -> List[Tuple[int, int]]:
    """Spatial size of every group: ``(H / 2^(m-1), W / 2^(m-1))`` for ``multi``, ``(H, W)`` for
    ``single``."""
    h, w = int(feat_size[0]), int(feat_size[1])
    if granularity == "multi":
        return [granularity_size(h, w, m) for m in range(1, num_groups + 1)]
    if granularity == "single":
        return [(h, w)] * num_groups
    raise KeyError(f"unknown MODEL.MGRAFA.GRANULARITY {granularity!r}; known: {', '.join(GRANULARITIES)}")


class MultiGranularityAggregation(TemporalAggregation):
    """Aggregate ``(B, T, C, H, W)`` frame maps into ``v`` ``(B, C)``.

    Args:
        channels: ``C`` (must be divisible by ``num_groups``).
        feat_size: ``(H, W)`` of the frame maps (16x8 for 256x128 inputs, ResNet-50 last stride 1).
        num_frames: ``T`` the reference sets are sized for; only used (and checked) by the
            strategies whose ``D`` depends on ``T`` (``spatial_pool``, ``temporal_pool``, ``all``).
        attention: ``avg`` | ``rafa`` | ``afa`` | ``se`` | ``cbam`` | ``rga_sc`` | ``nl_s`` | ``nl_st``.
        num_groups: ``N`` granularities (``multi``) or ``S`` splits (``single``).
        granularity: ``multi`` | ``single``.
        reduction: ``s`` of Eq. (1)-(3) (and of the SE / CBAM MLPs).
        reference, ref_spatial_size, ref_temporal_size: the S-RFN strategy (Table 3).
        att_init: ``uniform`` (rafa / afa start at the average baseline) or ``random``.
        score_input: ``node`` (Eq. (1)-(3): the scores of node ``x_i`` are computed from
            ``x_i``) or ``temporal_residual`` (ours: from ``x_i`` minus the temporal mean at its
            position, :func:`mgrafa.nodes.temporal_residual_nodes`; the aggregation of Eq. (4)
            still sums the nodes themselves).
        lr_factor: learning-rate factor of the aggregation's own parameters (the attention;
            ``MODEL.MGRAFA.ATT_LR_FACTOR``), read by the trainer through :meth:`lr_factor_params`.

    The names and numbers taken from the config are validated values
    (:func:`mgrafa.config.validate_mgrafa_config`).
    """

    def __init__(self, channels: int, feat_size: Sequence[int], num_frames: int = 8,
                 attention: str = "rafa", num_groups: int = 4, granularity: str = "multi",
                 reduction: int = 8, reference: str = "temporal_avg",
                 ref_spatial_size: Sequence[int] = (8, 2), ref_temporal_size: int = 2,
                 att_init: str = "uniform", lr_factor: float = 1.0, score_input: str = "node"):
        super().__init__()
        self.score_input = score_input
        self.lr_factor = float(lr_factor)
        if attention in _SINGLE_GROUP:
            num_groups = 1
        if num_groups < 1 or channels % num_groups:
            raise ValueError(f"{channels} channels cannot be split into {num_groups} groups")
        self.channels, self.attention, self.num_groups = channels, attention, num_groups
        self.feat_size = (int(feat_size[0]), int(feat_size[1]))
        self.num_frames = int(num_frames)
        self.reference = reference
        self.ref_spatial_size = tuple(int(s) for s in ref_spatial_size)
        self.ref_temporal_size = int(ref_temporal_size)
        self.sizes = group_sizes(self.feat_size, num_groups, granularity)
        c_g = channels // num_groups
        blocks = []
        for size in self.sizes:
            if attention == "rafa":
                d = num_reference_nodes(reference, size[0], size[1], self.num_frames,
                                        self.ref_spatial_size, self.ref_temporal_size)
                blocks.append(ReferenceAidedAttention(c_g, d, reduction, att_init))
            elif attention == "afa":
                blocks.append(AppearanceAttention(c_g, reduction, att_init))
            elif attention in ("nl_s", "nl_st"):
                blocks.append(NonLocalRefine(c_g, "spatial" if attention == "nl_s" else "spatiotemporal"))
            elif attention == "rga_sc":
                blocks.append(GatedAverage(RGAGate(c_g, size, reduction)))
            elif attention == "se":
                blocks.append(GatedAverage(SEGate(c_g, reduction)))
            elif attention == "cbam":
                blocks.append(GatedAverage(CBAMGate(c_g, reduction)))
        self.blocks = nn.ModuleList(blocks)
        self.last_scores: List[torch.Tensor] = []  # detached pre-softmax scores of the last training forward

    def lr_factor_params(self):
        """``(parameter, factor)`` for the aggregation's parameters (an opt-in hook read by
        ``fastreid_ext.engine.param_groups.lr_factors``): the scores' contrast is bounded by theta's BN
        gamma, which Adam moves by about the learning rate per step, so at the backbone's
        learning rate the attention needs thousands of steps to leave the average (README)."""
        return [(p, self.lr_factor) for p in self.blocks.parameters()] if self.lr_factor != 1.0 else []

    @property
    def fixed_weights(self) -> bool:
        """avg / nl_s / nl_st weight every node ``1 / K`` whatever the input."""
        return self.attention in _SINGLE_GROUP

    @property
    def reference_depends_on_t(self) -> bool:
        return self.attention == "rafa" and self.reference != "temporal_avg"

    def _check(self, x: torch.Tensor) -> None:
        check_clip(x)
        if x.shape[2] != self.channels:
            raise ValueError(f"expected {self.channels} channels, got {x.shape[2]}")
        if self.attention == "avg":
            return
        if tuple(x.shape[3:]) != self.feat_size:
            raise ValueError(
                f"frame maps are {tuple(x.shape[3:])} but the module was built for "
                f"{self.feat_size} (INPUT.SIZE_TRAIN / SIZE_TEST and MODEL.BACKBONE.LAST_STRIDE)"
            )
        if self.reference_depends_on_t and x.shape[1] != self.num_frames:
            raise ValueError(
                f"REFERENCE={self.reference!r} is sized for T={self.num_frames} frames, got "
                f"T={x.shape[1]}; use the same T at test time (TEST.VIDEO.SEQ_LEN)"
            )

    def forward(self, x: torch.Tensor) -> AggregationOutput:
        """``x`` ``(B, T, C, H, W)`` -> :class:`AggregationOutput` with

        - ``features``: ``v`` ``(B, C)``, the concatenation ``[v_1 .. v_N]`` (section 3.3);
        - ``group_features``: list of ``N`` tensors ``(B, C/N)`` (``v_g`` of Eq. (7));
        - ``node_weights``: list of ``N`` tensors ``(B, C/N, T, H_m, W_m)``, the normalised
          attention of every node (softmax over the ``T*H_m*W_m`` nodes per channel for rafa /
          afa; ``1/K`` everywhere for avg, an expanded view);
        - ``frame_weights``: ``(B, T)``, :func:`~fastreid_ext.modeling.aggregation.frame_share`
          of the node weights.
        """
        self._check(x)
        b, t = x.shape[:2]
        if self.attention in ("nl_s", "nl_st"):
            x = self.blocks[0](x)  # Table 4: non-local refinement, then the average
        if self.attention in _SINGLE_GROUP:
            h, w = x.shape[3:]
            v = x.mean(dim=(1, 3, 4))  # (B, C)
            weights = torch.full((1, 1, 1, 1, 1), 1.0 / (t * h * w), dtype=x.dtype,
                                 device=x.device).expand(b, self.channels, t, h, w)  # a view
            return _output(v, [v], [weights])
        group_features, group_weights, scores_kept = [], [], []
        for x_m, size, block in zip(x.chunk(self.num_groups, dim=2), self.sizes, self.blocks):
            x_m = pool_spatial(x_m, size)  # (B, T, C/N, H_m, W_m)
            if self.attention in ("rafa", "afa"):
                nodes = to_nodes(x_m)  # (B, C/N, K_m)
                # the reference of group m: the temporal mean of its pooled maps (section 3.3)
                ref = (reference_nodes(x_m, self.reference, self.ref_spatial_size,
                                       self.ref_temporal_size)
                       if self.attention == "rafa" else None)  # (B, C/N, D_m)
                score_nodes = temporal_residual_nodes(x_m) if self.score_input == "temporal_residual" else nodes
                scores = block(score_nodes, ref)  # (B, C/N, K_m)
                if self.training:
                    scores_kept.append(scores.detach())
                v_m, w_m = softmax_aggregate(scores, nodes)
            else:
                v_m, w_m = block(x_m)
            group_features.append(v_m)
            group_weights.append(w_m.reshape(b, -1, t, size[0], size[1]).contiguous())
        if self.training:
            self.last_scores = scores_kept
        return _output(torch.cat(group_features, dim=1), group_features, group_weights)

    @torch.no_grad()
    def diagnostics(self, erased: Optional[torch.Tensor] = None) -> Dict[str, float]:
        """Attention scalars of the last training forward (rafa / afa): per group ``m``
        ``att_entropy_g{m}`` (entropy of the node weights over ``log K_m``: 1 = uniform, the
        average baseline; mean over clips and channels) and ``att_spread_g{m}`` ((max - min)
        weight x ``K_m``: 0 = uniform); ``att_dead_frac`` = fraction of pre-softmax scores
        exactly 0 (dead ReLU, no gradient)."""
        out: Dict[str, float] = {}
        dead, total = 0, 0
        for m, scores in enumerate(self.last_scores, start=1):
            k = scores.shape[-1]
            w = torch.softmax(scores.float(), dim=-1)
            ent = -(w * torch.log(w.clamp(min=1e-30))).sum(dim=-1)
            out[f"att_entropy_g{m}"] = float(ent.mean() / math.log(k)) if k > 1 else 1.0
            out[f"att_spread_g{m}"] = float(((w.amax(dim=-1) - w.amin(dim=-1)) * k).mean())
            dead += int((scores == 0).sum())
            total += scores.numel()
        if total:
            out["att_dead_frac"] = dead / total
        return out


def _output(v: torch.Tensor, group_features: List[torch.Tensor],
            node_weights: List[torch.Tensor]) -> AggregationOutput:
    return AggregationOutput(features=v, frame_weights=frame_share(node_weights),
                             node_weights=node_weights, group_features=group_features)


def _variant_builder(attention: str):
    """Builder of the ``attention`` variant from ``MODEL.MGRAFA`` (the registry's signature)."""
    def build(cfg, channels: int, map_size: Sequence[int]) -> MultiGranularityAggregation:
        validate_mgrafa_config(cfg)  # build_config ran it; again for a config made by hand
        m = cfg.MODEL.MGRAFA
        return MultiGranularityAggregation(
            channels=channels, feat_size=map_size, num_frames=m.NUM_FRAMES or cfg.INPUT.VIDEO.SEQ_LEN,
            attention=attention, num_groups=m.NUM_GROUPS, granularity=m.GRANULARITY,
            reduction=m.REDUCTION, reference=m.REFERENCE, ref_spatial_size=m.REF_SPATIAL_SIZE,
            ref_temporal_size=m.REF_TEMPORAL_SIZE, att_init=m.ATT_INIT,
            lr_factor=m.ATT_LR_FACTOR, score_input=m.SCORE_INPUT)
    build.__name__ = build.__qualname__ = registry_name(attention)
    build.__doc__ = f"MG-RAFA's ``{attention}`` aggregation built from ``MODEL.MGRAFA``."
    return build


for _attention in ATTENTIONS:
    AGGREGATION_REGISTRY.register_as(registry_name(_attention))(_variant_builder(_attention))
