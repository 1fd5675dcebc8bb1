"""The located regions drawn on the input image, one panel per stage (the MGRe paper, Fig. 1(c))."""
from __future__ import annotations

import os
from typing import Dict

import cv2
import numpy as np
import torch

__all__ = ["REGION_COLORS", "draw_boxes", "regions_panel", "save_regions_png"]

#: RGB colours of the regions of a stage, in Table 1 order
REGION_COLORS = ((230, 25, 75), (60, 180, 75), (0, 130, 200), (245, 130, 48))


def draw_boxes(image: np.ndarray, boxes: np.ndarray, thickness: int = 1) -> np.ndarray:
    """A copy of ``image`` (``(H, W, 3)`` uint8 RGB) with ``boxes`` ``(R, 4)`` =
    ``(x0, y0, x1, y1)`` in ``[0, 1]`` drawn as rectangles (region ``r`` in ``REGION_COLORS[r]``).
    Boxes are clipped to the image."""
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"image must be (H, W, 3) uint8, got {image.shape} {image.dtype}")
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    h, w = image.shape[:2]
    out = np.ascontiguousarray(image.copy())
    for r, (x0, y0, x1, y1) in enumerate(boxes):
        p0 = (int(np.clip(round(x0 * w), 0, w - 1)), int(np.clip(round(y0 * h), 0, h - 1)))
        p1 = (int(np.clip(round(x1 * w) - 1, 0, w - 1)), int(np.clip(round(y1 * h) - 1, 0, h - 1)))
        cv2.rectangle(out, p0, p1, REGION_COLORS[r % len(REGION_COLORS)], thickness)
    return out


def regions_panel(images: torch.Tensor, boxes: Dict[int, torch.Tensor], frame: int = 0) -> np.ndarray:
    """One RGB image: row ``b`` = the input of item ``b`` then one copy per stage with that
    stage's boxes.

    Args:
        images: ``(B, T, 3, H, W)`` or ``(B, 3, H, W)``, values 0..255 (RGB).
        boxes: ``{stage: (B, T, R, 4)}`` from :meth:`mgre.MGRe.locate`.
        frame: which frame of each clip to draw.
    """
    clips = images.unsqueeze(1) if images.dim() == 4 else images
    rows = []
    for b in range(clips.shape[0]):
        img = clips[b, frame].detach().cpu().clamp(0, 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
        panels = [img] + [draw_boxes(img, boxes[g][b, frame].cpu().numpy()) for g in sorted(boxes)]
        rows.append(np.concatenate(panels, axis=1))
    return np.concatenate(rows, axis=0)


def save_regions_png(path: str, images: torch.Tensor, boxes: Dict[int, torch.Tensor], scale: int = 2) -> str:
    """Write :func:`regions_panel` (nearest-upscaled ``scale`` times) to ``path`` as PNG."""
    panel = regions_panel(images, boxes)
    if scale > 1:
        panel = cv2.resize(panel, (panel.shape[1] * scale, panel.shape[0] * scale), interpolation=cv2.INTER_NEAREST)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    if not cv2.imwrite(path, cv2.cvtColor(panel, cv2.COLOR_RGB2BGR)):
        raise OSError(f"could not write {path}")
    return path
