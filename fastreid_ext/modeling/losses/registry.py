"""The loss registry the host lacks.

The host picks losses by string membership in ``Baseline.losses()``
(``fastreid/modeling/meta_arch/baseline.py:151-179``) and silently ignores unknown names.
Here every loss is a registered :class:`ReIDLoss` subclass chosen by name in
``MODEL.LOSSES.NAME``; each reads its weight and hyper-parameters from its own node
``MODEL.LOSSES.<CFG_KEY>``; an unknown name raises with the list of known ones.

A loss module is called as ``loss(outputs, targets) -> Tensor`` (already multiplied by its
``SCALE``), where ``outputs`` is the dict a head returns in training. Conventional keys:

- ``cls_outputs``: logits for the classification loss, (B, C)
- ``pred_class_logits``: logits without margin, for accuracy logging, (B, C)
- ``features``: the embedding metric losses use, (B, D)
- ``attention_scores``: pre-softmax temporal attention scores, (B, T)
- ``erased``: which frames were randomly erased, bool (B, T)

A loss that needs another key names it in ``required_keys``; a missing key raises a clear error.
"""
from __future__ import annotations

from typing import Dict, Iterable, List, Optional, Tuple

import torch
from fastreid.utils.registry import Registry
from torch import nn

LOSS_REGISTRY = Registry("LOSS")
LOSS_REGISTRY.__doc__ = """Registry for ReID losses, chosen by name in ``MODEL.LOSSES.NAME``."""


class ReIDLoss(nn.Module):
    """Base class of registered losses.

    Subclasses set ``output_name`` (the key in the returned loss dict, e.g. ``loss_cls``),
    ``required_keys`` and implement ``from_config(cls, cfg, **ctx)`` and ``forward``.
    ``ctx`` carries what the model knows and the config does not: ``feat_dim``,
    ``num_classes``.
    """

    output_name: str = "loss"
    required_keys: Tuple[str, ...] = ("features",)

    @classmethod
    def from_config(cls, cfg, **ctx) -> "ReIDLoss":  # pragma: no cover - interface
        raise NotImplementedError

    def own_optimizer(self) -> Optional[torch.optim.Optimizer]:
        """An optimizer for this loss's own parameters (e.g. the centers of the center loss),
        stepped by the trainer after the main one; ``None`` when the loss has none."""
        return None

    def before_own_step(self) -> None:
        """Called right before ``own_optimizer().step()`` (e.g. to undo the loss weight)."""

    def bind(self, losses: "LossSet") -> None:
        """Called by :func:`build_losses` once every loss is built, so that a loss can use
        another one (e.g. OSM with the center loss's centers, the video-baseline paper "CL centers")."""

    def check_inputs(self, outputs: Dict[str, torch.Tensor]) -> None:
        missing = [k for k in self.required_keys if k not in outputs]
        if missing:
            raise KeyError(
                f"{type(self).__name__} needs head outputs {missing}; the head returned "
                f"{sorted(outputs)}"
            )


def known_losses() -> List[str]:
    return sorted(LOSS_REGISTRY._obj_map.keys())


def get_loss_class(name: str) -> type:
    """The registered loss class called ``name``; raises ``KeyError`` naming the known ones."""
    if name not in LOSS_REGISTRY._obj_map:
        raise KeyError(
            f"Unknown loss {name!r} in MODEL.LOSSES.NAME. Known losses: {', '.join(known_losses())}"
        )
    return LOSS_REGISTRY.get(name)


class LossSet(nn.ModuleDict):
    """The losses of one model, in config order. Calling it returns ``{output_name: loss}``."""

    def forward(self, outputs: Dict[str, torch.Tensor], targets: torch.Tensor,
                prefix: str = "") -> Dict[str, torch.Tensor]:
        result: Dict[str, torch.Tensor] = {}
        for loss in self.values():
            loss.check_inputs(outputs)
            key = prefix + loss.output_name
            if key in result:
                raise KeyError(f"two losses write {key!r}")
            result[key] = loss(outputs, targets)
        return result

    def own_optimizers(self) -> Iterable[Tuple[ReIDLoss, torch.optim.Optimizer]]:
        for loss in self.values():
            opt = loss.own_optimizer()
            if opt is not None:
                yield loss, opt


def build_losses(cfg, names: Optional[Iterable[str]] = None, **ctx) -> LossSet:
    """Build the losses named in ``cfg.MODEL.LOSSES.NAME`` (or ``names``).

    ``ctx``: ``feat_dim``, ``num_classes`` and anything else a loss's ``from_config`` needs.
    """
    names = list(cfg.MODEL.LOSSES.NAME if names is None else names)
    if len(set(names)) != len(names):
        raise ValueError(f"duplicate loss names in MODEL.LOSSES.NAME: {names}")
    losses = LossSet()
    for name in names:
        losses[name] = get_loss_class(name).from_config(cfg, **ctx)
    for loss in losses.values():
        loss.bind(losses)
    return losses
