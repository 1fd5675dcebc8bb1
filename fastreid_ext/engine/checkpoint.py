"""Atomic checkpoints.

The host's ``Checkpointer.save`` (``fastreid/utils/checkpoint.py:72-95``) writes the ``.pth``
in place and then rewrites ``last_checkpoint``; a process killed mid-write leaves a truncated
file that ``--resume`` then tries to load. Here both files are written to a temporary file in
the same folder, flushed, fsynced and moved into place with ``os.replace``, so a reader sees
either the old file or the complete new one (with ordinary file permissions, see
:mod:`.safe_io`).

Inference loads (``refuse_unused=True``: ``--eval-only``, extraction, export) also refuse
tensors of the checkpoint that the model does not have (weights of a module the config does not
build, e.g. a temporal attention under ``MODEL.TEMPORAL.AGG avg``: the host only logs them).

Loading is strict (the host's ``_load_model``, ``checkpoint.py:230-262``, skips any tensor of
another shape with a warning and leaves missing ones random, so weights of another depth or
meta-arch "load" with rc 0): a shape mismatch or a missing tensor raises
:class:`CheckpointMismatch`, except the tensors whose first dimension is the number of training
identities (the classifier ``heads.weight`` / ``*classifier*`` except normalisation layers,
``losses.*`` such as center-loss centers), which are skipped with a warning because they take no
part in the embedding.
``partial_load=True`` (config ``MODEL.PARTIAL_LOAD``) restores the host's skip-and-warn.

``resume_or_load`` with ``resume=True`` falls back to the newest readable checkpoint, with a
warning, when the one named in ``last_checkpoint`` cannot be read (truncated or damaged).
"""
from __future__ import annotations

import logging
import os
from typing import Any, Dict, List, Optional

import torch

from fastreid.utils.checkpoint import (
    Checkpointer,
    _filter_reused_missing_keys,
    _strip_prefix_if_present,
)
from fastreid_ext.utils.safe_io import atomic_write

__all__ = ["AtomicCheckpointer", "CheckpointMismatch", "ResumeMismatch", "atomic_write",
           "class_count_key", "read_best_metric"]

logger = logging.getLogger(__name__)


class CheckpointMismatch(ValueError):
    """Checkpoint tensors that do not fit the model (shape mismatches / missing tensors)."""


class ResumeMismatch(CheckpointMismatch):
    """A run's checkpoint that the resumed run cannot continue (other identities, other
    optimizer parameter groups)."""


def class_count_key(name: str, model: Optional[torch.nn.Module] = None) -> bool:
    """Tensors sized by the number of training identities: the head's classifier
    (``heads.weight``, ``*classifier*``) and the losses' state (``losses.*``, e.g. centers).

    With ``model``, a tensor of a normalisation layer is never one, whatever its name: a BNNeck
    inside a module called ``classifier`` (e.g. ``heads.classifier.neck``) is sized by
    the feature dimension and defines the ``after``-BN test embedding, so a checkpoint without it
    must not load silently."""
    parts = name.split(".")
    if not (name.endswith("heads.weight") or any("classifier" in p for p in parts) or parts[0] == "losses"):
        return False
    if model is not None:
        owner = dict(model.named_modules()).get(".".join(parts[:-1]))
        if isinstance(owner, (torch.nn.modules.batchnorm._NormBase, torch.nn.GroupNorm, torch.nn.LayerNorm)):
            return False
    return True


def read_best_metric(path: str) -> Optional[float]:
    """The ``metric`` stored in the checkpoint ``path`` (``model_best.pth``); ``None`` when the
    file is missing, unreadable or has none."""
    if not os.path.isfile(path):
        return None
    try:
        data = torch.load(path, map_location="cpu", weights_only=False, mmap=True)
    except Exception as e:  # truncated / not a checkpoint
        logger.warning("cannot read the best metric from %s: %s", path, e)
        return None
    metric = data.get("metric") if isinstance(data, dict) else None
    return None if metric is None else float(metric)


class AtomicCheckpointer(Checkpointer):
    """The host's ``Checkpointer`` with atomic writes of the checkpoint and its tag file, strict
    loading (see the module docstring; ``partial_load=True`` for the host's behaviour) and a
    fallback to an older checkpoint when the last one is damaged."""

    def __init__(self, model, save_dir: str = "", *, save_to_disk: bool = True, partial_load: bool = False,
                 refuse_unused: bool = False, **checkpointables: Any):
        super().__init__(model, save_dir, save_to_disk=save_to_disk, **checkpointables)
        self.partial_load = bool(partial_load)
        self.refuse_unused = bool(refuse_unused)

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
        atomic_write(save_file, lambda f: torch.save(data, f))  # the trainer locks the folder
        self.tag_last_checkpoint(basename)

    def tag_last_checkpoint(self, last_filename_basename: str) -> None:
        atomic_write(os.path.join(self.save_dir, "last_checkpoint"),
                     lambda f: f.write(last_filename_basename), mode="w")

    # ------------------------------------------------------------------ loading
    def load(self, path: str, checkpointables: Optional[List[str]] = None):
        """The host's ``load``; a :class:`CheckpointMismatch` names the file."""
        try:
            return super().load(path, checkpointables)
        except CheckpointMismatch as e:
            if path and path not in str(e):
                raise type(e)(f"{path}: {e}") from None
            raise

    def _load_file(self, f: str):
        try:
            return super()._load_file(f)
        except Exception as e:  # truncated zip, pickle errors, EOF: name the file
            raise ValueError(f"cannot read checkpoint {f!r} (truncated or not a checkpoint): "
                             f"{type(e).__name__}: {e}") from e

    def _check_compatible(self, state: Dict[str, Any]) -> List[str]:
        """Problems that make ``state`` unusable for the model (empty when it fits); tensors
        sized by the number of identities are only logged."""
        state = dict(state)
        _strip_prefix_if_present(state, "module.")
        own = self.model.state_dict()
        problems = []
        for k, v in state.items():
            if k not in own or not hasattr(v, "shape"):
                continue
            a, b = tuple(v.shape), tuple(own[k].shape)
            if a == b:
                continue
            if class_count_key(k, self.model) and len(a) == len(b) and a[1:] == b[1:]:
                self.logger.warning("not loading %r: %d identities in the checkpoint, %d in the model "
                                    "(the classifier takes no part in the embedding)", k, a[0], b[0])
                continue
            problems.append(f"{k}: {a} in the checkpoint, {b} in the model")
        if self.refuse_unused:  # weights of modules this config does not build: another model
            unused = sorted(k for k in state if k not in own and not class_count_key(k))
            if unused:
                problems.append(f"{len(unused)} tensor(s) of the checkpoint that the model does not use: "
                                f"{unused[:8]}{' ...' if len(unused) > 8 else ''}")
        missing = [k for k in own if k not in state and not class_count_key(k, self.model)]
        missing = sorted(_filter_reused_missing_keys(self.model, missing)) if missing else []
        if missing:
            problems.append(f"{len(missing)} tensor(s) of the model missing from the checkpoint: "
                            f"{missing[:8]}{' ...' if len(missing) > 8 else ''}")
        return problems

    def _load_model(self, checkpoint: Any):
        problems = self._check_compatible(checkpoint.get("model", {}))
        if problems and not self.partial_load:
            raise CheckpointMismatch(
                f"the checkpoint does not fit the model {type(self.model).__name__} (another depth, "
                f"meta-architecture or config?):\n  " + "\n  ".join(problems[:12]) +
                "\nSet MODEL.PARTIAL_LOAD True to load only the matching tensors (the others keep "
                "their initial values).")
        return super()._load_model(checkpoint)

    def get_checkpoint_file(self) -> str:
        """The checkpoint ``last_checkpoint`` names (the host's, ``fastreid/utils/checkpoint.py:146``,
        raises ``UnicodeDecodeError`` on a damaged tag file); a tag that is not UTF-8 text naming a
        file of the folder is reported and the newest ``.pth`` taken instead."""
        tag = os.path.join(self.save_dir, "last_checkpoint")
        try:
            with open(tag, "rb") as f:
                name = f.read().decode("utf-8").strip()
        except OSError:
            return ""
        except UnicodeDecodeError:
            name = None
        if name and os.sep not in name and "\0" not in name:
            return os.path.join(self.save_dir, name)
        files = self.readable_checkpoints()
        if not files:
            raise ValueError(f"{tag!r} is damaged (not UTF-8 text naming a checkpoint) and {self.save_dir!r} "
                             f"holds no .pth file")
        self.logger.warning("%s is damaged (not UTF-8 text naming a checkpoint): using the newest checkpoint %s",
                            tag, files[0])
        return files[0]

    def readable_checkpoints(self) -> List[str]:
        """``.pth`` files of ``save_dir``, newest first (modification time, then name)."""
        files = self.get_all_checkpoint_files()
        return sorted(files, key=lambda p: (os.path.getmtime(p), os.path.basename(p)), reverse=True)

    def resume_or_load(self, path: str, *, resume: bool = True):
        """The host's ``resume_or_load``; when resuming and the last checkpoint cannot be read,
        the next newest readable one is used (with a warning); when none is readable, raise."""
        if not (resume and self.has_checkpoint()):
            return self.load(path, checkpointables=[])
        last = self.get_checkpoint_file()
        candidates = [last] + [p for p in self.readable_checkpoints() if os.path.abspath(p) != os.path.abspath(last)]
        errors = []
        for cand in candidates:
            if not os.path.isfile(cand):
                errors.append(f"{cand}: missing")
                continue
            try:
                data = self._load_file(cand)
            except ValueError as e:
                errors.append(str(e))
                self.logger.warning("%s; trying an older checkpoint", e)
                continue
            if cand != last:
                self.logger.warning("resuming from %s instead of the unreadable %s", cand, last)
            self.check_resumable(cand, data)
            return self._load_data(cand, data)
        raise ValueError("--resume: no readable checkpoint in " + repr(self.save_dir) + ":\n  " + "\n  ".join(errors))

    def check_resumable(self, path: str, checkpoint: dict) -> None:
        """Raise :class:`ResumeMismatch` before anything is loaded when the run in ``path`` was
        trained on another number of identities (its classifier / loss state) or its optimizer
        has other parameter groups than the one built now (another model or config)."""
        own = self.model.state_dict()
        problems = []
        for k, v in (checkpoint.get("model") or {}).items():
            k = k[len("module."):] if k.startswith("module.") else k
            if k in own and hasattr(v, "shape") and class_count_key(k, self.model) and v.shape != own[k].shape:
                problems.append(f"{k} holds {v.shape[0]} identities in the checkpoint, the training data "
                                f"now has {own[k].shape[0]} (another dataset?)")
                break
        opt = self.checkpointables.get("optimizer")
        saved = (checkpoint.get("optimizer") or {}).get("param_groups")
        if opt is not None and saved is not None:
            a = [len(g["params"]) for g in saved]
            b = [len(g["params"]) for g in opt.param_groups]
            if a != b:
                problems.append(f"the optimizer has {len(b)} parameter groups ({sum(b)} tensors), the "
                                f"checkpoint {len(a)} ({sum(a)} tensors): another model or optimizer config")
        if problems:
            raise ResumeMismatch(f"--resume: the run's checkpoint {path!r} cannot be continued with this "
                                 f"config: " + "; ".join(problems) + ". Nothing was loaded; start a new "
                                 "run (another OUTPUT_DIR or --overwrite)")

    def _load_data(self, path: str, checkpoint: dict) -> dict:
        """``Checkpointer.load`` after the file has been read (same steps and logging)."""
        self.logger.info("Loading checkpoint from %s", path)
        incompatible = self._load_model(checkpoint)
        if incompatible is not None:
            self._log_incompatible_keys(incompatible)
        for key in self.checkpointables:
            if key in checkpoint:
                self.logger.info("Loading %s from %s", key, path)
                self.checkpointables[key].load_state_dict(checkpoint.pop(key))
        return checkpoint


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
