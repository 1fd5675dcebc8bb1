"""``inference_on_dataset`` without the host's flip-test problems.

Differences from ``fastreid/evaluation/evaluator.py::inference_on_dataset``:

* the batch is never mutated: the model sees fresh tensors on its own device (the host's
  ``Baseline.preprocess_image`` normalises ``images`` in place, ``baseline.py:130``, and the
  host's flip test then flips and re-normalises that already normalised tensor,
  ``evaluator.py:119-121``: normalised twice);
* flip test flips the last (width) dimension of ``images`` whether ``(B, C, H, W)`` or
  ``(B, T, C, H, W)`` and averages the two embeddings once; batch ``keypoints`` ``(B, T, 17, 3)``
  (x, y in [0, 1]) are mirrored with them (``x -> 1 - x``, left / right joints swapped), so a
  model that reads them at test time sees the flipped image's joints;
* ``torch.inference_mode``, a DDP / DataParallel model is unwrapped, a tqdm progress bar (off
  when stderr is not a terminal or on non-main processes).
"""
from __future__ import annotations

import datetime
import logging
import sys
import time
from typing import Dict, List, Optional

import torch
from torch import nn
from tqdm import tqdm

from fastreid.evaluation.evaluator import inference_context
from fastreid.utils import comm
from fastreid_ext.utils.modules import model_device, unwrap

__all__ = ["inference_on_dataset", "flip_images", "flip_keypoints", "model_device"]

logger = logging.getLogger(__name__)


def flip_images(images: torch.Tensor) -> torch.Tensor:
    """Horizontal flip of ``(B, C, H, W)`` or ``(B, T, C, H, W)`` images (a new tensor)."""
    if images.dim() not in (4, 5):
        raise ValueError(f"images must be (B, C, H, W) or (B, T, C, H, W), got {tuple(images.shape)}")
    return images.flip(dims=[-1])


def flip_keypoints(keypoints: torch.Tensor) -> torch.Tensor:
    """The COCO joints ``(..., 17, 3)`` (``x, y`` in ``[0, 1]``) of horizontally flipped images:
    ``x -> 1 - x`` and every left joint swapped with its right twin (a new tensor)."""
    from fastreid_ext.utils.keypoints import COCO_FLIP_PERM

    if keypoints.shape[-2:] != (len(COCO_FLIP_PERM), 3):
        raise ValueError(f"keypoints must be (..., 17, 3), got {tuple(keypoints.shape)}")
    out = keypoints[..., list(COCO_FLIP_PERM), :].clone()
    out[..., 0] = 1.0 - out[..., 0]
    return out


def _batches_for_model(batch: Dict, device: torch.device, flip: bool = False) -> List[Dict]:
    """The model's input dict(s) for ``batch``: the batch itself, then (``flip``) its
    horizontal flip (``images`` and, when present, ``keypoints``).

    Each tensor is copied to ``device`` once (the loader pins memory when CUDA is available);
    the flipped images are made on the device from that copy. ``images`` is always a private
    copy, made before any model call, so an in-place normalisation inside the model (the host
    ``Baseline``) can reach neither the caller's batch nor the flipped input."""
    moved = {k: (v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) and k != "images" else v)
             for k, v in batch.items()}
    images = batch["images"].to(device, non_blocking=True, copy=True)  # the one host -> device copy
    out = [dict(moved, images=images)]
    if flip:
        flipped = dict(moved, images=flip_images(images))  # on the device, before any model call
        if isinstance(moved.get("keypoints"), torch.Tensor):
            flipped["keypoints"] = flip_keypoints(moved["keypoints"])
        out.append(flipped)
    return out


def _batch_for_model(batch: Dict, device: torch.device, flip: bool = False) -> Dict:
    """The one input dict of :func:`_batches_for_model`: the batch, or its flip."""
    return _batches_for_model(batch, device, flip)[-1]


def inference_on_dataset(model: nn.Module, data_loader, evaluator, flip_test: bool = False, progress: Optional[bool] = None):
    """Run ``model`` (in eval mode) over ``data_loader`` and return ``evaluator.evaluate()``
    (``{}`` on processes where it returns ``None``).

    ``evaluator.process(batch, outputs)`` receives the loader's own (untouched) batch and the
    ``(B, D)`` embeddings on the CPU; with ``flip_test`` the embeddings are
    ``(f(x) + f(flip(x))) / 2``. ``progress=None`` shows a bar only on an interactive main
    process.
    """
    model = unwrap(model)  # a DDP wrapper would only add collective syncs at test time
    device = model_device(model)
    total = len(data_loader)
    logger.info("Start inference on %d batches", total)
    if progress is None:
        progress = comm.is_main_process() and sys.stderr.isatty()
    evaluator.reset()
    start = time.perf_counter()
    compute = 0.0
    with inference_context(model), torch.inference_mode():
        for batch in tqdm(data_loader, total=total, disable=not progress, desc="inference", dynamic_ncols=True):
            if "images" not in batch:
                raise KeyError(f"A test batch needs 'images'; got keys {sorted(batch)}")
            t0 = time.perf_counter()
            inputs = _batches_for_model(batch, device, flip=flip_test)
            outputs = model(inputs[0])
            if flip_test:
                outputs = (outputs + model(inputs[1])) / 2.0
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            compute += time.perf_counter() - t0
            evaluator.process(batch, outputs.detach().float().cpu())
    total_time = time.perf_counter() - start
    logger.info(
        "Total inference time: %s (%.6f s / batch per device, on %d devices; pure compute %.1f s)",
        str(datetime.timedelta(seconds=int(total_time))),
        total_time / max(1, total),
        comm.get_world_size(),
        compute,
    )
    results = evaluator.evaluate()
    return {} if results is None else results
