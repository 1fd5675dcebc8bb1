"""One training step on CPU or GPU, with optional AMP and the losses' own optimizers.

Replaces the host's ``SimpleTrainer`` / ``AMPTrainer`` (``fastreid/engine/train_loop.py``):
the host's ``AMPTrainer`` asserts CUDA and uses the deprecated ``torch.cuda.amp`` (``:335``).
Here autocast runs through ``torch.amp`` on the model's device: float16 (with a grad scaler)
or bfloat16 on GPU, bfloat16 on CPU when asked for explicitly.
"""
from __future__ import annotations

import logging
import math
import time
from typing import Dict, List, Tuple

import torch

from fastreid.engine.train_loop import SimpleTrainer
from fastreid.utils import comm
from fastreid.utils.events import get_event_storage
from fastreid_ext.utils.modules import model_device, unwrap

logger = logging.getLogger(__name__)

#: prefix of the diagnostics scalars in the event storage (``metrics.json``, TensorBoard)
DIAG_PREFIX = "diag/"
#: iterations between two diagnostics reads: the host's writer period (``PeriodicWriter(..., 200)``,
#: ``fastreid/engine/defaults.py:313``); the last iteration of every epoch is read too, because
#: the writers also write after each epoch
DIAG_PERIOD = 200


def move_batch(batch, device: torch.device):
    """A copy of ``batch`` (dict / list / tensor) with its tensors on ``device``; the input is
    not modified."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: move_batch(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)) and batch and isinstance(batch[0], torch.Tensor):
        return type(batch)(move_batch(v, device) for v in batch)
    return batch


def own_optimizers(model: torch.nn.Module) -> List[Tuple[torch.nn.Module, torch.optim.Optimizer]]:
    """(loss, optimizer) pairs of the registered losses that step their own parameters."""
    losses = getattr(unwrap(model), "losses", None)
    if losses is None or not hasattr(losses, "own_optimizers"):
        return []
    return list(losses.own_optimizers())


def collect_diagnostics(model: torch.nn.Module) -> Dict[str, float]:
    """``{key: float}`` from the (unwrapped) model's ``diagnostics()``, or ``{}`` when it has none.

    The diagnostics contract: a meta-arch may define ``diagnostics(self) -> dict[str, float]``
    with scalars measured at its last training forward (e.g. ``att_dead_frac``,
    ``region_iou_s1``). Keys must be non-empty strings; values plain numbers or one-element
    tensors (NaN / inf are kept: a collapse may show as one). Anything else raises ``TypeError``.
    """
    fn = getattr(unwrap(model), "diagnostics", None)
    if fn is None:
        return {}
    if not callable(fn):
        raise TypeError(f"{type(unwrap(model)).__name__}.diagnostics must be a method")
    values = fn()
    if not isinstance(values, dict):
        raise TypeError(f"{type(unwrap(model)).__name__}.diagnostics() must return a dict, "
                        f"got {type(values).__name__}")
    out: Dict[str, float] = {}
    for key, value in values.items():
        if not isinstance(key, str) or not key:
            raise TypeError(f"diagnostics keys must be non-empty strings, got {key!r}")
        if isinstance(value, torch.Tensor):
            if value.numel() != 1:
                raise TypeError(f"diagnostic {key!r} must be a scalar, got a tensor of shape "
                                f"{tuple(value.shape)}")
            value = value.item()
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"diagnostic {key!r} must be a number, got {type(value).__name__}")
        out[key] = float(value)
    return out


def resolve_amp(enabled: bool, dtype_name: str, device: torch.device) -> Tuple[bool, torch.dtype]:
    dtype = {"float16": torch.float16, "bfloat16": torch.bfloat16}.get(dtype_name)
    if dtype is None:
        raise ValueError(f"SOLVER.AMP.DTYPE must be float16 or bfloat16, got {dtype_name!r}")
    if enabled and device.type == "cpu" and dtype == torch.float16:
        logger.warning("AMP float16 is not supported on CPU; using bfloat16")
        dtype = torch.bfloat16
    return enabled, dtype


class DeviceTrainer(SimpleTrainer):
    """``SimpleTrainer`` that moves batches to the model's device, supports ``torch.amp`` and
    steps the optimizers owned by losses (e.g. the center loss's SGD on its centers)."""

    def __init__(self, model, data_loader, optimizer, param_wrapper, amp: bool = False,
                 amp_dtype: str = "float16", iters_per_epoch: int = 0, diag_period: int = DIAG_PERIOD):
        super().__init__(model, data_loader, optimizer, param_wrapper)
        if int(diag_period) < 1:
            raise ValueError(f"diag_period must be >= 1, got {diag_period}")
        self.iters_per_epoch = int(iters_per_epoch)  # 0: unknown (only the period applies)
        self.diag_period = int(diag_period)
        self.device = model_device(model)
        self.amp, self.amp_dtype = resolve_amp(amp, amp_dtype, self.device)
        use_scaler = self.amp and self.device.type == "cuda" and self.amp_dtype == torch.float16
        self.grad_scaler = torch.amp.GradScaler(self.device.type, enabled=use_scaler)
        self.own = own_optimizers(model)
        self.skipped_frames = 0  # corrupt / unreadable frames replaced by the loader so far

    def _count_skipped(self, data) -> None:
        skipped = data.get("skipped_frames") if isinstance(data, dict) else None
        if skipped is None:
            return
        n = int(skipped.sum())
        if n:
            self.skipped_frames += n
            logger.warning(f"{n} unreadable frame(s) skipped in this batch "
                           f"({self.skipped_frames} so far in this process)")

    def run_step(self):
        assert self.model.training, "[DeviceTrainer] model was changed to eval mode!"
        start = time.perf_counter()
        data = next(self._data_loader_iter)
        self._count_skipped(data)
        data = move_batch(data, self.device)
        data_time = time.perf_counter() - start

        with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp):
            loss_dict: Dict[str, torch.Tensor] = self.model(data)
        losses = sum(v.float() for v in loss_dict.values())

        self.optimizer.zero_grad(set_to_none=True)
        for _, opt in self.own:
            opt.zero_grad(set_to_none=True)
        self.grad_scaler.scale(losses).backward()
        self._write_metrics(loss_dict, data_time)

        self.grad_scaler.step(self.optimizer)
        for loss, opt in self.own:
            if self.grad_scaler.is_enabled():
                self.grad_scaler.unscale_(opt)
            loss.before_own_step()
            self.grad_scaler.step(opt)
        self.grad_scaler.update()
        self._write_diagnostics()

    def _diagnostics_due(self) -> bool:
        it = int(getattr(self, "iter", 0)) + 1
        return it % self.diag_period == 0 or (self.iters_per_epoch > 0 and it % self.iters_per_epoch == 0)

    def _write_diagnostics(self) -> None:
        """Put the model's diagnostics in the event storage as ``diag/<key>`` (main process,
        at the log period and at the end of each epoch)."""
        if not self._diagnostics_due() or not comm.is_main_process():
            return
        diag = collect_diagnostics(self.model)
        if not diag:
            return
        bad = sorted(k for k, v in diag.items() if not math.isfinite(v))
        if bad:
            logger.warning(f"non-finite diagnostics at iteration {getattr(self, 'iter', 0)}: {bad}")
        get_event_storage().put_scalars(smoothing_hint=False, **{DIAG_PREFIX + k: v for k, v in diag.items()})
