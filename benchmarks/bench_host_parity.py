#!/usr/bin/env python
"""Speed and accuracy parity with the host: one fast-reid config, the same synthetic Market-1501
tree, trained and evaluated by the host's own ``DefaultTrainer`` and by this plugin's
``Trainer``; training images/s and final mAP, several seeds each, printed as a table.

    python benchmarks/bench_host_parity.py --config ../shared/host-configs/Market1501/AGW_R50.yml

The host cannot run on a CPU as installed; inside this script only (monkeypatching, the
installed package is not edited) it is made CPU-runnable with the least change:
- ``DataLoaderX`` (``fastreid/data/data_utils.py:147-190``) keeps its prefetch thread but skips
  its CUDA stream and device copies (the batch stays on the CPU, where the model is);
- ``ReidEvaluator._compile_dependencies`` (``evaluation/reid_evaluation.py:127``) does not build
  the Cython evaluator in site-packages; the host's Python evaluator runs instead;
- ``SOLVER.AMP.ENABLED False`` for both trainers (the host's ``AMPTrainer`` asserts CUDA,
  ``engine/train_loop.py:335``), so both train in float32;
- the host's optimizer zeroes its gradients in place: its ``ContiguousParams`` optimizer
  (``solver/build.py:192-208``) steps one flat buffer whose gradient the parameters' gradients
  are views of, and torch >= 2.0's ``zero_grad()`` sets that gradient to ``None``
  (``set_to_none=True``), after which no parameter is ever updated (the host's
  ``DefaultTrainer`` does not train at all on today's torch);
- the host reads the dataset root from ``$FASTREID_DATASETS`` at import
  (``data/build.py:27``): it is set to the same tree.

Both sides get the same config (the host ignores the plugin's keys), the same overrides, the
same seed per run (``seed_all_rng`` before the trainer is built). Images/s = (iterations after
the first ``--warmup``) x batch / their wall time, data loading included, evaluation excluded.
"""
from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import tempfile
import time

import fastreid_ext  # noqa: F401  (compat shims, registrations)
from fastreid.engine.train_loop import HookBase
from fastreid.utils.env import seed_all_rng
from fastreid_ext.config import build_config
from fastreid_ext.data.synthetic import DONE_FILE, generate

MARKET_DIR = "Market-1501-v15.09.15"


class Throughput(HookBase):
    """Wall time of the training iterations after the first ``warmup`` ones."""

    def __init__(self, warmup: int):
        self.warmup = warmup
        self.start = None
        self.end = None
        self.iters = 0

    def after_step(self):
        now = time.perf_counter()
        if self.iters == self.warmup:
            self.start = now
        self.iters += 1
        self.end = now

    def images_per_s(self, batch: int) -> float:
        timed = self.iters - 1 - self.warmup
        if timed <= 0 or self.start is None:
            raise ValueError(f"only {self.iters} iterations: raise --epochs or lower --warmup")
        return timed * batch / (self.end - self.start)


def make_host_cpu_runnable(root: str) -> None:
    """The benchmark-only patches of the module docstring."""
    import torch

    from fastreid.data import build as host_build
    from fastreid.data import data_utils
    from fastreid.engine.defaults import DefaultTrainer
    from fastreid.evaluation.reid_evaluation import ReidEvaluator

    class CPUBackgroundGenerator(data_utils.BackgroundGenerator):
        def run(self):  # the host's run() without torch.cuda.set_device
            for item in self.generator:
                if self.exit_event.is_set():
                    break
                self.queue.put(item)
            self.queue.put(None)

    class CPUDataLoaderX(data_utils.DataLoaderX):
        def __init__(self, local_rank, **kwargs):
            torch.utils.data.DataLoader.__init__(self, **kwargs)
            self.local_rank = local_rank

        def __iter__(self):
            self.iter = CPUBackgroundGenerator(torch.utils.data.DataLoader.__iter__(self), self.local_rank)
            self.preload()
            return self

        def preload(self):
            self.batch = next(self.iter, None)

        def __next__(self):
            batch = self.batch
            if batch is None:
                raise StopIteration
            self.preload()
            return batch

    host_build.DataLoaderX = CPUDataLoaderX
    host_build._root = root
    ReidEvaluator._compile_dependencies = lambda self: None

    host_build_optimizer = DefaultTrainer.build_optimizer.__func__

    def build_optimizer(cls, cfg, model):
        optimizer, param_wrapper = host_build_optimizer(cls, cfg, model)
        zero_grad = optimizer.zero_grad
        optimizer.zero_grad = lambda set_to_none=False: zero_grad(set_to_none=False)
        return optimizer, param_wrapper

    DefaultTrainer.build_optimizer = classmethod(build_optimizer)


def ensure_market(root: str, ids: int, size) -> None:
    path = os.path.join(root, MARKET_DIR)
    if not os.path.isfile(os.path.join(path, DONE_FILE)):
        print(f"generating a synthetic Market-1501 tree ({ids} ids) in {path}", flush=True)
        generate("market1501", path, ids=ids, seed=0, frame_size=tuple(size))


def one_run(side: str, cfg, seed: int, warmup: int):
    from fastreid.engine.defaults import DefaultTrainer
    from fastreid_ext.engine import Trainer

    os.makedirs(cfg.OUTPUT_DIR, exist_ok=True)
    seed_all_rng(seed)
    trainer = (DefaultTrainer if side == "host" else Trainer)(cfg)
    timer = Throughput(warmup)
    trainer.register_hooks([timer])
    trainer.resume_or_load(resume=False)
    results = trainer.train()
    return timer.images_per_s(cfg.SOLVER.IMS_PER_BATCH), float(results["mAP"]), timer.iters


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", default=os.path.join("..", "shared", "host-configs", "Market1501", "AGW_R50.yml"))
    ap.add_argument("--root", default="", help="datasets root (default: a temporary folder)")
    ap.add_argument("--ids", type=int, default=24, help="identities of the synthetic tree")
    ap.add_argument("--frame-size", type=int, nargs=2, default=(64, 32))
    ap.add_argument("--depth", default="18x")
    ap.add_argument("--input-size", type=int, nargs=2, default=(64, 32))
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--warmup", type=int, default=3, help="first iterations not timed")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("opts", nargs=argparse.REMAINDER, help="more KEY VALUE overrides")
    args = ap.parse_args(argv)

    root = args.root or tempfile.mkdtemp(prefix="bench_host_parity_")
    os.environ["FASTREID_DATASETS"] = root
    ensure_market(root, args.ids, args.frame_size)
    make_host_cpu_runnable(root)
    logging.getLogger("fastreid").setLevel(logging.WARNING)

    depth_dim = {"18x": 512, "34x": 512, "50x": 2048, "101x": 2048}[args.depth]
    size = f"[{args.input_size[0]}, {args.input_size[1]}]"
    opts = ["MODEL.DEVICE", "cpu", "MODEL.BACKBONE.PRETRAIN", "False", "MODEL.BACKBONE.DEPTH", args.depth,
            "MODEL.BACKBONE.FEAT_DIM", str(depth_dim), "INPUT.SIZE_TRAIN", size, "INPUT.SIZE_TEST", size,
            "SOLVER.MAX_EPOCH", str(args.epochs), "SOLVER.IMS_PER_BATCH", str(args.batch),
            "SOLVER.AMP.ENABLED", "False", "DATALOADER.NUM_WORKERS", str(args.workers),
            "DATALOADER.NUM_WORKERS_TEST", "4", "TEST.IMS_PER_BATCH", "128"] + list(args.opts)
    if "EPOCH_LENGTH" in build_config(args.config, opts).DATALOADER:
        opts += ["DATALOADER.EPOCH_LENGTH", "samples"]  # the host's epoch: samples // batch
    rows = {"host": [], "ours": []}
    out_root = tempfile.mkdtemp(prefix="bench_host_parity_out_")
    for seed in args.seeds:
        for side in ("host", "ours"):
            cfg = build_config(args.config, opts + ["OUTPUT_DIR", os.path.join(out_root, f"{side}_{seed}")])
            ips, mAP, iters = one_run(side, cfg, seed, args.warmup)
            rows[side].append((ips, mAP))
            print(f"seed {seed} {side:4s}: {ips:7.1f} images/s, mAP {mAP:5.2f} ({iters} iterations)", flush=True)

    def stats(xs):
        return statistics.mean(xs), (statistics.stdev(xs) if len(xs) > 1 else 0.0)

    print(f"\n{args.config} | depth {args.depth}, input {size}, batch {args.batch}, {args.epochs} epochs, "
          f"{args.workers} workers, float32, {len(args.seeds)} seeds")
    print("| trainer | images/s (mean +- sd) | mAP % (mean +- sd) |")
    print("|---|---|---|")
    for side, name in (("host", "host DefaultTrainer (CPU-patched)"), ("ours", "fastreid_ext Trainer")):
        (ips_m, ips_s), (map_m, map_s) = stats([r[0] for r in rows[side]]), stats([r[1] for r in rows[side]])
        print(f"| {name} | {ips_m:.1f} +- {ips_s:.1f} | {map_m:.2f} +- {map_s:.2f} |")
    ratio = statistics.mean(r[0] for r in rows["ours"]) / statistics.mean(r[0] for r in rows["host"])
    print(f"\nimages/s ours / host: {ratio:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
