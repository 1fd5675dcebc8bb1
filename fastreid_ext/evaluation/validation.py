"""Input checks shared by the evaluation modules (distances, search, rank metrics).

Every check raises ``ValueError`` (or ``TypeError`` for a wrong container type) with a message
that names the input, its shape and what is wrong; nothing is silently dropped or repaired.
"""
from __future__ import annotations

import warnings
from typing import Any, Optional, Tuple, Union

import numpy as np
import torch

__all__ = [
    "METRICS",
    "ArrayLike",
    "as_feature_tensor",
    "as_feature_matrix",
    "as_1d",
    "check_metric",
    "resolve_device",
    "validate_features",
]

#: Distances understood everywhere in :mod:`fastreid_ext.evaluation` (see
#: :mod:`fastreid_ext.evaluation.distance` for their exact definitions).
METRICS = ("cosine", "euclidean")

ArrayLike = Union[torch.Tensor, np.ndarray]


def check_metric(metric: str) -> None:
    if metric not in METRICS:
        raise ValueError(f"Unknown metric {metric!r}; expected one of {METRICS}")


def as_feature_tensor(x: ArrayLike, name: str) -> torch.Tensor:
    """``x`` as a 2-D floating tensor (numpy arrays are wrapped without a copy when contiguous;
    integer tensors become float32)."""
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(np.ascontiguousarray(x))
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor or numpy array, got {type(x).__name__}")
    if x.dim() != 2:
        raise ValueError(f"{name} must be 2-D (N, D), got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        x = x.float()
    return x


def validate_features(query: ArrayLike, gallery: ArrayLike) -> Tuple[torch.Tensor, torch.Tensor]:
    """Check a query / gallery pair and return them as 2-D floating tensors.

    Raises ``ValueError`` on an empty query or gallery, on different feature dimensions, and
    on non-finite values (naming how many NaN / inf entries and rows are affected).
    """
    q = as_feature_tensor(query, "query")
    g = as_feature_tensor(gallery, "gallery")
    if q.shape[0] == 0:
        raise ValueError("Empty query set: 0 query features")
    if g.shape[0] == 0:
        raise ValueError("Empty gallery set: 0 gallery features")
    if q.shape[1] != g.shape[1]:
        raise ValueError(
            f"Query and gallery features have different dimensions: {q.shape[1]} vs {g.shape[1]}"
        )
    for name, x in (("query", q), ("gallery", g)):
        # row chunks: no (N, D) boolean temporary for a large gallery
        if all(bool(torch.isfinite(x[s : s + 65536]).all()) for s in range(0, x.shape[0], 65536)):
            continue
        finite = torch.isfinite(x)
        if not bool(finite.all()):
            n_nan = int(torch.isnan(x).sum())
            n_inf = int(torch.isinf(x).sum())
            n_rows = int((~finite).any(dim=1).sum())
            raise ValueError(
                f"{name} features contain non-finite values: {n_nan} NaN and {n_inf} inf "
                f"entries in {n_rows} of {x.shape[0]} rows"
            )
    return q, g


def as_feature_matrix(name: str, x: Any, device: Optional[torch.device]) -> torch.Tensor:
    """``x`` (numpy, list or tensor) as a non-empty 2-D floating tensor on ``device`` for the
    rank metrics: integers become float64 (exact), half precision float32; non-finite values
    raise."""
    t = x if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))
    if t.ndim != 2:
        raise ValueError(f"{name} must be 2-D (N, D), got shape {tuple(t.shape)}")
    if t.shape[0] == 0:
        raise ValueError(f"{name} is empty: shape {tuple(t.shape)}")
    if not t.is_floating_point():
        t = t.to(torch.float64)  # integers: exact in float64
    elif t.dtype in (torch.float16, torch.bfloat16):
        t = t.float()
    if device is not None:
        t = t.to(device)
    # a cheap reduction first (no (N, D) temporary); the exact count only when it is non-finite
    bad = 0 if bool(torch.isfinite(t.sum())) else int((~torch.isfinite(t)).sum())
    if bad:
        raise ValueError(f"{name} has {bad} non-finite values (NaN or inf) out of {t.numel()}")
    return t


def as_1d(name: str, x: Any, n: int) -> np.ndarray:
    """``x`` (numpy, list or tensor) as a 1-D numpy array of length ``n``."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    a = np.asarray(x)
    if a.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {a.shape}")
    if a.shape[0] != n:
        raise ValueError(f"{name} has length {a.shape[0]}, expected {n}")
    return a


def resolve_device(device, ref: torch.Tensor) -> torch.device:
    """``device`` as a ``torch.device`` (``None``: the device of ``ref``); a CUDA device on a
    machine without CUDA falls back to the CPU with a warning."""
    if device is None:
        return ref.device
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        warnings.warn("CUDA was asked for retrieval but is not available; using the CPU")
        return torch.device("cpu")
    return device
