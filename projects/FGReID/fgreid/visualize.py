"""Spatial attention maps (A_maps) overlaid on the input frames, as in Figure 7 of the FGReID paper."""
from __future__ import annotations

import os
from typing import Sequence

import cv2
import numpy as np
import torch


def overlay_attention(frame: np.ndarray, attention: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """Blend a jet-coloured attention map onto one RGB frame.

    Args:
        frame: ``(H, W, 3)`` uint8 RGB.
        attention: ``(h, w)`` float map; min-max normalised to [0, 1], then resized to
            ``(H, W)`` bilinearly.
    Returns:
        ``(H, W, 3)`` uint8 RGB.
    """
    if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
        raise ValueError(f"frame must be (H, W, 3) uint8, got {frame.shape} {frame.dtype}")
    if attention.ndim != 2:
        raise ValueError(f"attention must be (h, w), got {attention.shape}")
    att = attention.astype(np.float32)
    span = float(att.max() - att.min())
    att = (att - att.min()) / span if span > 0 else np.zeros_like(att)
    att = cv2.resize(att, (frame.shape[1], frame.shape[0]), interpolation=cv2.INTER_LINEAR)
    heat = cv2.applyColorMap(np.uint8(np.clip(att, 0, 1) * 255), cv2.COLORMAP_JET)  # BGR
    heat = cv2.cvtColor(heat, cv2.COLOR_BGR2RGB)
    return cv2.addWeighted(frame, 1.0 - alpha, heat, alpha, 0.0)


def attention_grid(clips: torch.Tensor, a_maps: torch.Tensor, alpha: float = 0.5) -> np.ndarray:
    """One image: row ``2b`` the frames of clip ``b``, row ``2b+1`` the same frames with
    their attention overlaid.

    Args:
        clips: ``(B, T, 3, H, W)`` or ``(B, 3, H, W)``, values 0..255 (RGB).
        a_maps: ``(B, T, h, w)`` from :meth:`fgreid.FGReID.attention_maps`.
    Returns:
        ``(2 B H, T W, 3)`` uint8 RGB.
    """
    if clips.dim() == 4:
        clips = clips.unsqueeze(1)
    b, t, _, h, w = clips.shape
    if a_maps.shape[:2] != (b, t):
        raise ValueError(f"A_maps {tuple(a_maps.shape)} do not match clips {tuple(clips.shape)}")
    frames = clips.detach().cpu().clamp(0, 255).to(torch.uint8).permute(0, 1, 3, 4, 2).numpy()
    maps = a_maps.detach().cpu().float().numpy()
    rows = []
    for i in range(b):
        rows.append(np.concatenate(list(frames[i]), axis=1))
        rows.append(np.concatenate([overlay_attention(frames[i, j], maps[i, j], alpha)
                                    for j in range(t)], axis=1))
    return np.concatenate(rows, axis=0)


def save_attention_png(path: str, clips: torch.Tensor, a_maps: torch.Tensor,
                       alpha: float = 0.5) -> str:
    """Write :func:`attention_grid` as a PNG at ``path`` (folders created) and return ``path``."""
    grid = attention_grid(clips, a_maps, alpha)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    if not cv2.imwrite(path, cv2.cvtColor(grid, cv2.COLOR_RGB2BGR)):
        raise OSError(f"could not write {path}")
    return path


def load_clip(paths: Sequence[str], size: Sequence[int]) -> torch.Tensor:
    """Read frames into a ``(1, T, 3, H, W)`` float clip (0..255 RGB), resized to
    ``size = (H, W)`` like the test transform."""
    frames = []
    for p in paths:
        img = cv2.imread(p, cv2.IMREAD_COLOR)
        if img is None:
            raise FileNotFoundError(f"cannot read image {p}")
        img = cv2.resize(img, (int(size[1]), int(size[0])), interpolation=cv2.INTER_LINEAR)
        frames.append(torch.from_numpy(cv2.cvtColor(img, cv2.COLOR_BGR2RGB)).permute(2, 0, 1))
    return torch.stack(frames).float().unsqueeze(0)
