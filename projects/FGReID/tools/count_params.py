"""Print FGReID's parameter count per module (paper Table 9: 52.64 M on MARS, C = 625).

    python projects/FGReID/tools/count_params.py --config-file projects/FGReID/configs/MARS/fgreid.yml

The losses' own parameters (center-loss centers) are listed apart: they are not part of the
deployed model. Builds on CPU with random weights (no checkpoint needed).
"""
from __future__ import annotations

import argparse
from collections import OrderedDict

import fastreid_ext  # noqa: F401  (compat shims, registrations)
from fastreid_ext.config import build_config
from fastreid_ext.engine import build_inference_model


def count_by_module(model) -> "OrderedDict[str, int]":
    counts: "OrderedDict[str, int]" = OrderedDict()
    for name, p in model.named_parameters():
        top = name.split(".")[0]
        if top == "non_local":
            top = ".".join(name.split(".")[:2])
        counts[top] = counts.get(top, 0) + p.numel()
    return counts


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config-file", required=True)
    parser.add_argument("opts", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    cfg = build_config(args.config_file, list(args.opts) + ["MODEL.FGREID.MARS_WEIGHTS", ""])
    model, _ = build_inference_model(cfg, weights="", allow_untrained=True, device="cpu")
    counts = count_by_module(model)
    total = sum(v for k, v in counts.items() if not k.startswith("losses"))
    print(f"{'module':<24}{'parameters':>14}")
    for k, v in counts.items():
        print(f"{k:<24}{v:>14,}")
    print(f"{'model (w/o losses)':<24}{total:>14,}  = {total / 1e6:.2f} M  (paper: 52.64 M)")
    return total


if __name__ == "__main__":
    main()
