"""Helpers on ``nn.Module`` s: the bare model behind a parallel wrapper, a model's device."""
from __future__ import annotations

import torch
from torch import nn

__all__ = ["unwrap", "model_device"]


def unwrap(model: nn.Module) -> nn.Module:
    """The model inside a ``DistributedDataParallel`` / ``DataParallel`` wrapper; ``model``
    itself otherwise."""
    if isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
        return model.module
    return model


def model_device(model: nn.Module) -> torch.device:
    """Device of the model's first parameter (or buffer); CPU for a model without either."""
    model = unwrap(model)
    for t in model.parameters():
        return t.device
    for t in model.buffers():
        return t.device
    return torch.device("cpu")
