"""What every meta-architecture of the plugin shares: pixel normalisation buffers, its
device, batch parsing and the class-count check.

A method subclasses :class:`ReidMetaArch` and adds only what is new, as fast-reid's own
projects subclass ``Baseline`` (e.g. ``projects/FastAttr``'s ``AttrBaseline``)::

    @META_ARCH_REGISTRY.register()
    class MyNet(ReidMetaArch):
        @configurable
        def __init__(self, *, backbone, heads, pixel_mean, pixel_std):
            super().__init__(pixel_mean=pixel_mean, pixel_std=pixel_std)
            ...

        @classmethod
        def from_config(cls, cfg):
            return {**ReidMetaArch.pixel_config(cfg), "backbone": ..., "heads": ...}

        def forward(self, batched_inputs):
            clips = self.preprocess(batched_inputs)        # (B, T, 3, H, W), normalised
            ...
            targets = self.batch_targets(batched_inputs)   # training only

The batch is the trainer's dict (``images`` ``(B, T, 3, H, W)`` or ``(B, 3, H, W)``, values
0..255, never modified; ``targets`` ``(B,)`` in training) or a bare images tensor.
"""
from __future__ import annotations

from typing import Any, Dict, Mapping, Sequence, Union

import torch
from torch import nn

from ..video_utils import preprocess_clip

__all__ = ["ReidMetaArch"]

Batch = Union[Mapping[str, Any], torch.Tensor]


class ReidMetaArch(nn.Module):
    """Base of the meta-architectures: ``pixel_mean`` / ``pixel_std`` buffers ``(1, C, 1, 1)``
    (not saved in checkpoints), :attr:`device`, :meth:`batch_images`, :meth:`preprocess`,
    :meth:`batch_targets` and :meth:`num_classes_of`."""

    def __init__(self, *, pixel_mean: Sequence[float], pixel_std: Sequence[float]):
        super().__init__()
        mean = torch.tensor(pixel_mean, dtype=torch.float32).view(1, -1, 1, 1)
        std = torch.tensor(pixel_std, dtype=torch.float32).view(1, -1, 1, 1)
        if mean.numel() != std.numel():
            raise ValueError(f"MODEL.PIXEL_MEAN has {mean.numel()} values, MODEL.PIXEL_STD {std.numel()}")
        if not bool((std > 0).all()):
            raise ValueError(f"MODEL.PIXEL_STD must be positive, got {list(pixel_std)}")
        self.register_buffer("pixel_mean", mean, False)
        self.register_buffer("pixel_std", std, False)

    # ------------------------------------------------------------------ config
    @staticmethod
    def pixel_config(cfg) -> Dict[str, Sequence[float]]:
        """``{"pixel_mean", "pixel_std"}`` from ``MODEL.PIXEL_MEAN`` / ``MODEL.PIXEL_STD``."""
        return {"pixel_mean": cfg.MODEL.PIXEL_MEAN, "pixel_std": cfg.MODEL.PIXEL_STD}

    @staticmethod
    def num_classes_of(cfg) -> int:
        """``MODEL.HEADS.NUM_CLASSES``; 0 or less raises ``ValueError`` (the trainer sets it from
        the training data; inference tools use :func:`fastreid_ext.engine.build_inference_model`)."""
        n = int(cfg.MODEL.HEADS.NUM_CLASSES)
        if n <= 0:
            raise ValueError("MODEL.HEADS.NUM_CLASSES must be > 0 (the trainer sets it from "
                             "the training data)")
        return n

    # ------------------------------------------------------------------ batch
    @property
    def device(self) -> torch.device:
        return self.pixel_mean.device

    @staticmethod
    def batch_images(batched_inputs: Batch) -> torch.Tensor:
        """The ``images`` of a batch dict, or the tensor itself; anything else raises."""
        if isinstance(batched_inputs, torch.Tensor):
            return batched_inputs
        if not isinstance(batched_inputs, Mapping):
            raise TypeError(f"batched_inputs must be a dict or a tensor, got {type(batched_inputs)}")
        if "images" not in batched_inputs:
            raise KeyError(f"batched_inputs has no 'images' (keys: {sorted(batched_inputs)})")
        images = batched_inputs["images"]
        if not isinstance(images, torch.Tensor):
            raise TypeError(f"batched_inputs['images'] must be a tensor, got {type(images)}")
        return images

    def preprocess(self, batched_inputs: Batch) -> torch.Tensor:
        """Normalised ``(B, T, C, H, W)`` float clips on :attr:`device` (images are read as clips
        of one frame); the input is not modified."""
        images = self.batch_images(batched_inputs)
        return preprocess_clip(images.to(self.device), self.pixel_mean, self.pixel_std)

    def batch_targets(self, batched_inputs: Batch) -> torch.Tensor:
        """The ``targets`` (person ids) on :attr:`device`; a batch without them raises
        ``KeyError`` (training needs them)."""
        if not isinstance(batched_inputs, Mapping) or "targets" not in batched_inputs:
            raise KeyError("training needs batched_inputs['targets'] (person ids)")
        return torch.as_tensor(batched_inputs["targets"]).to(self.device)
