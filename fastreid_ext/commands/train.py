"""Train or evaluate any registered ReID model: fast-reid's command line
(``tools/train_net.py`` and ``fastreid-ext train`` / ``fastreid-ext eval``).

    fastreid-ext train --config-file Video-Baseline/synthetic_cpu.yml OUTPUT_DIR logs/demo
    fastreid-ext eval  --config-file X.yml --weights logs/x/model_final.pth
    fastreid-ext train --config-file X.yml --resume            # continue the last run
    fastreid-ext train --config-file X.yml --overwrite         # move the folder's run aside, start anew
    fastreid-ext train --config-file X.yml --num-gpus 2        # 2 processes (GPUs, or gloo on CPU)

``--config-file`` is a path or a shipped config's name (``fastreid-ext configs`` lists them).
``--weights W`` is ``MODEL.WEIGHTS W`` (which is still accepted among the overrides). Every
installed project (entry-point group ``fastreid_ext.projects``) is registered by importing its
package; works from any working directory.
"""
from __future__ import annotations

import contextlib
import logging
import os
from typing import Optional, Sequence

import fastreid_ext  # noqa: F401  (compat shims + registrations, before any fastreid.data import)
from fastreid.engine.defaults import default_argument_parser, default_setup
from fastreid.utils import comm
from fastreid.utils.env import seed_all_rng
from fastreid.utils.logger import setup_logger
from fastreid_ext.config import build_config, find_config, project_entry_points
from fastreid_ext.engine import Trainer, build_inference_model, launch
from fastreid_ext.engine.run_folder import (
    RunFolderError,
    apply_schedule_changes,
    claim_output_dir,
    eval_output_dir,
    restore_config,
)
from fastreid_ext.utils.safe_io import file_lock

from .options import add_weights_option, opts_with_weights

__all__ = ["cli", "main", "parser", "setup"]


def parser(eval_only: bool = False):
    """The host's ``default_argument_parser`` plus ``--weights`` and ``--debug``."""
    p = default_argument_parser()
    p.description = ("Evaluate a trained model on the config's test sets." if eval_only else
                     "Train (or with --eval-only evaluate) a ReID model from a config.")
    p.epilog = "Trailing KEY VALUE pairs override the config, e.g. SOLVER.MAX_EPOCH 10 OUTPUT_DIR logs/x"
    add_weights_option(p)
    p.add_argument("--overwrite", action="store_true",
                   help="start a new run in an OUTPUT_DIR holding one: the old run's files are "
                        "moved to <OUTPUT_DIR>.old-<time>, never deleted")
    p.add_argument("--debug", action="store_true", help="show tracebacks of configuration errors")
    return p


def parse_args(argv: Optional[Sequence[str]] = None, eval_only: bool = False):
    """Parsed arguments; a missing ``--config-file`` or config file raises a one-line error
    before anything is written."""
    args = parser(eval_only).parse_args(argv)
    if not args.config_file:
        raise ValueError("--config-file is required (a YAML file or a shipped config name; "
                         "`fastreid-ext configs` lists them)")
    args.config_file = find_config(args.config_file)
    args.eval_only = args.eval_only or eval_only
    args.opts = opts_with_weights(args)
    return args


def setup(args, stack: contextlib.ExitStack = None):
    """The run's config, logging and seed. A training run (``stack`` given) first takes its
    output folder's training lock into ``stack``, before ``default_setup`` writes
    ``config.yaml`` / ``log.txt`` there: a second run started by mistake in the folder of a live
    one refuses (``LockBusy``) before touching its files. ``Trainer.train`` takes the same lock
    again (re-entrant in one process). Then the folder is claimed
    (:func:`~fastreid_ext.engine.run_folder.claim_output_dir`): a run already there is refused
    without ``--resume`` / ``--overwrite``, a resume with settings it cannot honour is refused;
    ``args.reschedule`` tells whether the resumed run's learning rates must follow new settings."""
    cfg = build_config(args.config_file, args.opts)
    args.reschedule = False
    if cfg.OUTPUT_DIR and os.path.exists(cfg.OUTPUT_DIR) and not os.path.isdir(cfg.OUTPUT_DIR):
        raise RunFolderError(f"OUTPUT_DIR {cfg.OUTPUT_DIR!r} is a file; name a folder")
    if stack is not None and not args.eval_only and cfg.OUTPUT_DIR:
        plan = None
        if comm.is_main_process():
            stack.enter_context(file_lock(os.path.join(cfg.OUTPUT_DIR, "training"), blocking=False,
                                          what=f"training output folder {cfg.OUTPUT_DIR}"))
            plan = claim_output_dir(cfg, args.resume, getattr(args, "overwrite", False))
            stack.push(_config_keeper(plan, cfg.OUTPUT_DIR))
        args.reschedule = comm.all_gather(bool(plan and plan.reschedule))[0] if comm.get_world_size() > 1 \
            else bool(plan and plan.reschedule)
    if args.eval_only and eval_output_dir(cfg.OUTPUT_DIR) != cfg.OUTPUT_DIR:
        # evaluating a run from its own folder: keep that run's config.yaml / results.json
        cfg.defrost()
        cfg.OUTPUT_DIR = eval_output_dir(cfg.OUTPUT_DIR)
        cfg.freeze()
        print(f"--eval-only: {os.path.dirname(cfg.OUTPUT_DIR)!r} holds a training run; "
              f"writing the evaluation to {cfg.OUTPUT_DIR!r}", flush=True)
    default_setup(cfg, args)
    # the host only sets up the "fastreid" logger; show the plugin's and the projects' too
    for name in ("fastreid_ext", *(ep.module.split(".")[0] for ep in project_entry_points())):
        setup_logger(cfg.OUTPUT_DIR, distributed_rank=comm.get_rank(), name=name)
    if cfg.SEED >= 0:
        seed_all_rng(cfg.SEED + comm.get_rank())
    return cfg


def _config_keeper(plan, out):
    """Exit callback: a failed resume puts the run's previous ``config.yaml`` back; a successful
    one keeps that copy only when the config changed."""
    def done(exc_type, exc, tb):
        if exc_type is not None:
            restore_config(plan, out)
        elif plan.kept_config and not plan.honoured and os.path.isfile(plan.kept_config):
            os.remove(plan.kept_config)
        return False
    return done


def main(args):
    with contextlib.ExitStack() as stack:
        return _run(args, setup(args, stack))


def _run(args, cfg):
    if args.eval_only:
        if not cfg.MODEL.WEIGHTS or not os.path.isfile(cfg.MODEL.WEIGHTS):
            raise FileNotFoundError(f"--eval-only needs --weights (MODEL.WEIGHTS) to name a checkpoint "
                                    f"file; got {cfg.MODEL.WEIGHTS!r}")
        # the classifier's size comes from the run's saved config (see build_inference_model)
        model, cfg = build_inference_model(cfg)
        return Trainer.test(cfg, model)

    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=args.resume)
    if args.resume and getattr(args, "reschedule", False) and trainer.start_epoch > 0:
        lrs = apply_schedule_changes(trainer)
        logging.getLogger("fastreid_ext.engine").info(
            f"--resume: learning rates now follow the new settings (epoch {trainer.start_epoch}: "
            f"{min(lrs):.3g} .. {max(lrs):.3g})")
    return trainer.train()


def cli(argv: Optional[Sequence[str]] = None, eval_only: bool = False):
    """Parse ``argv``, then train / evaluate in ``--num-gpus`` processes; returns the results."""
    args = parse_args(argv, eval_only)
    logging.getLogger(__name__).info("Command Line Args: %s", args)
    # --num-gpus N: N processes per machine, one per GPU (NCCL) for MODEL.DEVICE cuda, or N CPU
    # processes over gloo for MODEL.DEVICE cpu; a bad config fails here, before any file is written
    device = build_config(args.config_file, args.opts).MODEL.DEVICE
    return launch(main, max(1, args.num_gpus), num_machines=args.num_machines,
                  machine_rank=args.machine_rank, dist_url=args.dist_url, args=(args,), device=device)


def eval_cli(argv: Optional[Sequence[str]] = None):
    """``fastreid-ext eval``: :func:`cli` with ``--eval-only``."""
    return cli(argv, eval_only=True)
