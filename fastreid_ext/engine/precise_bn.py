"""Precise BN that keeps the identity labels.

The host's ``update_bn_stats`` (``fastreid/utils/precision_bn.py:60``) overwrites
``inputs['targets']`` with -1 before each training-mode forward; the host ``Baseline`` zeroes
them again (``fastreid/modeling/meta_arch/baseline.py:110``) but no other meta-architecture
does: -1 reaches the cross-entropy (an error on CPU, a device-side assert on CUDA) and any
margin head that indexes by label. Here the batch keeps its real labels (the losses are
computed and thrown away, under ``no_grad``), is moved to the model's device (the host relies
on its CUDA prefetcher for that, ``fastreid/data/data_utils.py:151``) and is not modified.
The statistics are the same: the true average over ``num_iters`` batches of the per-batch
mean and variance, as in the host.
"""
from __future__ import annotations

import itertools
import logging

import torch

from fastreid.engine import hooks
from fastreid.utils.events import EventStorage
from fastreid.utils.precision_bn import get_bn_modules
from fastreid_ext.utils.modules import model_device, unwrap

from .train_loop import move_batch

__all__ = ["update_bn_stats", "PreciseBN"]

logger = logging.getLogger(__name__)


@torch.no_grad()
def update_bn_stats(model: torch.nn.Module, data_loader, num_iters: int = 200) -> int:
    """Recompute the running statistics of ``model``'s training-mode BN layers as the plain
    average of ``num_iters`` batches' statistics (host semantics); returns the number of
    batches used. Raises ``ValueError`` when the loader stops before ``num_iters``."""
    model = unwrap(model)
    bn_layers = get_bn_modules(model)
    if not bn_layers:
        return 0
    device = model_device(model)
    momenta = [bn.momentum for bn in bn_layers]
    running_mean = [torch.zeros_like(bn.running_mean) for bn in bn_layers]
    running_var = [torch.zeros_like(bn.running_var) for bn in bn_layers]
    used = 0
    try:
        for bn in bn_layers:
            bn.momentum = 1.0  # running stats = this batch's stats
        for ind, inputs in enumerate(itertools.islice(data_loader, num_iters)):
            model(move_batch(inputs, device))  # real labels: the losses are computed and dropped
            for i, bn in enumerate(bn_layers):
                running_mean[i] += (bn.running_mean - running_mean[i]) / (ind + 1)
                running_var[i] += (bn.running_var - running_var[i]) / (ind + 1)
            used = ind + 1
    finally:
        for bn, m in zip(bn_layers, momenta):
            bn.momentum = m
    if used != num_iters:
        raise ValueError(f"precise BN needs {num_iters} batches (TEST.PRECISE_BN.NUM_ITER) but the "
                         f"loader gave {used}")
    for i, bn in enumerate(bn_layers):
        bn.running_mean.copy_(running_mean[i])
        bn.running_var.copy_(running_var[i])
    return used


class PreciseBN(hooks.PreciseBN):
    """The host's hook (same schedule: after the last epoch) with :func:`update_bn_stats`."""

    def update_stats(self):
        if self._disabled:
            return
        if self._data_iter is None:
            self._data_iter = iter(self._data_loader)
        with EventStorage():  # discard the losses' events
            logger.info(f"Running precise-BN for {self._num_iter} iterations")
            update_bn_stats(self._model, self._data_iter, self._num_iter)

    @classmethod
    def from_host(cls, hook: hooks.PreciseBN) -> "PreciseBN":
        """The same hook (model, loader, iterations) with this class's statistics update."""
        new = cls.__new__(cls)
        new.__dict__.update(hook.__dict__)
        return new
