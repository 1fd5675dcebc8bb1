"""Metric losses over the global batch under DDP.

With ``W`` processes each rank holds ``P / W`` identities of the ``P x K`` batch
(:class:`fastreid_ext.data.samplers.IdentityBalancedSampler`); the host's triplet loss
(``fastreid/modeling/losses/triplet_loss.py``) mines within the rank, so with ``P / W = 1``
there is no negative at all and the loss is 0. :class:`~.registry.LossSet` gathers the inputs of
the losses that compare samples with each other (``ReIDLoss.pairwise = True``: triplet,
circle, CosFace, OSM) from every rank first (``MODEL.LOSSES.GATHER``, on by default), so each
rank computes the loss of the whole batch.

Gradients: :func:`all_gather_with_grad` sums the gathered tensor's gradient over the ranks and
returns each rank its own slice; DDP then averages the parameter gradients over ``W`` ranks, so
the update is the one a single process would make on the whole batch.
"""
from __future__ import annotations

import logging
from typing import List, Optional

import torch
import torch.distributed as dist

__all__ = ["all_gather_with_grad", "check_identities_per_rank", "distributed"]

logger = logging.getLogger(__name__)


def distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def _sizes(n: int, device: torch.device) -> List[int]:
    size = torch.tensor([n], device=device, dtype=torch.long)
    sizes = [torch.zeros_like(size) for _ in range(dist.get_world_size())]
    dist.all_gather(sizes, size)
    return [int(s.item()) for s in sizes]


class _GatherWithGrad(torch.autograd.Function):
    """``cat`` over ranks of ``(n_r, ...)`` tensors; backward: the sum over ranks of the
    gradient, own slice (all_reduce works on every backend, reduce_scatter not on gloo)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, sizes: List[int]):
        rank = dist.get_rank()
        n_max = max(sizes)
        padded = x.new_zeros((n_max,) + tuple(x.shape[1:]))
        padded[: x.shape[0]] = x
        parts = [torch.empty_like(padded) for _ in sizes]
        dist.all_gather(parts, padded.contiguous())
        ctx.rank, ctx.sizes = rank, sizes
        return torch.cat([p[:n] for p, n in zip(parts, sizes)])

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        grad = grad.contiguous().clone()
        dist.all_reduce(grad)
        lo = sum(ctx.sizes[: ctx.rank])
        return grad[lo: lo + ctx.sizes[ctx.rank]], None


def all_gather_with_grad(x: torch.Tensor, sizes: Optional[List[int]] = None) -> torch.Tensor:
    """``(sum_r n_r, ...)``: the ``(n_r, ...)`` tensors of every rank, in rank order (ranks may
    hold different ``n_r``). Differentiable for floating tensors; ``x`` itself in one process.
    ``sizes``: every rank's ``n_r`` when the caller knows them (fixed training batches): no size
    exchange (an all_gather and a device sync per call); ``None``: exchanged."""
    if not distributed():
        return x
    if sizes is None:
        sizes = _sizes(x.shape[0], x.device)
    elif len(sizes) != dist.get_world_size() or sizes[dist.get_rank()] != x.shape[0]:
        raise ValueError(f"all_gather_with_grad: sizes {sizes} do not match this rank's "
                         f"{x.shape[0]} rows over {dist.get_world_size()} ranks")
    if x.is_floating_point() and x.requires_grad:
        return _GatherWithGrad.apply(x, sizes)
    with torch.no_grad():
        return _GatherWithGrad.forward(_Ctx(), x, sizes)


class _Ctx:
    """Stand-in autograd context for a gather without gradient."""


def check_identities_per_rank(cfg, world_size: int, pairwise: bool, gathered: bool = True) -> None:
    """Refuse (``ValueError``) or warn when a rank holds fewer than 2 identities.

    ``P = SOLVER.IMS_PER_BATCH / DATALOADER.NUM_INSTANCE`` identities per global batch, ``P / W``
    per rank. Without gathering (``MODEL.LOSSES.GATHER False``, or ``gathered=False``: a model
    whose losses are not a ``LossSet``, such as the host's ``Baseline``) a pairwise loss on one
    identity per rank has no negative pair: refused. With it the losses see the whole batch, but the BN layers (the
    BNNeck) still see one rank's identities: a warning suggests ``NORM syncBN``.
    """
    if world_size <= 1 or not pairwise or "Identity" not in str(cfg.DATALOADER.SAMPLER_TRAIN):
        return  # P identities per batch only with a P x K identity sampler
    k = max(1, int(cfg.DATALOADER.NUM_INSTANCE))
    p = int(cfg.SOLVER.IMS_PER_BATCH) // k
    per_rank = p / world_size
    if per_rank >= 2:
        return
    msg = (f"{per_rank:g} identities per rank (P = SOLVER.IMS_PER_BATCH / DATALOADER.NUM_INSTANCE = "
           f"{p} over {world_size} processes)")
    if not (gathered and cfg.MODEL.LOSSES.GATHER):
        raise ValueError(f"{msg}: the pairwise losses ({', '.join(cfg.MODEL.LOSSES.NAME)}) would see "
                         f"no negative pair on a rank. Set MODEL.LOSSES.GATHER True, raise "
                         f"SOLVER.IMS_PER_BATCH or use fewer processes.")
    logger.warning(f"{msg}: the metric losses gather the whole batch, but batch-norm statistics "
                   f"(BNNeck) come from one rank's identities; consider MODEL.HEADS.NORM syncBN or "
                   f"a larger SOLVER.IMS_PER_BATCH.")
