"""The temporal-aggregation contract and its registry.

A temporal aggregation turns the per-frame feature maps of a clip into one clip feature:

    maps (B, T, C, h, w)  --TemporalAggregation-->  AggregationOutput(
        features       (B, C)   the clip feature the head sees,
        frame_weights  (B, T)   each frame's share of it (>= 0, summing to 1 over T),
        scores         (B, T)   optional raw (pre-normalisation) frame scores,
        node_weights   [(B, C_g, T, h_g, w_g)]  optional per-node weights, one tensor per
                                channel group (each channel's weights sum to 1 over its nodes,
                                or are gates / K for a gated average),
        group_features [(B, C_g)]  optional per-group features, concatenated = ``features``)

and declares what it measures:

- ``diagnostics(erased=None) -> {name: float}``: scalars of its last *training* forward, logged
  by the trainer as ``diag/<name>`` through the meta-architecture's ``diagnostics()``
  (``erased``: the ``(B, T)`` flags of that batch's randomly erased frames, when the model has
  them);
- ``fixed_weights``: ``True`` when the weights do not depend on the input (average pooling), so
  measures of what the weights favour mean nothing;
- ``loss_inputs(out)``: the head-output entries the losses read (``attention_scores`` from
  ``scores``, ``attention_weights`` from ``frame_weights`` unless the weights are fixed), e.g.
  the attention loss (:mod:`fastreid_ext.modeling.losses.attention_loss`).

Aggregations are registered by name in :data:`AGGREGATION_REGISTRY` (like detectron2's
``POINT_HEAD_REGISTRY``); the registered object is a builder called as
``builder(cfg, channels=C, map_size=(h, w))`` (a class with a ``@configurable`` ``__init__``
and ``from_config(cls, cfg, channels, map_size)``, or a function). The video baseline picks one
with ``MODEL.TEMPORAL.AGG``; projects register theirs when imported.

A meta-architecture that aggregates clips holds exactly one :class:`TemporalAggregation`
submodule (found by :func:`aggregation_of`) and exposes ``frame_maps(batched_inputs)`` giving
the maps it feeds it, so tools measure any aggregation the same way.
"""
from __future__ import annotations

from typing import Callable, Dict, List, NamedTuple, Optional, Sequence

import torch
from torch import nn

from fastreid.utils.registry import Registry

__all__ = ["AggregationOutput", "TemporalAggregation", "AggregationRegistry", "AGGREGATION_REGISTRY",
           "build_aggregation", "aggregation_of", "frame_share", "SCORES_KEY", "FRAME_WEIGHTS_KEY"]

#: head-output keys the losses read (:meth:`TemporalAggregation.loss_inputs`)
SCORES_KEY = "attention_scores"
FRAME_WEIGHTS_KEY = "attention_weights"


class AggregationOutput(NamedTuple):
    """What every :class:`TemporalAggregation` returns (shapes in the module docstring)."""

    features: torch.Tensor
    frame_weights: torch.Tensor
    scores: Optional[torch.Tensor] = None
    node_weights: Optional[List[torch.Tensor]] = None
    group_features: Optional[List[torch.Tensor]] = None


class TemporalAggregation(nn.Module):
    """Base class of the registered aggregations: ``forward(maps (B, T, C, h, w))`` returns an
    :class:`AggregationOutput`."""

    #: the weights do not depend on the input (average pooling)
    fixed_weights: bool = False

    def forward(self, maps: torch.Tensor) -> AggregationOutput:  # pragma: no cover - interface
        raise NotImplementedError

    def diagnostics(self, erased: Optional[torch.Tensor] = None) -> Dict[str, float]:
        """Scalars measured at the last training forward (``{}``: nothing to report)."""
        return {}

    def loss_inputs(self, out: AggregationOutput) -> Dict[str, torch.Tensor]:
        """Head-output entries for the losses: ``attention_scores`` (the raw ``scores``, when
        given) and ``attention_weights`` (``frame_weights``, unless they are fixed)."""
        entries = {}
        if out.scores is not None:
            entries[SCORES_KEY] = out.scores
        if not self.fixed_weights:
            entries[FRAME_WEIGHTS_KEY] = out.frame_weights
        return entries


class AggregationRegistry(Registry):
    """The host's ``Registry`` with explicit names (``register_as``) and a public name list."""

    def register_as(self, name: str) -> Callable[[Callable], Callable]:
        """Decorator registering a builder under ``name`` (the config value that selects it)."""
        def deco(builder: Callable) -> Callable:
            self._do_register(name, builder)
            return builder
        return deco

    def names(self) -> List[str]:
        return sorted(self._obj_map)

    def __contains__(self, name: str) -> bool:
        return name in self._obj_map


AGGREGATION_REGISTRY = AggregationRegistry("TEMPORAL_AGGREGATION")
AGGREGATION_REGISTRY.__doc__ = """Temporal aggregations, chosen by name (``MODEL.TEMPORAL.AGG``)."""


def build_aggregation(cfg, name: str, *, channels: int, map_size: Sequence[int],
                      key: str = "MODEL.TEMPORAL.AGG") -> TemporalAggregation:
    """The aggregation registered as ``name`` for ``channels``-channel maps of ``map_size``
    ``(h, w)``; an unknown ``name`` raises ``ValueError`` naming ``key`` and the known names."""
    if name not in AGGREGATION_REGISTRY:
        raise ValueError(f"unknown {key} {name!r}; known: {', '.join(AGGREGATION_REGISTRY.names())}")
    agg = AGGREGATION_REGISTRY.get(name)(cfg, channels=int(channels),
                                         map_size=(int(map_size[0]), int(map_size[1])))
    if not isinstance(agg, TemporalAggregation):
        raise TypeError(f"the aggregation registered as {name!r} built a {type(agg).__name__}, "
                        "not a TemporalAggregation")
    return agg


def aggregation_of(model: nn.Module) -> Optional[TemporalAggregation]:
    """The one :class:`TemporalAggregation` submodule of ``model`` (``None`` when it has none;
    more than one raises ``ValueError``)."""
    found = [m for m in model.modules() if isinstance(m, TemporalAggregation)]
    if len(found) > 1:
        raise ValueError(f"{type(model).__name__} holds {len(found)} temporal aggregations; "
                         "the contract expects one")
    return found[0] if found else None


def frame_share(node_weights: Sequence[torch.Tensor]) -> torch.Tensor:
    """``(B, T)`` frame weights of per-node weights (one ``(B, C_g, T, h_g, w_g)`` tensor per
    group): per channel, the weight mass of each frame normalised over ``T``, averaged over all
    channels of all groups."""
    mass = torch.cat([w.sum(dim=(-2, -1)) for w in node_weights], dim=1)  # (B, C, T)
    return (mass / mass.sum(dim=-1, keepdim=True)).mean(dim=1)
