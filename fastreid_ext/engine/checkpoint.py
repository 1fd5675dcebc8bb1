"""Atomic checkpoints.

The host's ``Checkpointer.save`` (``fastreid/utils/checkpoint.py:72-95``) writes the ``.pth``
in place and then rewrites ``last_checkpoint``; a process killed mid-write leaves a truncated
file that ``--resume`` then tries to load. Here both files are written to a temporary file in
the same folder, flushed, fsynced and moved into place with ``os.replace``, so a reader sees
either the old file or the complete new one.
"""
from __future__ import annotations

import os
import tempfile
from typing import Any, Callable

import torch
from fastreid.utils.checkpoint import Checkpointer


def atomic_write(path: str, write: Callable[[Any], None], mode: str = "wb") -> None:
    """Call ``write(fileobj)`` on a temporary file beside ``path``, then rename it to ``path``."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, mode) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


class AtomicCheckpointer(Checkpointer):
    """The host's ``Checkpointer`` with atomic writes of the checkpoint and its tag file."""

    def save(self, name: str, **kwargs: Any) -> None:
        if not self.save_dir or not self.save_to_disk:
            return
        data = {"model": self.model.state_dict()}
        for key, obj in self.checkpointables.items():
            data[key] = obj.state_dict()
        data.update(kwargs)
        basename = f"{name}.pth"
        save_file = os.path.join(self.save_dir, basename)
        self.logger.info("Saving checkpoint to %s", save_file)
        atomic_write(save_file, lambda f: torch.save(data, f))
        self.tag_last_checkpoint(basename)

    def tag_last_checkpoint(self, last_filename_basename: str) -> None:
        atomic_write(os.path.join(self.save_dir, "last_checkpoint"),
                     lambda f: f.write(last_filename_basename), mode="w")


class ScalerCheckpointable:
    """A ``torch.amp.GradScaler`` as a checkpointable (``Checkpointer(..., grad_scaler=...)``):
    a resumed float16 run continues at the loss scale it had, not at the initial 65536.

    A checkpoint without scaler state (written by an fp32 / bf16 run, whose scaler is disabled
    and saves ``{}``) leaves the scaler as it is instead of raising as
    ``GradScaler.load_state_dict`` does on an empty dict.
    """

    def __init__(self, scaler: torch.amp.GradScaler):
        self.scaler = scaler

    def state_dict(self) -> dict:
        return self.scaler.state_dict()

    def load_state_dict(self, state: dict) -> None:
        if not state or not self.scaler.is_enabled():
            return
        self.scaler.load_state_dict(state)
