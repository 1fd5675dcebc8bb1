"""``inference_on_dataset`` without the host's flip-test problems.

Differences from ``fastreid/evaluation/evaluator.py::inference_on_dataset``:

* the clip embeddings are :mod:`.embedding`'s (the same as the deployment extractor's): the
  batch is never mutated, the model sees fresh tensors on its own device (the host's
  ``Baseline.preprocess_image`` normalises ``images`` in place, ``baseline.py:130``, and the
  host's flip test then flips and re-normalises that already normalised tensor,
  ``evaluator.py:119-121``: normalised twice); the flip test flips the width of ``images``
  ``(B, C, H, W)`` or ``(B, T, C, H, W)``, mirrors batch ``keypoints`` with them and averages
  the two embeddings once;
* ``torch.inference_mode``, a DDP / DataParallel model is unwrapped, a tqdm progress bar (off
  when stderr is not a terminal or on non-main processes).
"""
from __future__ import annotations

import datetime
import logging
import sys
import time
from typing import Optional

import torch
from torch import nn
from tqdm import tqdm

from fastreid.evaluation.evaluator import inference_context
from fastreid.utils import comm
from fastreid_ext.utils.modules import model_device, unwrap

from .embedding import clip_embeddings, flip_images, flip_keypoints, model_inputs

__all__ = ["inference_on_dataset", "flip_images", "flip_keypoints", "model_device"]

logger = logging.getLogger(__name__)


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
            outputs = clip_embeddings(model, model_inputs(batch, device, flip=flip_test))
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
