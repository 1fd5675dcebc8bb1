"""The loss registry the host lacks.

The host picks losses by string membership in ``Baseline.losses()``
(``fastreid/modeling/meta_arch/baseline.py:151-179``) and silently ignores unknown names.
Here every loss is a registered :class:`ReIDLoss` subclass chosen by name in
``MODEL.LOSSES.NAME``; each reads its weight and hyper-parameters from its own node
``MODEL.LOSSES.<config_node>``; an unknown name raises with the list of known ones.

A loss module is called as ``loss(outputs, targets) -> Tensor`` (already multiplied by its
``SCALE``), where ``outputs`` is the dict a head returns in training. Conventional keys:

- ``cls_outputs``: logits for the classification loss, (B, C)
- ``pred_class_logits``: logits without margin, for accuracy logging, (B, C)
- ``features``: the embedding metric losses use, (B, D)
- ``attention_scores``: pre-softmax temporal attention scores, (B, T)
- ``erased``: which frames were randomly erased, bool (B, T)

A loss that needs another key names it in ``required_keys``; a missing key raises a clear error.

Mixed precision: :class:`LossSet` computes every loss in float32 with autocast off (half /
bfloat16 head outputs are cast up first). Under CUDA autocast some ops return float32 (``pow``,
``sum``, ``exp``, ``softmax``) while others keep half (``matmul``, ``linear``), so a loss that
mixes their results with a half accumulator fails (``index_add_(): self (Half) and source
(Float)``) or overflows (``exp`` of a 128-scaled cosine in the circle loss). Losses are cheap
next to the backbone; float32 costs nothing measurable.
"""
from __future__ import annotations

from typing import Any, Dict, Iterable, List, Optional, Tuple

import torch
from torch import nn

from fastreid.utils.registry import Registry

LOSS_REGISTRY = Registry("LOSS")
LOSS_REGISTRY.__doc__ = """Registry for ReID losses, chosen by name in ``MODEL.LOSSES.NAME``."""


class ReIDLoss(nn.Module):
    """Base class of registered losses.

    Subclasses set ``output_name`` (the key in the returned loss dict, e.g. ``loss_cls``),
    ``required_keys``, declare their config once and implement :meth:`compute`:

    - ``config_node``: the node ``MODEL.LOSSES.<config_node>`` the loss reads. Its ``SCALE`` is
      the loss weight: passed to ``__init__`` as ``scale`` and applied by :meth:`forward`, the
      one place that multiplies a loss by its weight.
    - ``config_args``: ``{constructor argument: key of that node}`` for the other settings.

    The default :meth:`from_config` builds ``cls(scale=SCALE, **{arg: node[key]})``; a loss that
    needs what the model knows and the config does not (``ctx``: ``feat_dim``,
    ``num_classes``, ``class_embeddings``) overrides it and starts from :meth:`config_kwargs`.
    """

    output_name: str = "loss"
    required_keys: Tuple[str, ...] = ("features",)
    #: compares samples with each other (triplet, circle, OSM): under DDP the ``LossSet``
    #: gathers its ``required_keys`` and the targets from every rank (``MODEL.LOSSES.GATHER``)
    pairwise: bool = False
    #: ``MODEL.LOSSES.<config_node>``: the node holding ``SCALE`` and the ``config_args`` keys
    config_node: str = ""
    #: constructor argument -> key in ``MODEL.LOSSES.<config_node>`` (``SCALE`` -> ``scale`` implied)
    config_args: Dict[str, str] = {}

    def __init__(self, scale: float = 1.0):
        super().__init__()
        self.scale = float(scale)

    @classmethod
    def config_kwargs(cls, cfg) -> Dict[str, Any]:
        """The constructor arguments read from ``MODEL.LOSSES.<config_node>``: ``scale`` and
        those of ``config_args``."""
        if not cls.config_node:
            raise NotImplementedError(f"{cls.__name__} sets no config_node (its MODEL.LOSSES node)")
        node = cfg.MODEL.LOSSES[cls.config_node]
        kwargs = {arg: node[key] for arg, key in cls.config_args.items()}
        kwargs["scale"] = node.SCALE
        return kwargs

    @classmethod
    def from_config(cls, cfg, **ctx) -> "ReIDLoss":
        return cls(**cls.config_kwargs(cfg))

    def forward(self, outputs: Dict[str, torch.Tensor], targets: torch.Tensor) -> torch.Tensor:
        """The weighted loss: ``SCALE * compute(outputs, targets)``."""
        return self.compute(outputs, targets) * self.scale

    def compute(self, outputs: Dict[str, torch.Tensor], targets: torch.Tensor) -> torch.Tensor:
        """The loss before its weight ``SCALE``."""
        raise NotImplementedError

    def sums_over_batch(self) -> bool:
        """Whether :meth:`compute` is a sum over the batch (or its identities), not a mean. Under
        DDP without gathering, each rank then sums its own share and DDP's gradient average
        would divide the weight by the number of processes; :class:`LossSet` multiplies such a
        loss by the world size, so that the averaged gradient is that of the sum over every
        rank's share."""
        return False

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


def pairwise_losses(names: Iterable[str]) -> List[str]:
    """The names among ``names`` (e.g. ``MODEL.LOSSES.NAME``) of the registered losses that
    compare samples with each other (:attr:`ReIDLoss.pairwise`: triplet, circle, OSM), in the
    given order; unknown names are left out (:func:`get_loss_class` refuses them)."""
    return [n for n in names if getattr(LOSS_REGISTRY._obj_map.get(n), "pairwise", False)]


def get_loss_class(name: str) -> type:
    """The registered loss class called ``name``; raises ``KeyError`` naming the known ones."""
    if name not in LOSS_REGISTRY._obj_map:
        raise KeyError(
            f"Unknown loss {name!r} in MODEL.LOSSES.NAME. Known losses: {', '.join(known_losses())}"
        )
    return LOSS_REGISTRY.get(name)


class LossSet(nn.ModuleDict):
    """The losses of one model, in config order. Calling it returns ``{output_name: loss}``.

    ``gather`` (``MODEL.LOSSES.GATHER``): under DDP, pairwise losses see the whole batch of
    every rank (:mod:`.gather`)."""

    gather: bool = True
    #: rows of every rank's batch when they are known to be equal (DDP training: drop_last
    #: batches of IMS_PER_BATCH / world size, set by ``Trainer.wrap_ddp``): the gathers then
    #: skip the size exchange for inputs of that many rows; 0: sizes exchanged each call
    rank_batch: int = 0

    def forward(self, outputs: Dict[str, torch.Tensor], targets: torch.Tensor,
                prefix: str = "") -> Dict[str, torch.Tensor]:
        import torch.distributed as dist

        from .gather import all_gather_with_grad, distributed

        result: Dict[str, torch.Tensor] = {}
        outputs = {k: _float32(v) for k, v in outputs.items()}  # a new dict: the input is untouched
        global_outputs: Dict[str, torch.Tensor] = {}
        global_targets: Optional[torch.Tensor] = None
        with torch.autocast(device_type=targets.device.type, enabled=False):
            for loss in self.values():
                loss.check_inputs(outputs)
                key = prefix + loss.output_name
                if key in result:
                    raise KeyError(f"two losses write {key!r}")
                if loss.pairwise and self.gather and distributed():
                    for k in loss.required_keys:
                        if k not in global_outputs:
                            global_outputs[k] = all_gather_with_grad(outputs[k], self._known_sizes(outputs[k]))
                    if global_targets is None:
                        global_targets = all_gather_with_grad(targets, self._known_sizes(targets))
                    result[key] = loss(dict(outputs, **global_outputs), global_targets)
                elif loss.sums_over_batch() and distributed():
                    result[key] = loss(outputs, targets) * dist.get_world_size()  # see sums_over_batch
                else:
                    result[key] = loss(outputs, targets)
        return result

    def _known_sizes(self, x: torch.Tensor) -> Optional[List[int]]:
        import torch.distributed as dist

        if self.rank_batch and x.shape[0] == self.rank_batch:
            return [self.rank_batch] * dist.get_world_size()
        return None

    def own_optimizers(self) -> Iterable[Tuple[ReIDLoss, torch.optim.Optimizer]]:
        for loss in self.values():
            opt = loss.own_optimizer()
            if opt is not None:
                yield loss, opt


def _float32(value):
    """Half / bfloat16 tensors (and lists of them) as float32; anything else unchanged."""
    if isinstance(value, torch.Tensor):
        return value.float() if value.dtype in (torch.float16, torch.bfloat16) else value
    if isinstance(value, (list, tuple)):
        return type(value)(_float32(v) for v in value)
    return value


def build_losses(cfg, names: Optional[Iterable[str]] = None, **ctx) -> LossSet:
    """Build the losses named in ``cfg.MODEL.LOSSES.NAME`` (or ``names``).

    ``ctx``: ``feat_dim``, ``num_classes`` and anything else a loss's ``from_config`` needs.
    """
    names = list(cfg.MODEL.LOSSES.NAME if names is None else names)
    if len(set(names)) != len(names):
        raise ValueError(f"duplicate loss names in MODEL.LOSSES.NAME: {names}")
    losses = LossSet()
    losses.gather = bool(cfg.MODEL.LOSSES.GATHER)
    for name in names:
        losses[name] = get_loss_class(name).from_config(cfg, **ctx)
    for loss in losses.values():
        loss.bind(losses)
    return losses
