"""DistributedDataParallel for the trainer: the wrapper's options, and the BN buffers made
equal on every rank before an evaluation.

The host always passes a CUDA device id (``fastreid/engine/defaults.py:210``); here the CPU
(gloo) gets none.
"""
from __future__ import annotations

import inspect

import torch
from torch.nn.parallel import DistributedDataParallel

from fastreid.utils import comm

__all__ = ["sync_buffers", "wrap_ddp"]


def wrap_ddp(cfg, model: torch.nn.Module) -> DistributedDataParallel:
    """``DistributedDataParallel`` over ``model`` (already on its device).

    - ``device_ids``: the model's own CUDA device (none on the CPU, gloo);
    - ``find_unused_parameters`` (an extra autograd-graph pass every step): only when
      ``MODEL.DDP_FIND_UNUSED_PARAMETERS`` is set or the meta-architecture declares it needs
      it with a class attribute ``ddp_find_unused_parameters = True``;
    - ``broadcast_buffers=False``: BN buffers drift per rank during training; they are
      synchronised from rank 0 before every evaluation (:func:`sync_buffers`, in
      ``Trainer.test``), so the evaluation uses the statistics the checkpoint saves;
    - every ``LossSet``'s ``rank_batch`` (``IMS_PER_BATCH / W``: the training batches are
      drop_last), so its gathers skip the per-call size exchange.
    """
    from fastreid_ext.modeling.losses import LossSet, pairwise_losses
    from fastreid_ext.modeling.losses.gather import check_identities_per_rank

    pairwise = bool(pairwise_losses(cfg.MODEL.LOSSES.NAME))
    check_identities_per_rank(cfg, comm.get_world_size(), pairwise,
                              gathered=isinstance(getattr(model, "losses", None), LossSet))
    device = next(model.parameters()).device
    find_unused = bool(cfg.MODEL.DDP_FIND_UNUSED_PARAMETERS) or \
        bool(getattr(model, "ddp_find_unused_parameters", False))
    # no buffer broadcast per forward (torch >= 2.13 names it forward_sync_buffers)
    no_sync = ({"forward_sync_buffers": False}
               if "forward_sync_buffers" in inspect.signature(DistributedDataParallel).parameters
               else {"broadcast_buffers": False})
    for m in model.modules():  # training batches are drop_last: IMS_PER_BATCH / W rows per rank
        if isinstance(m, LossSet):
            m.rank_batch = int(cfg.SOLVER.IMS_PER_BATCH) // comm.get_world_size()
    return DistributedDataParallel(
        model, device_ids=[device] if device.type == "cuda" else None,
        find_unused_parameters=find_unused, **no_sync)


def sync_buffers(model: torch.nn.Module, src: int = 0) -> int:
    """Broadcast every floating-point buffer of ``model`` (BN running statistics) from rank
    ``src`` to all ranks, in place; returns the number of buffers sent (0 in one process).

    Training DDP keeps ``broadcast_buffers=False`` (no broadcast per step), so each rank's BN
    statistics drift on its own shard; rank 0's are the ones the checkpoint saves."""
    if comm.get_world_size() <= 1:
        return 0
    import torch.distributed as dist

    model = model.module if isinstance(model, DistributedDataParallel) else model
    buffers = [b for b in model.buffers() if b.is_floating_point() or b.dtype == torch.long]
    for b in buffers:
        dist.broadcast(b.data, src)
    return len(buffers)
