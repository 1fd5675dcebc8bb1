#!/usr/bin/env python
"""Rank-list pictures of a trained model: one PNG row per query (the query's frame strip, then
its top-k gallery items with green / red borders for correct / wrong and the distance under
each), written to ``OUTPUT_DIR/rank_lists/`` (``OUTPUT_DIR/eval/rank_lists/`` when
``OUTPUT_DIR`` holds a training run, whose ``config.yaml`` and ``results.json`` stay as they are).

    python tools/visualize_ranks.py --config-file configs/Video-Baseline/synthetic_cpu.yml \\
        --num-queries 8 --topk 10 --weights logs/x/model_final.pth OUTPUT_DIR /tmp/vis

It evaluates the test sets of the config with ``TEST.VIS.ENABLED`` on (the same pictures the
evaluator draws during training when that key is set) and prints the metrics.
"""
from __future__ import annotations

import argparse
import logging
import os

import fastreid_ext  # noqa: F401  (compat shims + registrations first)
from fastreid.utils.logger import setup_logger
from fastreid_ext.commands.options import add_weights_option, opts_with_weights
from fastreid_ext.config import build_config
from fastreid_ext.engine import Trainer, build_inference_model
from fastreid_ext.engine.run_folder import eval_output_dir


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config-file", required=True, metavar="FILE")
    p.add_argument("--num-queries", type=int, default=None, help="queries drawn (TEST.VIS.NUM_QUERIES)")
    p.add_argument("--topk", type=int, default=None, help="gallery items per row (TEST.VIS.TOPK)")
    add_weights_option(p)
    p.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE config overrides")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    opts = opts_with_weights(args) + ["TEST.VIS.ENABLED", "True"]
    if args.num_queries is not None:
        opts += ["TEST.VIS.NUM_QUERIES", str(args.num_queries)]
    if args.topk is not None:
        opts += ["TEST.VIS.TOPK", str(args.topk)]
    cfg = build_config(args.config_file, opts)
    setup_logger(name="fastreid_ext")
    if not cfg.OUTPUT_DIR:
        raise ValueError("Set OUTPUT_DIR: the pictures go to OUTPUT_DIR/rank_lists/")
    out = eval_output_dir(cfg.OUTPUT_DIR)  # a run's folder: its config.yaml / results.json stay
    if out != cfg.OUTPUT_DIR:
        cfg.defrost()
        cfg.OUTPUT_DIR = out
        cfg.freeze()
    os.makedirs(cfg.OUTPUT_DIR, exist_ok=True)
    if not cfg.MODEL.WEIGHTS:
        logging.getLogger(__name__).warning("No --weights (MODEL.WEIGHTS): drawing the rank lists of an untrained model")
    model, cfg = build_inference_model(cfg, allow_untrained=True)
    results = Trainer.test(cfg, model)
    print(f"rank lists in {os.path.join(cfg.OUTPUT_DIR, 'rank_lists')}")
    return results


if __name__ == "__main__":
    main()
