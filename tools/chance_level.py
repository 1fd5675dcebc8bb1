#!/usr/bin/env python
"""The metrics a random ranking gets on a test set (what "above chance" is measured against).

    python tools/chance_level.py --config-file configs/Video-Baseline/synthetic_cpu.yml [--seeds 20]

Uses the config's first test dataset, its evaluation protocol, and uniformly random distances.
"""
from __future__ import annotations

import argparse

import numpy as np

import fastreid_ext  # noqa: F401
from fastreid_ext.config import build_config
from fastreid_ext.data.build import get_dataset
from fastreid_ext.evaluation import evaluate_rank


def chance_metrics(q_pids, g_pids, q_camids, g_camids, protocol: str = "cross_camera",
                   seeds: int = 20) -> dict:
    """Mean Rank-1 / mAP / mINP (percent) of ``seeds`` uniformly random rankings."""
    rows = []
    for seed in range(seeds):
        dist = np.random.default_rng(seed).random((len(q_pids), len(g_pids))).astype(np.float32)
        r = evaluate_rank(dist, np.asarray(q_pids), np.asarray(g_pids), np.asarray(q_camids),
                          np.asarray(g_camids), protocol=protocol)
        rows.append((r.cmc[0], r.mAP, r.mINP))
    r1, mAP, mINP = (100 * float(np.mean(c)) for c in zip(*rows))
    return {"Rank-1": r1, "mAP": mAP, "mINP": mINP}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config-file", required=True)
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("opts", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    cfg = build_config(args.config_file, args.opts)
    name = cfg.DATASETS.TESTS[0]
    ds = get_dataset(cfg, name)
    protocol = cfg.TEST.PROTOCOL if cfg.TEST.PROTOCOL != "auto" else getattr(ds, "eval_protocol", "cross_camera")
    q, g = ds.query, ds.gallery
    res = chance_metrics([i[1] for i in q], [i[1] for i in g], [i[2] for i in q], [i[2] for i in g],
                         protocol, args.seeds)
    print(f"{name} ({protocol}, {len(q)} queries x {len(g)} gallery), random ranking over "
          f"{args.seeds} seeds: " + ", ".join(f"{k} {v:.2f}" for k, v in res.items()))


if __name__ == "__main__":
    main()
