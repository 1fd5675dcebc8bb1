"""From clips to tracklet embeddings: the one path of evaluation, extraction and deployment.

:func:`~.inference.inference_on_dataset` (evaluation), :class:`~.video_evaluator.VideoClipEvaluator`
and :class:`~fastreid_ext.deploy.extractor.FeatureExtractor` (features files, in-memory
embedding) all embed a tracklet the same way:

1. **clip embedding** (:func:`model_inputs`, :func:`clip_embeddings`): the model's eval forward
   of a batch of clips ``(B, T, C, H, W)`` (or images ``(B, C, H, W)``); with ``TEST.FLIP`` the
   mean ``(f(x) + f(flip(x))) / 2`` of the embeddings of the clips and of their horizontal
   flips (width flipped, COCO keypoints mirrored with their left / right joints swapped). The
   images are copied to the model's device once and never modified in place (the host's flip
   test flips an already normalised tensor and normalises it again,
   ``fastreid/evaluation/evaluator.py:119-121``);
2. **tracklet embedding** (:func:`tracklet_means`): the mean of its clip embeddings, summed in
   float64 and cast to float32, refused when a tracklet has no clip or a value is not finite;
3. **L2 normalisation** (:func:`uses_l2`, :func:`l2_normalized`): for ``TEST.METRIC cosine``,
   never for ``euclidean``. This is the only place that decides it.

``TEST.METRIC`` itself is validated once, when the config is built
(:mod:`fastreid_ext.config.validate`, against :data:`.validation.METRICS`).
"""
from __future__ import annotations

from typing import Dict, List

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["clip_embeddings", "flip_images", "flip_keypoints", "l2_normalized",
           "model_inputs", "tracklet_means", "uses_l2"]

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


def model_inputs(batch: Dict, device: torch.device, flip: bool = False) -> List[Dict]:
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


def clip_embeddings(model: nn.Module, inputs: List[Dict]) -> torch.Tensor:
    """``(B, D)`` clip embeddings of :func:`model_inputs`' ``inputs`` (call it in inference
    mode): ``model(inputs[0])``, or with the flipped input ``(f(x) + f(flip(x))) / 2``."""
    out = model(inputs[0])
    if len(inputs) > 1:
        out = (out + model(inputs[1])) / 2.0
    return out


def tracklet_means(sums: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """``(N, D)`` float32 mean clip embedding of each tracklet from its float64 clip sums
    ``(N, D)`` and clip counts ``(N,)``. A tracklet without a clip, or a non-finite value,
    raises ``ValueError`` naming the first tracklets concerned."""
    counts = torch.as_tensor(counts).view(-1)
    empty = int((counts == 0).sum())
    if empty:
        raise ValueError(f"{empty} of {counts.numel()} tracklets received no clip (first: "
                         f"{torch.nonzero(counts == 0)[:5].view(-1).tolist()})")
    feats = (sums / counts.unsqueeze(1).to(sums.dtype)).float()
    bad = ~torch.isfinite(feats)
    if bool(bad.any()):
        rows = torch.nonzero(bad.any(dim=1)).view(-1)
        raise ValueError(
            f"Clip embeddings contain non-finite values: {int(torch.isnan(feats).sum())} NaN and "
            f"{int(torch.isinf(feats).sum())} inf entries in {rows.numel()} of "
            f"{feats.shape[0]} tracklets (first: {rows[:5].tolist()})")
    return feats


def uses_l2(metric: str) -> bool:
    """Whether the embeddings of ``TEST.METRIC`` ``metric`` are L2-normalised: ``cosine`` yes,
    ``euclidean`` no."""
    return metric == "cosine"


def l2_normalized(feats: torch.Tensor, l2: bool) -> torch.Tensor:
    """``feats`` with every row (last dimension) L2-normalised when ``l2``, else ``feats``."""
    return F.normalize(feats, p=2, dim=-1) if l2 else feats
