#!/usr/bin/env python
"""Where the learning rate of a config really decays, given the dataset's epoch length.

The host starts the step schedule only after the warm-up (``fastreid/engine/hooks.py:263-267``:
``lr_sched.step()`` once per epoch once ``iter > WARMUP_ITERS``), so ``SOLVER.STEPS`` count
epochs from the end of the warm-up. This tool drives the host's own scheduler
(``fastreid/solver/build.py:312``) and its ``LRScheduler`` hook epoch by epoch and prints the
epochs (0-based, counted from the start) whose learning rate is lower than the previous one.

Usage::

    python projects/MGRAFA/tools/schedule_audit.py --config-file projects/MGRAFA/configs/ilidsvid_mgrafa.yml \\
        --identities 150
    python projects/MGRAFA/tools/schedule_audit.py --config-file <cfg> --iters-per-epoch 9

``--identities`` (and ``--samples``, the number of train items) use the core's epoch length
(``fastreid_ext.engine.trainer.epoch_iterations``, ``DATALOADER.EPOCH_LENGTH``) with a P x K
sampler over that many identities.
"""
from __future__ import annotations

import argparse
import sys
import warnings
from types import SimpleNamespace
from typing import List

import torch

import fastreid_ext  # noqa: F401  (host compat shims before any fastreid import)
from fastreid.engine.hooks import LRScheduler  # noqa: E402
from fastreid.solver.build import build_lr_scheduler  # noqa: E402
from fastreid_ext.config import build_config  # noqa: E402


def identities_epoch(cfg, identities: int, samples: int = 0) -> int:
    """Iterations per epoch of a P x K loader over ``identities`` identities (``samples``
    items, for the host's ``samples // batch`` definition)."""
    sampler = SimpleNamespace(pids=list(range(identities)), num_instances=cfg.DATALOADER.NUM_INSTANCE)
    loader = SimpleNamespace(batch_sampler=SimpleNamespace(sampler=sampler),
                             dataset=[None] * max(samples, identities))
    from fastreid_ext.engine.trainer import epoch_iterations

    return epoch_iterations(cfg, loader)


def epoch_learning_rates(cfg, iters_per_epoch: int) -> List[float]:
    """Learning rate at the start of every epoch under the host's scheduler and hook."""
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([param], lr=cfg.SOLVER.BASE_LR)
    scheds = build_lr_scheduler(cfg, optimizer, iters_per_epoch)
    hook = LRScheduler(optimizer, scheds)
    trainer = SimpleNamespace(iter=0, epoch=0, warmup_iters=cfg.SOLVER.WARMUP_ITERS,
                              delay_epochs=cfg.SOLVER.DELAY_EPOCHS, grad_scaler=None,
                              storage=SimpleNamespace(put_scalar=lambda *a, **k: None))
    hook.trainer = trainer
    lrs = []
    with warnings.catch_warnings():  # no optimizer.step() here: torch's step-order warning
        warnings.simplefilter("ignore", UserWarning)
        _run_epochs(cfg, iters_per_epoch, optimizer, hook, trainer, lrs)
    return lrs


def _run_epochs(cfg, iters_per_epoch, optimizer, hook, trainer, lrs) -> None:
    for epoch in range(cfg.SOLVER.MAX_EPOCH):  # the host loop, fastreid/engine/train_loop.py:141-148
        trainer.epoch = epoch
        lrs.append(optimizer.param_groups[0]["lr"])
        for _ in range(iters_per_epoch):
            hook.after_step()
            trainer.iter += 1
        hook.after_epoch()


def decay_epochs(cfg, iters_per_epoch: int) -> List[int]:
    """Epochs (0-based) that start with a lower learning rate than the previous one, after the
    warm-up."""
    lrs = epoch_learning_rates(cfg, iters_per_epoch)
    warm_epochs = -(-cfg.SOLVER.WARMUP_ITERS // iters_per_epoch)
    return [e for e in range(max(1, warm_epochs + 1), len(lrs)) if lrs[e] < lrs[e - 1] * (1 - 1e-6)]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config-file", required=True)
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--iters-per-epoch", type=int)
    g.add_argument("--identities", type=int, help="train identities (P x K epoch)")
    p.add_argument("--samples", type=int, default=0, help="train items (DATALOADER.EPOCH_LENGTH samples)")
    p.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides KEY VALUE ...")
    a = p.parse_args(argv)
    cfg = build_config(a.config_file, a.opts)
    ipe = a.iters_per_epoch or identities_epoch(cfg, a.identities, a.samples)
    warm = cfg.SOLVER.WARMUP_ITERS / ipe
    print(f"{a.config_file}: {ipe} iterations / epoch, warm-up {cfg.SOLVER.WARMUP_ITERS} iterations "
          f"= {warm:.1f} epochs, STEPS {list(cfg.SOLVER.STEPS)} -> lr decays at epochs "
          f"{decay_epochs(cfg, ipe)} of {cfg.SOLVER.MAX_EPOCH}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
