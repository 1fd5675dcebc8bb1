#!/usr/bin/env python
"""FGReID vs the video baseline (Pathak et al. 2020) with the same backbone, in one run.

Two parts (``--part``):

``throughput``
    Synthetic random clips straight into both models (no data loading): training clips/s
    (forward + backward + Adam step, P x K batches) and evaluation tracklets/s (forward only,
    dense clips: ``--clips-per-tracklet`` clips of T frames per tracklet). Both models get the
    same backbone depth, input size, T and batch size. Paper Table 9 reports FGReID train/eval
    *times* on MARS on a GPU (130.82 s / 458.28 s vs 71.03 s / 264.95 s for Pathak et al.);
    the ratio is what is comparable here.
``train``
    The synthetic fine-grained set (identities sharing uniforms, SyntheticMARS): train the
    video baseline (``projects/FGReID/configs/Synthetic/stage1_video_baseline.yml`` =
    ``configs/Video-Baseline/synthetic_cpu.yml``) and FGReID
    (``projects/FGReID/configs/Synthetic/fgreid.yml``) with the same data, input size, T,
    P x K, epochs and optimiser, then evaluate both. FGReID is trained twice: from scratch
    ("Baseline" of the paper: same budget as the video baseline) and from the video baseline's
    checkpoint (the paper's two-stage FGReID: stage 1 + stage 2 budget). All mAPs are printed,
    whichever wins.

    python benchmarks/bench_fgreid.py --part throughput
    FASTREID_DATASETS=/tmp/ds python benchmarks/bench_fgreid.py --part train --ids 40 --epochs 6 \
        INPUT.SIZE_TRAIN "[64, 32]" INPUT.SIZE_TEST "[64, 32]"
"""
from __future__ import annotations

import argparse
import os
import time
from typing import Dict, List

import torch
from common import ensure_synthetic, train_and_test

import fastreid_ext  # noqa: F401  (compat shims first)
import fgreid  # noqa: F401
from fastreid.modeling import build_model
from fastreid.utils.events import EventStorage
from fastreid_ext.config import build_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BASELINE_CFG = os.path.join(ROOT, "projects", "FGReID", "configs", "Synthetic", "stage1_video_baseline.yml")
FGREID_CFG = os.path.join(ROOT, "projects", "FGReID", "configs", "Synthetic", "fgreid.yml")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _model_opts(args) -> List[str]:
    device = "cuda" if torch.cuda.is_available() else "cpu"
    return ["MODEL.DEVICE", device, "MODEL.BACKBONE.DEPTH", args.depth,
            "MODEL.BACKBONE.FEAT_DIM", str(2048 if args.depth == "50x" else 512),
            "MODEL.BACKBONE.PRETRAIN", "False", "MODEL.HEADS.NUM_CLASSES", str(args.num_classes),
            "INPUT.SIZE_TRAIN", str(list(args.size)), "INPUT.SIZE_TEST", str(list(args.size))]


def measure_throughput(model, args) -> Dict[str, float]:
    device = next(model.parameters()).device
    p, k = args.pk
    b = p * k
    g = torch.Generator().manual_seed(0)
    h, w = args.size
    clips = (torch.rand(b, args.t, 3, h, w, generator=g) * 255).to(device)
    batch = {"images": clips, "targets": torch.arange(p).repeat_interleave(k).to(device),
             "camids": torch.zeros(b, dtype=torch.long, device=device),
             "erased": torch.zeros(b, args.t, dtype=torch.bool, device=device)}
    opt = torch.optim.Adam([q for q in model.parameters() if q.requires_grad], lr=1e-5)
    model.train()
    with EventStorage(0):
        for i in range(args.warmup + args.iters):
            if i == args.warmup:
                _sync(device)
                t0 = time.perf_counter()
            losses = model(batch)
            opt.zero_grad(set_to_none=True)
            sum(losses.values()).backward()
            opt.step()
        _sync(device)
    train_clips_s = b * args.iters / (time.perf_counter() - t0)

    model.eval()
    test = (torch.rand(args.test_batch, args.t, 3, h, w, generator=g) * 255).to(device)
    with torch.no_grad():
        for i in range(args.warmup + args.iters):
            if i == args.warmup:
                _sync(device)
                t0 = time.perf_counter()
            model(test)
        _sync(device)
    eval_clips_s = args.test_batch * args.iters / (time.perf_counter() - t0)
    return {"train_clips_s": train_clips_s, "eval_clips_s": eval_clips_s,
            "eval_tracklets_s": eval_clips_s / args.clips_per_tracklet}


def run_throughput(args) -> None:
    rows = []
    for name, cfg_file in (("video baseline", BASELINE_CFG), ("FGReID", FGREID_CFG)):
        cfg = build_config(cfg_file, _model_opts(args) + ["MODEL.FGREID.MARS_WEIGHTS", ""])
        torch.manual_seed(0)
        model = build_model(cfg)
        n = sum(q.numel() for m, q in model.named_parameters() if not m.startswith("losses."))
        r = measure_throughput(model, args)
        rows.append((name, n, r))
        del model
    base = rows[0][2]
    dev = "cuda:" + torch.cuda.get_device_name() if torch.cuda.is_available() else \
        f"cpu ({torch.get_num_threads()} threads)"
    print(f"\nThroughput on {dev}: ResNet-{args.depth[:-1]}, {args.size[0]}x{args.size[1]}, T={args.t}, "
          f"train P x K = {args.pk[0]} x {args.pk[1]}, eval batch {args.test_batch} clips, "
          f"{args.clips_per_tracklet} clips/tracklet, {args.iters} timed iterations")
    print("| model | params (M) | train clips/s | eval tracklets/s | train rel. | eval rel. |")
    print("|---|---|---|---|---|---|")
    for name, n, r in rows:
        print(f"| {name} | {n / 1e6:.2f} | {r['train_clips_s']:.2f} | {r['eval_tracklets_s']:.2f} | "
              f"{r['train_clips_s'] / base['train_clips_s']:.2f}x | "
              f"{r['eval_tracklets_s'] / base['eval_tracklets_s']:.2f}x |")


def _train_and_test(cfg_file: str, opts: List[str]) -> Dict[str, float]:
    results, seconds, _ = train_and_test(build_config(cfg_file, opts))
    results["train_s"] = seconds
    return results


def run_train(args) -> None:
    ensure_synthetic("mars", args.ids)
    out = args.output
    common = ["SOLVER.MAX_EPOCH", str(args.epochs), "SEED", str(args.seed)] + list(args.opts)
    runs = []
    stage1_dir = os.path.join(out, "stage1_video_baseline")
    runs.append(("video baseline (Pathak et al. 2020)",
                 _train_and_test(BASELINE_CFG, common + ["OUTPUT_DIR", stage1_dir])))
    runs.append(("FGReID from scratch (same budget)",
                 _train_and_test(FGREID_CFG, common + ["OUTPUT_DIR", os.path.join(out, "fgreid_scratch"),
                                                       "MODEL.FGREID.MARS_WEIGHTS", ""])))
    ckpt = os.path.join(stage1_dir, "model_final.pth")
    runs.append(("FGReID two-stage (CNN_MARS from the baseline)",
                 _train_and_test(FGREID_CFG, common + ["OUTPUT_DIR", os.path.join(out, "fgreid_two_stage"),
                                                       "MODEL.FGREID.MARS_WEIGHTS", ckpt])))
    print(f"\nSyntheticMARS ({args.ids} ids), {args.epochs} epochs each, seed {args.seed}, "
          f"overrides {' '.join(args.opts) or '-'}")
    print("| model | mAP | Rank-1 | Rank-5 | train time (s) |")
    print("|---|---|---|---|---|")
    for name, r in runs:
        print(f"| {name} | {r['mAP']:.2f} | {r['Rank-1']:.2f} | {r.get('Rank-5', float('nan')):.2f} | "
              f"{r['train_s']:.0f} |")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--part", choices=("throughput", "train", "all"), default="throughput")
    p.add_argument("--depth", default="18x", choices=("18x", "34x", "50x"))
    p.add_argument("--size", type=int, nargs=2, default=(128, 64), metavar=("H", "W"))
    p.add_argument("--t", type=int, default=4)
    p.add_argument("--pk", type=int, nargs=2, default=(4, 4), metavar=("P", "K"))
    p.add_argument("--num-classes", type=int, default=625)
    p.add_argument("--test-batch", type=int, default=16)
    p.add_argument("--clips-per-tracklet", type=int, default=8)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--iters", type=int, default=5)
    p.add_argument("--ids", type=int, default=40, help="train: SyntheticMARS identities if generated")
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--output", default="logs/bench_fgreid")
    p.add_argument("opts", nargs=argparse.REMAINDER,
                   help="train: config overrides KEY VALUE applied to all three runs")
    args = p.parse_args(argv)
    if args.part in ("throughput", "all"):
        run_throughput(args)
    if args.part in ("train", "all"):
        run_train(args)


if __name__ == "__main__":
    main()
