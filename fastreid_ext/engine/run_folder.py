"""A training run's output folder belongs to that run.

``tools/train_net.py`` calls :func:`claim_output_dir` (holding the folder's training lock,
before anything is written there):

- a new run (no ``--resume``) refuses an ``OUTPUT_DIR`` that holds a run (a checkpoint,
  ``last_checkpoint`` or ``results.json``: finished or not) with :class:`RunFolderError`;
  ``--overwrite`` first moves every entry of the folder into a sibling
  ``<OUTPUT_DIR>.old-<UTC time>`` folder (nothing is deleted). A folder holding only the
  ``config.yaml`` / ``log.txt`` of a run that stopped before its first checkpoint is reused;
- ``--resume`` compares the requested config with the run's ``config.yaml``
  (:func:`compare_configs`): keys outside :data:`HONOURED` (data, input pipeline, model
  structure, optimizer or scheduler type, batch composition) that differ are refused before
  anything is written; the differing keys of :data:`HONOURED` (learning rates, schedule length,
  checkpoint / evaluation periods, test settings) are returned, logged, and applied to the
  loaded optimizer and schedulers by :func:`apply_schedule_changes`. The run's previous
  ``config.yaml`` is kept as ``config.<UTC time>.yaml`` when the config changes, and put back
  when a later check fails (:func:`restore_config`).

The checkpoint-level checks of a resume (identities of the classifier, the optimizer's
parameter groups) are :meth:`~fastreid_ext.engine.checkpoint.AtomicCheckpointer.check_resumable`.

The run's other files: ``results.json`` (:func:`write_results`, atomically, under its lock,
``"complete": true`` only once the run has finished), the temporary files an interrupted writer
left (:func:`remove_stale_temporaries`, under the folder's training lock) and where
``--eval-only`` writes beside a run (:func:`eval_output_dir`).
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

import yaml

from fastreid_ext.utils.safe_io import atomic_write, file_lock

__all__ = ["HONOURED", "LR_KEYS", "RUN_FILES", "ResumePlan", "RunFolderError", "apply_schedule_changes",
           "claim_output_dir", "compare_configs", "eval_output_dir", "holds_run", "move_run_aside",
           "remove_stale_temporaries", "restore_config", "write_results"]

logger = logging.getLogger(__name__)


class RunFolderError(ValueError):
    """An output folder that belongs to another run, or a resume that cannot be honoured."""


#: config keys (or prefixes ending in ".") a resumed run can change: each is applied for real
HONOURED = (
    "SOLVER.BASE_LR", "SOLVER.MAX_EPOCH", "SOLVER.ETA_MIN_LR", "SOLVER.STEPS", "SOLVER.GAMMA",
    "SOLVER.WARMUP_FACTOR", "SOLVER.WARMUP_ITERS", "SOLVER.WARMUP_METHOD", "SOLVER.DELAY_EPOCHS",
    "SOLVER.BIAS_LR_FACTOR", "SOLVER.HEADS_LR_FACTOR", "SOLVER.MOMENTUM", "SOLVER.NESTEROV",
    "SOLVER.WEIGHT_DECAY", "SOLVER.WEIGHT_DECAY_BIAS", "SOLVER.WEIGHT_DECAY_NORM",
    "SOLVER.CHECKPOINT_PERIOD", "SOLVER.CLIP_GRADIENTS.",
    "TEST.", "DATASETS.TESTS", "DATALOADER.NUM_WORKERS", "DATALOADER.NUM_WORKERS_TEST",
    "INPUT.SIZE_TEST", "INPUT.CROP.", "MODEL.DEVICE", "MODEL.WEIGHTS", "MODEL.PARTIAL_LOAD",
    "MODEL.DDP_FIND_UNUSED_PARAMETERS", "OUTPUT_DIR", "SEED", "CUDNN_BENCHMARK",
)
#: honoured keys that change the learning rates: the optimizer and schedulers are re-scheduled
LR_KEYS = ("SOLVER.BASE_LR", "SOLVER.MAX_EPOCH", "SOLVER.ETA_MIN_LR", "SOLVER.STEPS", "SOLVER.GAMMA",
           "SOLVER.WARMUP_FACTOR", "SOLVER.WARMUP_ITERS", "SOLVER.WARMUP_METHOD", "SOLVER.DELAY_EPOCHS",
           "SOLVER.BIAS_LR_FACTOR", "SOLVER.HEADS_LR_FACTOR", "SOLVER.MOMENTUM", "SOLVER.NESTEROV",
           "SOLVER.WEIGHT_DECAY", "SOLVER.WEIGHT_DECAY_BIAS", "SOLVER.WEIGHT_DECAY_NORM")

_RUN_MARKERS = ("last_checkpoint", "results.json")


def holds_run(folder: str) -> bool:
    """``folder`` holds a training run: a ``.pth`` checkpoint, ``last_checkpoint`` or ``results.json``."""
    if not folder or not os.path.isdir(folder):
        return False
    names = os.listdir(folder)
    return any(n in _RUN_MARKERS for n in names) or any(n.endswith(".pth") for n in names)


def _stamp() -> str:
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime())


def move_run_aside(folder: str) -> str:
    """Move every entry of ``folder`` except lock files into a new sibling folder
    ``<folder>.old-<UTC time>[-k]``; returns its path. Nothing is deleted."""
    base = os.path.abspath(folder).rstrip(os.sep) + ".old-" + _stamp()
    dest, k = base, 1
    while os.path.exists(dest):
        k += 1
        dest = f"{base}-{k}"
    os.makedirs(dest)
    for name in sorted(os.listdir(folder)):
        if name.endswith(".lock"):  # the live lock stays with the folder it guards
            continue
        os.replace(os.path.join(folder, name), os.path.join(dest, name))
    return dest


def _flat(node: Any, prefix: str = "") -> Dict[str, Any]:
    out: Dict[str, Any] = {}
    if isinstance(node, dict):
        for k, v in node.items():
            out.update(_flat(v, f"{prefix}{k}."))
        return out
    if isinstance(node, tuple):
        node = list(node)
    return {prefix[:-1]: node}


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return float(a) == float(b)
    return a == b


def _honoured(key: str) -> bool:
    return any(key == h or (h.endswith(".") and key.startswith(h)) for h in HONOURED)


def read_run_config(folder: str) -> Optional[Dict[str, Any]]:
    """The run's ``config.yaml`` as a flat ``{dotted key: value}``; ``None`` when absent.
    An unreadable file raises :class:`RunFolderError` naming it."""
    path = os.path.join(folder, "config.yaml")
    if not os.path.isfile(path):
        return None
    try:
        with open(path, encoding="utf-8") as f:
            raw = yaml.safe_load(f)
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        raise RunFolderError(f"cannot read the run's config {path!r} ({type(e).__name__}: "
                             f"{str(e).splitlines()[0]}); --overwrite moves the run aside") from None
    if not isinstance(raw, dict):
        raise RunFolderError(f"the run's config {path!r} is not a YAML mapping")
    return _flat(raw)


def compare_configs(saved: Dict[str, Any], cfg) -> Tuple[List[str], List[str]]:
    """``(refused, honoured)``: ``"KEY: <run's value> -> <requested value>"`` lines for the keys
    whose requested value differs from the run's ``saved`` (flat) config. Keys the run's config
    lacks (added to the defaults since) are not compared; ``MODEL.HEADS.NUM_CLASSES`` 0 (count
    the identities) is compared with the checkpoint instead."""
    refused, honoured = [], []
    for key, want in sorted(_flat(_plain(cfg)).items()):
        if key == "OUTPUT_DIR" or key not in saved or _same(saved[key], want):
            continue
        if key == "MODEL.HEADS.NUM_CLASSES" and want == 0:
            continue
        line = f"{key}: {saved[key]!r} -> {want!r}"
        (honoured if _honoured(key) else refused).append(line)
    return refused, honoured


def _plain(node: Any) -> Any:
    if isinstance(node, dict):
        return {str(k): _plain(v) for k, v in node.items()}
    if isinstance(node, (list, tuple)):
        return [_plain(v) for v in node]
    return node


@dataclass
class ResumePlan:
    """What :func:`claim_output_dir` decided: the honoured differences, the kept copy of the
    run's previous ``config.yaml`` and where an overwritten run went."""

    honoured: List[str] = field(default_factory=list)
    kept_config: Optional[str] = None
    moved_to: Optional[str] = None
    force_reschedule: bool = False

    @property
    def reschedule(self) -> bool:
        return self.force_reschedule or any(line.split(":")[0] in LR_KEYS for line in self.honoured)


def claim_output_dir(cfg, resume: bool, overwrite: bool) -> ResumePlan:
    """Check (and with ``overwrite`` clear) ``cfg.OUTPUT_DIR`` for a new or resumed run; see
    the module docstring. Call it holding the folder's training lock, before writing there."""
    out = cfg.OUTPUT_DIR
    plan = ResumePlan()
    if resume and overwrite:
        raise RunFolderError("--resume and --overwrite exclude each other")
    if not out or not holds_run(out):
        return plan
    has_ckpt = os.path.isfile(os.path.join(out, "last_checkpoint"))
    if not resume:
        if not overwrite:
            raise RunFolderError(
                f"OUTPUT_DIR {out!r} holds a training run ({_describe(out)}); a new run would replace "
                f"its files. Use --resume to continue it, --overwrite to move it aside (to "
                f"{out.rstrip(os.sep)}.old-<time>), or another OUTPUT_DIR")
        plan.moved_to = move_run_aside(out)
        logger.warning("--overwrite: the run in %s was moved to %s", out, plan.moved_to)
        return plan
    saved = read_run_config(out) if has_ckpt else None
    if saved is None:
        if has_ckpt:  # nothing to compare with: the requested schedule is applied as given
            plan.honoured = ["(no config.yaml in the run folder: the requested settings are applied)"]
            plan.force_reschedule = True
            logger.warning("--resume: %s has no config.yaml; the run's settings cannot be compared with the "
                           "requested ones: the requested learning rates and schedule are applied", out)
        return plan
    refused, honoured = compare_configs(saved, cfg)
    if refused:
        raise RunFolderError(
            f"--resume: the requested config differs from the run in {out!r} in settings a resumed run "
            f"cannot change (data, model, optimizer): " + "; ".join(refused) +
            ". Nothing was written; resume with the run's settings or start a new run "
            "(another OUTPUT_DIR or --overwrite)")
    plan.honoured = honoured
    # kept until the resume has passed the checkpoint checks (restore_config puts it back on a
    # failure); the caller removes it after a successful resume that changed nothing
    plan.kept_config = os.path.join(out, f"config.{_stamp()}.yaml")
    shutil.copy2(os.path.join(out, "config.yaml"), plan.kept_config)
    if honoured:
        logger.warning("--resume with %d changed setting(s), applied from now on: %s (the run's previous "
                       "config is kept as %s)", len(honoured), "; ".join(honoured), plan.kept_config)
    return plan


def _describe(folder: str) -> str:
    names = set(os.listdir(folder))
    parts = []
    if "model_final.pth" in names:
        parts.append("finished: model_final.pth")
    elif "last_checkpoint" in names:
        parts.append("unfinished: last_checkpoint")
    if "results.json" in names:
        parts.append("results.json")
    return ", ".join(parts) or "checkpoints"


def restore_config(plan: ResumePlan, folder: str) -> None:
    """Put the run's previous ``config.yaml`` back (a check after :func:`claim_output_dir`
    refused the resume)."""
    if plan.kept_config and os.path.isfile(plan.kept_config):
        with open(plan.kept_config, "rb") as f:
            data = f.read()
        atomic_write(os.path.join(folder, "config.yaml"), lambda f: f.write(data))
        os.remove(plan.kept_config)
        logger.info("the run's config.yaml was restored")


def apply_schedule_changes(trainer) -> List[float]:
    """After a resume, make the optimizer and schedulers follow the *new* config: every
    parameter group gets its new starting learning rate and hyper-parameters, fresh schedulers
    are built from the config and stepped as the host's ``LRScheduler`` hook
    (``fastreid/engine/hooks.py:254-267``) stepped them over the epochs already trained.
    Returns the learning rates now in the groups."""
    opt, cfg = trainer.optimizer, trainer.cfg
    fresh = trainer.build_optimizer(cfg, trainer.model)[1]  # the new groups' hyper-parameters
    if len(fresh) != len(opt.param_groups):
        raise RunFolderError(f"--resume: {len(fresh)} parameter groups in the config, "
                             f"{len(opt.param_groups)} in the optimizer")
    for group, new in zip(opt.param_groups, fresh):
        for k, v in new.items():
            if k != "params":
                group[k] = v
        group["initial_lr"] = group["lr"] = new["lr"]
    scheds = trainer.build_lr_scheduler(cfg, opt, trainer.iters_per_epoch)
    done_iters = trainer.start_epoch * trainer.iters_per_epoch
    with warnings.catch_warnings():  # "lr_scheduler.step() before optimizer.step()": a replay
        warnings.simplefilter("ignore", UserWarning)
        if "warmup_sched" in scheds:
            for _ in range(min(done_iters, cfg.SOLVER.WARMUP_ITERS)):
                scheds["warmup_sched"].step()
        for epoch in range(trainer.start_epoch):
            if (epoch + 1) * trainer.iters_per_epoch > cfg.SOLVER.WARMUP_ITERS and \
                    epoch + 1 > cfg.SOLVER.DELAY_EPOCHS:
                scheds["lr_sched"].step()
    for name in list(trainer.scheduler):
        if name not in scheds:
            trainer.scheduler.pop(name)
            trainer.checkpointer.checkpointables.pop(name, None)
    for name, sched in scheds.items():  # the LRScheduler hook holds this same dict
        trainer.scheduler[name] = sched
        trainer.checkpointer.checkpointables[name] = sched
    return [g["lr"] for g in opt.param_groups]


def remove_stale_temporaries(folder: str) -> int:
    """Delete the temporary files (``.<name>.<random>.tmp``) that writers killed mid-write left
    in ``folder``; call it only while holding the folder's training lock. Returns the count."""
    n = 0
    for name in os.listdir(folder):
        if name.startswith(".") and name.endswith(".tmp"):
            try:
                os.remove(os.path.join(folder, name))
                n += 1
            except OSError:
                pass
    if n:
        logger.info(f"removed {n} temporary file(s) left in {folder} by an interrupted run")
    return n


RUN_FILES = ("config.yaml", "results.json", "last_checkpoint")


def eval_output_dir(output_dir: str) -> str:
    """Where ``--eval-only`` writes: ``output_dir`` itself when it holds no run, else its
    ``eval`` subfolder, so that evaluating a run with its own ``config.yaml`` never replaces
    that run's ``config.yaml`` / ``results.json``."""
    if output_dir and any(os.path.exists(os.path.join(output_dir, f)) for f in RUN_FILES):
        return os.path.join(output_dir, "eval")
    return output_dir


def write_results(output_dir: str, results, complete: bool = True, scoring=None) -> str:
    """Write evaluation results as JSON (atomically, under the file's lock) to
    ``output_dir/results.json``, with ``"complete": complete`` (``False`` for the intermediate
    evaluations of a run that is still training) and, per test set, ``"scoring"``: how it was
    scored (``scoring``: ``{dataset: dict}``, :func:`~fastreid_ext.evaluation.scoring.describe_scoring`)."""
    results = {name: dict(r, scoring=scoring[name]) if scoring and scoring.get(name) else r
               for name, r in results.items()}
    def clean(v):
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items()}
        if hasattr(v, "item"):
            return v.item()
        return v

    if len(results) == 1:  # one test set: flat, like Trainer.test's return value, plus its name
        name, only = next(iter(results.items()))
        flat = clean(dict(only, dataset=name))
    else:
        flat = clean(results)
    flat["complete"] = bool(complete)
    path = os.path.join(output_dir, "results.json")
    with file_lock(path):
        atomic_write(path, lambda f: json.dump(flat, f, indent=2, sort_keys=True), mode="w")
    return path
