#!/usr/bin/env python
"""MG-RAFA vs the average-pooling Baseline (the MG-RAFA paper, Table 2) on SyntheticMARS, same budget.

Every variant is trained from scratch with ``projects/MGRAFA/configs/synthetic_cpu.yml`` (ResNet-18,
128x64, T = 4, P x K = 8 x 4, same epochs / LR / seed / data order) and evaluated with the MARS
protocol on the synthetic test split; prints one Markdown row per variant.

    python benchmarks/bench_mgrafa.py [--ids 60] [--epochs 6] [--seeds 0] \
        [--variants baseline mg_rafa_n4 sg_rafa_s1 mg_afa_n4] [KEY VALUE ...]

The data set is generated under ``$FASTREID_DATASETS`` (default ``datasets``) when missing:
``python -m fastreid_ext.data.synthetic --layout mars --out <root>/synthetic/mars --ids N --seed 0``.
"""
from __future__ import annotations

import os

import torch
from common import prepare_variants, train_and_test, variants_parser

import fastreid_ext  # noqa: F401  (compat shims, registrations)
import mgrafa  # noqa: F401
from fastreid_ext.config import build_config

CONFIG = os.path.join(os.path.dirname(__file__), "..", "projects", "MGRAFA", "configs", "synthetic_cpu.yml")

VARIANTS = {
    "baseline": ["MODEL.MGRAFA.ATTENTION", "avg", "MODEL.MGRAFA.NUM_GROUPS", "1",
                 "MODEL.MGRAFA.GRANULARITY", "single"],
    "mg_afa_n4": ["MODEL.MGRAFA.ATTENTION", "afa", "MODEL.MGRAFA.NUM_GROUPS", "4",
                  "MODEL.MGRAFA.GRANULARITY", "multi"],
    "sg_rafa_s1": ["MODEL.MGRAFA.ATTENTION", "rafa", "MODEL.MGRAFA.NUM_GROUPS", "1",
                   "MODEL.MGRAFA.GRANULARITY", "single"],
    "sg_rafa_s4": ["MODEL.MGRAFA.ATTENTION", "rafa", "MODEL.MGRAFA.NUM_GROUPS", "4",
                   "MODEL.MGRAFA.GRANULARITY", "single"],
    "mg_rafa_n2": ["MODEL.MGRAFA.ATTENTION", "rafa", "MODEL.MGRAFA.NUM_GROUPS", "2",
                   "MODEL.MGRAFA.GRANULARITY", "multi"],
    "mg_rafa_n4": ["MODEL.MGRAFA.ATTENTION", "rafa", "MODEL.MGRAFA.NUM_GROUPS", "4",
                   "MODEL.MGRAFA.GRANULARITY", "multi"],
}


def run(variant: str, seed: int, epochs: int, root: str, out_dir: str, extra):
    opts = VARIANTS[variant] + ["SOLVER.MAX_EPOCH", str(epochs), "SEED", str(seed),
                                "DATASETS.ROOT", root, "OUTPUT_DIR", os.path.join(out_dir, f"{variant}_s{seed}"),
                                "TEST.EVAL_PERIOD", str(epochs)] + list(extra)
    cfg = build_config(CONFIG, opts)
    results, total, model = train_and_test(cfg, seed)
    head_params = sum(p.numel() for p in model.heads.aggregation.parameters())
    return results, total, head_params


def main(argv=None) -> None:
    args = variants_parser(__doc__, 60, 3, VARIANTS, ["baseline", "mg_rafa_n4"]).parse_args(argv)
    root, out_dir = prepare_variants(args, "mars", "bench_mgrafa_")
    rows = []
    for seed in args.seeds:
        for variant in args.variants:
            results, seconds, params = run(variant, seed, args.epochs, root, out_dir, args.opts)
            rows.append((variant, seed, results["mAP"], results["Rank-1"], results["Rank-5"], seconds, params))
    print(f"\nSyntheticMARS ({args.ids} ids), {args.epochs} epochs, config synthetic_cpu.yml, "
          f"torch threads {torch.get_num_threads()}")
    print("| variant | seed | mAP | Rank-1 | Rank-5 | train+test s | head params |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for v, s, mAP, r1, r5, sec, p in rows:
        print(f"| {v} | {s} | {mAP:.1f} | {r1:.1f} | {r5:.1f} | {sec:.0f} | {p} |")


if __name__ == "__main__":
    main()
