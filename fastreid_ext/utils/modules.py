"""Helpers on ``nn.Module`` s: the bare model behind a parallel wrapper, a model's device, a
training mode whose gradients do not depend on the batch split."""
from __future__ import annotations

import torch
from torch import nn

__all__ = ["unwrap", "model_device", "train_with_frozen_statistics"]


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


def train_with_frozen_statistics(model: nn.Module) -> nn.Module:
    """Training mode with every BatchNorm (running statistics) and dropout in eval mode: one
    step's gradients then do not depend on how the batch is split over processes, so a DDP
    step can be compared with one process on the whole batch (2-process test, GPU self-test)."""
    model.train()
    for m in model.modules():
        if isinstance(m, (nn.modules.batchnorm._BatchNorm, nn.Dropout)):
            m.eval()
    return model
