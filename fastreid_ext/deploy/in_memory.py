"""Images in memory -> the frames :class:`~fastreid_ext.deploy.extractor.FeatureExtractor`
embeds: what a tracking pipeline holds (crops as arrays, PIL images, tensors) or file paths.

One image is any of

- a file path (``str`` / ``os.PathLike``), decoded to RGB (:func:`~fastreid_ext.data.frame_io.read_frame`);
- a ``numpy`` array ``(H, W, 3)`` RGB ``uint8`` (or ``(H, W)`` grey);
- a PIL image (converted to RGB);
- a ``torch`` tensor ``(3, H, W)`` or ``(H, W, 3)``, ``uint8`` or floating point on the model's
  input scale 0..255.

A tracklet is a list / tuple of images (in order), a folder of frame files (sorted by name), a
``(T, H, W, 3)`` array or a ``(T, 3, H, W)`` / ``(T, H, W, 3)`` tensor. Anything else raises a
``ValueError`` saying what was expected.
"""
from __future__ import annotations

import os
from typing import List

import numpy as np
import torch

from fastreid_ext.data.frame_io import read_frame

__all__ = ["as_frame", "as_tracklet"]


def _from_tensor(x: torch.Tensor) -> np.ndarray:
    x = x.detach().cpu()
    if x.dim() == 3 and x.shape[0] in (1, 3) and x.shape[-1] not in (1, 3):
        x = x.permute(1, 2, 0)
    if x.is_floating_point():
        if x.numel() and float(x.max()) <= 1.0 and float(x.min()) >= 0.0:
            raise ValueError("a floating-point image tensor must hold values on the 0..255 scale "
                             "(got values within 0..1: multiply by 255)")
        x = x.round().clamp(0, 255).to(torch.uint8)
    return x.numpy()


def as_frame(image) -> np.ndarray:
    """One image (see the module docstring) -> RGB ``uint8`` ``(H, W, 3)``."""
    if isinstance(image, (str, os.PathLike)):
        return read_frame(os.fspath(image))
    if hasattr(image, "convert") and hasattr(image, "size"):  # PIL.Image.Image
        return np.asarray(image.convert("RGB"))
    if isinstance(image, torch.Tensor):
        image = _from_tensor(image)
    if isinstance(image, np.ndarray):
        if image.ndim == 2:
            image = np.repeat(image[:, :, None], 3, axis=2)
        if image.ndim == 3 and image.shape[2] == 1:
            image = np.repeat(image, 3, axis=2)
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"an image array must be (H, W, 3) RGB uint8, got {image.dtype} {image.shape}")
        return np.ascontiguousarray(image)
    raise ValueError(f"cannot use a {type(image).__name__} as an image: expected a file path, an (H, W, 3) "
                     f"uint8 array, a PIL image or a tensor")


def as_tracklet(tracklet) -> List[np.ndarray]:
    """One tracklet (see the module docstring) -> its frames, RGB ``uint8`` ``(H, W, 3)`` each."""
    if isinstance(tracklet, (str, os.PathLike)) and os.path.isdir(tracklet):
        from .inputs import _images_in

        frames = _images_in(os.fspath(tracklet))
        if not frames:
            raise ValueError(f"tracklet folder {os.fspath(tracklet)!r} holds no images")
        return [as_frame(f) for f in frames]
    if isinstance(tracklet, (np.ndarray, torch.Tensor)) and tracklet.ndim == 4:
        return [as_frame(f) for f in tracklet]
    if isinstance(tracklet, (list, tuple)):
        if not tracklet:
            raise ValueError("an empty tracklet")
        return [as_frame(f) for f in tracklet]
    raise ValueError(f"cannot use a {type(tracklet).__name__} as a tracklet: expected a list of images, a "
                     f"folder of frames, a (T, H, W, 3) array or a (T, 3, H, W) tensor")
