"""Parameter-free fine-grained spatial attention and attentive pooling of FGReID.

Eq. (1)-(3) and Eq. (10) of Pathak, "Fine-Grained Re-Identification", written as
small pure functions on ``(N, C, H, W)`` frame maps, where ``N = B * T`` frames.
"""
from __future__ import annotations

import torch

MIN_SCOPES = ("clip", "batch")


def channel_weights(a_gap: torch.Tensor) -> torch.Tensor:
    """Eq. (1): ``S_channel = softmax_c(A_gap)``.

    Args:
        a_gap: ``(N, C)`` spatially averaged frame features.
    Returns:
        ``(N, C)`` channel weights summing to 1 over ``C``.
    """
    if a_gap.dim() != 2:
        raise ValueError(f"A_gap must be (N, C), got {tuple(a_gap.shape)}")
    return a_gap.softmax(dim=1)


def shift_to_nonnegative(f: torch.Tensor, frames_per_clip: int, scope: str = "clip") -> torch.Tensor:
    """Eq. (2): ``f+ = f' - min(f')``.

    The paper takes the minimum over "the entire tensor" ``t x h x w x c*`` of one clip
    (``scope="clip"``, default: a clip's embedding does not depend on the rest of the batch);
    the authors' public code takes it over the whole mini-batch (``scope="batch"``).

    Args:
        f: ``(B * T, C, H, W)`` reduced frame maps ``f'``, clip-major (frames of one clip
            are consecutive).
        frames_per_clip: ``T``.
    """
    if scope == "batch":
        return f - f.min()
    if scope != "clip":
        raise ValueError(f"unknown min scope {scope!r}; expected one of {MIN_SCOPES}")
    n = f.shape[0]
    if n % frames_per_clip != 0:
        raise ValueError(f"{n} frames is not a multiple of T={frames_per_clip}")
    per_clip_min = f.reshape(n // frames_per_clip, -1).min(dim=1).values  # (B,)
    per_frame_min = per_clip_min.repeat_interleave(frames_per_clip)  # (B * T,)
    return f - per_frame_min.view(n, 1, 1, 1)


def fine_grained_attention(f: torch.Tensor, s_channel: torch.Tensor, frames_per_clip: int,
                           scope: str = "clip") -> torch.Tensor:
    """Eq. (2)-(3): ``A_maps = sigmoid(sum_c f+ * S_channel)``.

    Args:
        f: ``(B * T, C, H, W)`` reduced frame maps ``f'_ImageNet``.
        s_channel: ``(B * T, C)`` channel weights (Eq. 1, or uniform ``1/C`` for the
            "w/o S_channel" ablation).
    Returns:
        ``(B * T, 1, H, W)`` spatial attention maps in ``(0, 1)``.
    """
    if s_channel.shape != f.shape[:2]:
        raise ValueError(f"S_channel {tuple(s_channel.shape)} does not match maps {tuple(f.shape)}")
    f_plus = shift_to_nonnegative(f, frames_per_clip, scope)  # (N, C, H, W)
    weighted = (f_plus * s_channel[:, :, None, None]).sum(dim=1, keepdim=True)  # (N, 1, H, W)
    return torch.sigmoid(weighted)


def attentive_pooling(a2: torch.Tensor, a_maps: torch.Tensor) -> torch.Tensor:
    """Eq. (10): ``A3 = sum_hw A2 / sum_hw A_maps``.

    Args:
        a2: ``(N, C, H, W)`` context-aware features.
        a_maps: ``(N, 1, H, W)`` attention maps (positive).
    Returns:
        ``(N, C)``.
    """
    if a_maps.shape[0] != a2.shape[0] or a_maps.shape[1] != 1 or a_maps.shape[2:] != a2.shape[2:]:
        raise ValueError(f"A_maps {tuple(a_maps.shape)} does not match A2 {tuple(a2.shape)}")
    return a2.sum(dim=(2, 3)) / a_maps.sum(dim=(2, 3))
