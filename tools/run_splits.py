#!/usr/bin/env python
"""Train + test once per dataset split and report the mean / std over splits.

    python tools/run_splits.py --config-file configs/X/ilidsvid.yml --splits 0-9 [--num-gpus N] [KEY VALUE ...]

Runs ``tools/train_net.py --config-file X [--num-gpus N] KEY VALUE ... DATASETS.SPLIT i
OUTPUT_DIR <base>/split_i`` as a subprocess per split (``<base>`` = the run's ``OUTPUT_DIR``),
reads each ``<base>/split_i/results.json``, prints a table (one row per split, then mean and
std) and writes ``<base>/splits_summary.json`` ({"splits", "results", "summary"}, atomically).

``--skip-done`` reuses a split only when its ``results.json`` says ``"complete": true`` (written
by the trainer once the run has finished) *and* the split's ``config.yaml`` equals the config
this command resolves for it (config file + overrides + ``DATASETS.SPLIT`` + ``OUTPUT_DIR``);
a finished split trained with other settings (or without a ``config.yaml``) is an error listing
the differences, or with ``--overwrite`` is trained again (the old run moved aside by
``train_net.py --overwrite``). A split killed mid-run (intermediate results,
``"complete": false``) is run again with ``--resume`` so it continues from its last checkpoint
(``train_net.py`` checks that the settings can be honoured).
"""
from __future__ import annotations

import argparse
import json
import os
import os.path as osp
import subprocess
import sys
from typing import List, Sequence

from fastreid_ext.data.datasets.splits import parse_splits
from fastreid_ext.evaluation.split_stats import summarize_split_metrics, summary_table
from fastreid_ext.utils.safe_io import atomic_write_json

TRAIN_NET = osp.join(osp.dirname(osp.abspath(__file__)), "train_net.py")
_OWNED_KEYS = ("DATASETS.SPLIT",)


def argument_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config-file", required=True, metavar="FILE")
    p.add_argument("--splits", default="0-9", help="e.g. '0-9' (default) or '0,2,5-7'")
    p.add_argument("--num-gpus", type=int, default=1, help="passed to train_net.py")
    p.add_argument("--skip-done", action="store_true",
                   help="reuse splits whose results.json marks a finished run; resume unfinished ones")
    p.add_argument("--overwrite", action="store_true",
                   help="train splits whose folder holds another run again (passed to train_net.py, "
                        "which moves the old run aside)")
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


def finished_results(path: str):
    """The results of ``path`` when it records a finished run (``"complete": true``), else
    ``None`` (missing, unreadable, or intermediate results of a run that did not finish)."""
    try:
        with open(path) as f:
            res = json.load(f)
    except (OSError, ValueError):
        return None
    return res if isinstance(res, dict) and res.get("complete") is True else None


def _split_opts(opts: Sequence[str]) -> List[str]:
    opts = list(opts)
    kept = []
    for key, value in zip(opts[::2], opts[1::2]):
        if key in _OWNED_KEYS:
            raise ValueError(f"{key} is set per split by run_splits.py; use --splits instead")
        if key != "OUTPUT_DIR":
            kept += [key, value]
    return kept


def config_differences(config_file: str, opts: Sequence[str], split: int, out_dir: str) -> List[str]:
    """``"KEY: <split's value> -> <requested value>"`` for every setting in which the split's
    ``config.yaml`` differs from the config this command resolves for it; ``["no config.yaml"]``
    when the split has none (its settings cannot be known)."""
    from fastreid_ext.config import build_config
    from fastreid_ext.engine.run_folder import compare_configs, read_run_config

    saved = read_run_config(out_dir)
    if saved is None:
        return [f"no {osp.join(out_dir, 'config.yaml')}"]
    cfg = build_config(config_file, [*_split_opts(opts), "DATASETS.SPLIT", str(split), "OUTPUT_DIR", out_dir])
    refused, honoured = compare_configs(saved, cfg)
    return sorted(refused + honoured)


def split_command(args, split: int, out_dir: str, opts: Sequence[str], overwrite: bool = False) -> List[str]:
    kept = _split_opts(opts)
    resume = ["--resume"] if args.skip_done and osp.isfile(osp.join(out_dir, "last_checkpoint")) else []
    if overwrite:
        resume = ["--overwrite"]
    return [sys.executable, args.train_script, "--config-file", args.config_file, *resume, "--num-gpus",
            str(args.num_gpus), *kept, "DATASETS.SPLIT", str(split), "OUTPUT_DIR", out_dir]


def main(argv=None) -> dict:
    args = argument_parser().parse_args(argv)
    opts = [o for o in args.opts if o != "--"]
    splits = parse_splits(args.splits)
    base = base_output_dir(args.config_file, opts)
    results, scorings = [], []
    for split in splits:
        out_dir = osp.join(base, f"split_{split}")
        result_path = osp.join(out_dir, "results.json")
        finished = args.skip_done and finished_results(result_path) is not None
        diffs = config_differences(args.config_file, opts, split, out_dir) if finished else []
        if finished and diffs and not args.overwrite:
            raise SystemExit(f"[run_splits] split {split}: the finished run in {out_dir} was not made with the "
                             f"requested settings ({'; '.join(diffs[:8])}{' ...' if len(diffs) > 8 else ''}); "
                             f"not reused. Use another OUTPUT_DIR, or --overwrite to train it again (the old "
                             f"run is moved aside)")
        if finished and not diffs:
            print(f"[run_splits] split {split}: finished run found in {out_dir}, same settings, reused", flush=True)
        else:
            if args.skip_done and osp.isfile(result_path) and not finished:
                print(f"[run_splits] split {split}: {result_path} is from an unfinished run; running it again",
                      flush=True)
            cmd = split_command(args, split, out_dir, opts,
                                overwrite=args.overwrite and (finished or not args.skip_done))
            print(f"[run_splits] split {split}: {' '.join(cmd)}", flush=True)
            done = subprocess.run(cmd)
            if done.returncode != 0:
                raise SystemExit(f"[run_splits] split {split} failed with exit status {done.returncode} "
                                 f"(command: {' '.join(cmd)})")
        if not osp.isfile(result_path):
            raise SystemExit(f"[run_splits] split {split} wrote no {result_path}")
        with open(result_path) as f:
            res = json.load(f)
        res.pop("complete", None)  # bookkeeping, not a metric
        scorings.append(res.pop("scoring", None))  # how the split was scored (frames differ per split)
        results.append(res)
    summary = summarize_split_metrics(results)
    print(summary_table(splits, results, summary))
    os.makedirs(base, exist_ok=True)
    out = {"splits": splits, "results": results, "summary": summary, "scoring": scorings}
    atomic_write_json(osp.join(base, "splits_summary.json"), out, indent=2)
    print(f"[run_splits] wrote {osp.join(base, 'splits_summary.json')}")
    return out


if __name__ == "__main__":
    from fastreid_ext.commands.errors import run_cli

    sys.exit(run_cli(main))
