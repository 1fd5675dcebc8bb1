#!/usr/bin/env python
"""MGRe vs the baseline with the same backbone on SyntheticMarket1501, same budget.

Every variant is trained from scratch with ``projects/MGRe/configs/synthetic_cpu.yml``
(ResNet-18, P x K = 8 x 4, same epochs / LR / seed / data order) and evaluated on the synthetic
Market test split (cross-camera protocol); prints one Markdown row per variant.

    python benchmarks/bench_mgre.py [--ids 40] [--epochs 8] [--size 64 32] [--seeds 0] \
        [--variants baseline mgre mgre_no_kp] [KEY VALUE ...]

Variants: ``baseline`` = ``synthetic_cpu_baseline.yml`` (the plugin's VideoBaseline with
average pooling, i.e. ResNet-18 + GAP + BNNeck + CE + triplet, the host ``Baseline``'s network on
one-image items, on the plugin's heads and losses like every other row); ``mgre`` (location loss from
the generator's keypoints); ``mgre_no_kp`` (``MODEL.MGRE.USE_KEYPOINTS False``); and the
ablations ``stages23``, ``sg_features``, ``sg_regions``, ``no_jo``.

The data set is generated under ``$FASTREID_DATASETS`` (default ``datasets``) when missing:
``python -m fastreid_ext.data.synthetic --layout market1501 --out
<root>/synthetic/market1501/Market-1501-v15.09.15 --ids N --seed 0``.
"""
from __future__ import annotations

import os

import torch
from common import prepare_variants, train_and_test, variants_parser

import fastreid_ext  # noqa: F401  (compat shims, registrations)
import mgre  # noqa: F401
from fastreid_ext.config import build_config

CONFIGS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "projects", "MGRe", "configs")

VARIANTS = {
    "baseline": ("synthetic_cpu_baseline.yml", []),
    "mgre": ("synthetic_cpu.yml", []),
    "mgre_loc10": ("synthetic_cpu.yml", ["MODEL.MGRE.LOC_WEIGHT", "10.0"]),
    "mgre_no_kp": ("synthetic_cpu.yml", ["MODEL.MGRE.USE_KEYPOINTS", "False"]),
    "stages23": ("synthetic_cpu.yml", ["MODEL.MGRE.STAGES", "[2, 3]"]),
    "sg_features": ("synthetic_cpu.yml", ["MODEL.MGRE.MODE", "single_grained_features"]),
    "sg_regions": ("synthetic_cpu.yml", ["MODEL.MGRE.MODE", "single_grained_regions"]),
    "no_jo": ("synthetic_cpu.yml", ["MODEL.MGRE.JOINT_OPTIMIZATION", "False"]),
}


def run(variant: str, seed: int, epochs: int, size, root: str, out_dir: str, extra):
    config, opts = VARIANTS[variant]
    h, w = size
    opts = list(opts) + [
        "INPUT.SIZE_TRAIN", f"[{h}, {w}]", "INPUT.SIZE_TEST", f"[{h}, {w}]", "INPUT.PADDING.SIZE", str(max(1, h // 32)),
        "SOLVER.MAX_EPOCH", str(epochs), "SOLVER.STEPS", f"[{max(1, (3 * epochs) // 4)}]", "SEED", str(seed),
        "DATASETS.ROOT", root, "OUTPUT_DIR", os.path.join(out_dir, f"{variant}_s{seed}"),
        "TEST.EVAL_PERIOD", str(epochs)] + list(extra)
    cfg = build_config(os.path.join(CONFIGS, config), opts)
    results, total, model = train_and_test(cfg, seed)
    params = sum(p.numel() for p in model.parameters())
    model.eval()
    with torch.no_grad():
        dim = model(torch.zeros(1, 3, h, w)).shape[1]
    return results, total, params, dim


def main(argv=None) -> None:
    parser = variants_parser(__doc__, 40, 8, VARIANTS, ["baseline", "mgre", "mgre_no_kp"])
    parser.add_argument("--size", type=int, nargs=2, default=[64, 32], metavar=("H", "W"))
    args = parser.parse_args(argv)
    root, out_dir = prepare_variants(args, "market1501", "bench_mgre_")
    rows = []
    for seed in args.seeds:
        for variant in args.variants:
            results, seconds, params, dim = run(variant, seed, args.epochs, args.size, root, out_dir, args.opts)
            rows.append((variant, seed, results["mAP"], results["Rank-1"], results["Rank-5"], seconds, params, dim))
            print(f"[bench_mgre] {variant} seed {seed}: mAP {results['mAP']:.1f} Rank-1 {results['Rank-1']:.1f} "
                  f"({seconds:.0f} s)", flush=True)
    print(f"\nSyntheticMarket1501 ({args.ids} ids), {args.epochs} epochs, input {args.size[0]}x{args.size[1]}, "
          f"ResNet-18 from scratch, torch threads {torch.get_num_threads()}")
    print("| variant | seed | mAP | Rank-1 | Rank-5 | train+test s | params | dim |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for v, s, mAP, r1, r5, sec, p, d in rows:
        print(f"| {v} | {s} | {mAP:.1f} | {r1:.1f} | {r5:.1f} | {sec:.0f} | {p / 1e6:.2f} M | {d} |")


if __name__ == "__main__":
    main()
