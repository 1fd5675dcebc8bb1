#!/usr/bin/env python
"""Train + test once per dataset split and report the mean / std over splits.

    python tools/run_splits.py --config-file configs/X/ilidsvid.yml --splits 0-9 [--num-gpus N] [KEY VALUE ...]

Runs ``tools/train_net.py --config-file X [--num-gpus N] KEY VALUE ... DATASETS.SPLIT i
OUTPUT_DIR <base>/split_i`` as a subprocess per split (``<base>`` = the run's ``OUTPUT_DIR``),
reads each ``<base>/split_i/results.json``, prints a table (one row per split, then mean and
std) and writes ``<base>/splits_summary.json`` ({"splits", "results", "summary"}).
"""
from __future__ import annotations

import argparse
import json
import os
import os.path as osp
import subprocess
import sys
from typing import List, Sequence

from fastreid_ext.data.datasets.splits import parse_splits, summarize_splits, summary_table

TRAIN_NET = osp.join(osp.dirname(osp.abspath(__file__)), "train_net.py")
_OWNED_KEYS = ("DATASETS.SPLIT",)


def argument_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config-file", required=True, metavar="FILE")
    p.add_argument("--splits", default="0-9", help="e.g. '0-9' (default) or '0,2,5-7'")
    p.add_argument("--num-gpus", type=int, default=1, help="passed to train_net.py")
    p.add_argument("--skip-done", action="store_true", help="reuse splits whose results.json exists")
    p.add_argument("--train-script", default=TRAIN_NET, help=argparse.SUPPRESS)
    p.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE config overrides")
    return p


def base_output_dir(config_file: str, opts: Sequence[str]) -> str:
    """``OUTPUT_DIR`` of the overrides when given, else of the config (file + overrides)."""
    if len(opts) % 2:
        raise ValueError(f"overrides must be KEY VALUE pairs, got {list(opts)}")
    pairs = dict(zip(opts[::2], opts[1::2]))
    if "OUTPUT_DIR" in pairs:
        return pairs["OUTPUT_DIR"]
    from fastreid_ext.config import build_config  # heavy import, only when needed

    return build_config(config_file, list(opts)).OUTPUT_DIR


def split_command(args, split: int, out_dir: str, opts: Sequence[str]) -> List[str]:
    opts = list(opts)
    kept = []
    for key, value in zip(opts[::2], opts[1::2]):
        if key in _OWNED_KEYS:
            raise ValueError(f"{key} is set per split by run_splits.py; use --splits instead")
        if key != "OUTPUT_DIR":
            kept += [key, value]
    return [sys.executable, args.train_script, "--config-file", args.config_file, "--num-gpus",
            str(args.num_gpus), *kept, "DATASETS.SPLIT", str(split), "OUTPUT_DIR", out_dir]


def main(argv=None) -> dict:
    args = argument_parser().parse_args(argv)
    opts = [o for o in args.opts if o != "--"]
    splits = parse_splits(args.splits)
    base = base_output_dir(args.config_file, opts)
    results = []
    for split in splits:
        out_dir = osp.join(base, f"split_{split}")
        result_path = osp.join(out_dir, "results.json")
        if not (args.skip_done and osp.isfile(result_path)):
            cmd = split_command(args, split, out_dir, opts)
            print(f"[run_splits] split {split}: {' '.join(cmd)}", flush=True)
            done = subprocess.run(cmd)
            if done.returncode != 0:
                raise SystemExit(f"[run_splits] split {split} failed with exit status {done.returncode} "
                                 f"(command: {' '.join(cmd)})")
        if not osp.isfile(result_path):
            raise SystemExit(f"[run_splits] split {split} wrote no {result_path}")
        with open(result_path) as f:
            results.append(json.load(f))
    summary = summarize_splits(results)
    print(summary_table(splits, results, summary))
    os.makedirs(base, exist_ok=True)
    out = {"splits": splits, "results": results, "summary": summary}
    with open(osp.join(base, "splits_summary.json"), "w") as f:
        json.dump(out, f, indent=2)
    print(f"[run_splits] wrote {osp.join(base, 'splits_summary.json')}")
    return out


if __name__ == "__main__":
    main()
