"""The optimizer's parameter groups: the host's recipe (``fastreid/solver/build.py:180``) and
the opt-in hooks a module uses to change its own parameters' groups.

- ``no_weight_decay_params()``: parameters trained with weight decay 0 (:func:`no_weight_decay_ids`);
- ``lr_factor_params()``: ``(parameter, factor)`` pairs whose learning rate is multiplied by
  ``factor`` (:func:`lr_factors`; the schedulers scale each group's own starting rate);
- the parameters of losses that step their own optimizer (e.g. center-loss centers) are left
  out (:func:`~.train_loop.own_optimizers`).
"""
from __future__ import annotations

from typing import Dict, List

import torch

from fastreid.solver.build import get_default_optimizer_params

from .train_loop import own_optimizers

__all__ = ["lr_factors", "no_weight_decay_ids", "optimizer_param_groups"]


def _opt_in(model: torch.nn.Module, hook_name: str):
    """Everything the submodules of ``model`` that define the opt-in hook ``hook_name()``
    return, in module order."""
    for module in model.modules():
        hook = getattr(module, hook_name, None)
        if callable(hook):
            yield from hook()


def no_weight_decay_ids(model: torch.nn.Module) -> set:
    """``id`` of every parameter that a submodule of ``model`` lists in its
    ``no_weight_decay_params()`` (an opt-in hook, as timm's ``no_weight_decay``): parameters the
    loss gives no gradient, so that weight decay would be the only force on them (e.g. a
    per-channel offset in front of a softmax, which the softmax ignores: under Adam + L2 the
    decay then moves it by about the learning rate every step)."""
    return {id(p) for p in _opt_in(model, "no_weight_decay_params")}


def lr_factors(model: torch.nn.Module) -> Dict[int, float]:
    """``{id(parameter): factor}`` from every submodule's ``lr_factor_params()`` (an opt-in hook
    returning ``(parameter, factor)`` pairs, e.g. an attention that needs a larger learning rate
    than the backbone). A parameter named twice with different factors is an error."""
    out: Dict[int, float] = {}
    for p, factor in _opt_in(model, "lr_factor_params"):
        if out.get(id(p), factor) != factor:
            raise ValueError(f"a parameter has two learning-rate factors: {out[id(p)]} and {factor}")
        out[id(p)] = float(factor)
    return out


def optimizer_param_groups(cfg, model: torch.nn.Module) -> List[dict]:
    """The host's parameter groups over every parameter except those of losses that step their
    own optimizer, with weight decay 0 for :func:`no_weight_decay_ids` and the learning rate
    multiplied by :func:`lr_factors`."""
    excluded = set()
    for loss, _ in own_optimizers(model):
        excluded.update(id(p) for p in loss.parameters())
    params = get_default_optimizer_params(
        model, base_lr=cfg.SOLVER.BASE_LR, weight_decay=cfg.SOLVER.WEIGHT_DECAY,
        weight_decay_norm=cfg.SOLVER.WEIGHT_DECAY_NORM, bias_lr_factor=cfg.SOLVER.BIAS_LR_FACTOR,
        heads_lr_factor=cfg.SOLVER.HEADS_LR_FACTOR, weight_decay_bias=cfg.SOLVER.WEIGHT_DECAY_BIAS,
        freeze_layers=cfg.MODEL.FREEZE_LAYERS if cfg.SOLVER.FREEZE_ITERS > 0 else [])
    params = [g for g in params if id(g["params"][0]) not in excluded]
    no_decay, factors = no_weight_decay_ids(model), lr_factors(model)
    for g in params:
        if id(g["params"][0]) in no_decay:
            g["weight_decay"] = 0.0
        if id(g["params"][0]) in factors:
            g["lr"] = g["lr"] * factors[id(g["params"][0])]
    return params
