#!/usr/bin/env python
"""Score one trained video model under both MARS AP definitions (docs/scoring.md).

Extracts the tracklet features of the MARS ``official`` test set once (gallery = every test
tracklet) and ranks them with ``mars_official`` (the MATLAB script's trapezoidal AP, ties in
gallery order) and ``mars_official_noninterp`` (the Python evaluators' AP), and prints both
with their difference, over all queries and per query.

    python benchmarks/ap_definitions.py --config-file CFG --weights RUN/model_final.pth [KEY VALUE ...]
"""
from __future__ import annotations

import argparse

import numpy as np
from tabulate import tabulate

import fastreid_ext  # noqa: F401  (compat shims, registrations)
from fastreid_ext.config import build_config
from fastreid_ext.engine import Trainer
from fastreid_ext.engine.inference_model import build_inference_model
from fastreid_ext.evaluation.inference import inference_on_dataset
from fastreid_ext.evaluation.metrics_from_features import evaluate_features

PROTOCOLS = ("mars_official", "mars_official_noninterp")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config-file", required=True)
    p.add_argument("--weights", required=True)
    p.add_argument("opts", nargs=argparse.REMAINDER)
    a = p.parse_args(argv)
    cfg = build_config(a.config_file, ["MODEL.WEIGHTS", a.weights, "DATASETS.PROTOCOL", "official",
                                       "TEST.PROTOCOL", "mars_official", *a.opts])
    model, cfg = build_inference_model(cfg)
    name = cfg.DATASETS.TESTS[0]
    loader, ev = Trainer.build_evaluator(cfg, name)
    inference_on_dataset(model, loader, ev, flip_test=cfg.TEST.FLIP.ENABLED)  # also scores mars_official
    feats = ev.tracklet_features()
    q = ev._num_query
    pids, cams = ev._pids, ev._camids
    res = {proto: evaluate_features(feats[:q], feats[q:], pids[:q], pids[q:], cams[:q], cams[q:],
                                    metric=cfg.TEST.METRIC, max_rank=20, protocol=proto) for proto in PROTOCOLS}
    rows = [[proto, f"{100 * r.mAP:.2f}", f"{100 * r.cmc[0]:.2f}", r.num_valid] for proto, r in res.items()]
    diff = 100 * (res[PROTOCOLS[1]].all_AP - res[PROTOCOLS[0]].all_AP)
    print(tabulate(rows, headers=["protocol", "mAP", "Rank-1", "queries"], tablefmt="github"))
    print(f"non-interpolated - trapezoidal mAP: {diff.mean():.2f} points (per query: min {diff.min():.2f}, "
          f"median {np.median(diff):.2f}, max {diff.max():.2f}); scoring: {ev.scoring['sampling']}, "
          f"T={ev.scoring['clip_len']}, {len(feats)} tracklets")


if __name__ == "__main__":
    main()
