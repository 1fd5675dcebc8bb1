"""Evaluate a FGReID image model with spatial-temporal statistics (the "+ ST" rows of the
FGReID paper's Tables 5 and 7; st-ReID, Wang et al. 2019), on Market1501 or VeRi names.

    python projects/FGReID/tools/eval_st.py --config-file projects/FGReID/configs/Market1501/fgreid_st.yml \
        --weights logs/fgreid/market1501_fgreid/model_final.pth

Needs ``FGREID.ST.ENABLED True`` (the ``*_st.yml`` configs). Prints the plain metrics of the
embeddings (cosine) and the metrics of the joint similarity (``fgreid.st_reid``), with the ST
histograms fitted on the training images of ``DATASETS.NAMES``.
"""
from __future__ import annotations

import argparse
import json
from typing import Dict

import numpy as np
import torch

import fastreid_ext  # noqa: F401  (compat shims, registrations)
from fastreid_ext.config import build_config
from fastreid_ext.data.build import get_dataset
from fastreid_ext.engine import build_inference_model
from fastreid_ext.engine.trainer import Trainer
from fastreid_ext.evaluation.inference import inference_on_dataset
from fastreid_ext.evaluation.rank import evaluate_rank
from fgreid.st_reid import (
    joint_distance,
    market_sequence_offsets,
    parse_frame,
    smooth_distribution,
    st_distribution,
    st_probability,
)


def _metrics(distmat, q_pids, g_pids, q_cams, g_cams) -> Dict[str, float]:
    res = evaluate_rank(distmat.astype(np.float32), q_pids, g_pids, q_cams, g_cams, max_rank=50)
    cmc = np.asarray(res.cmc)
    out = {f"Rank-{r}": float(cmc[min(r, len(cmc)) - 1]) * 100 for r in (1, 5, 10)}
    out["mAP"] = res.mAP * 100
    return out


def evaluate_with_st(cfg, model) -> Dict[str, Dict[str, float]]:
    """``{"plain": metrics, "st": metrics}`` for ``cfg.DATASETS.TESTS[0]``."""
    st = cfg.FGREID.ST
    name = cfg.DATASETS.TESTS[0]
    loader, evaluator = Trainer.build_evaluator(cfg, name)
    inference_on_dataset(model, loader, evaluator, flip_test=cfg.TEST.FLIP.ENABLED)
    feats = torch.nn.functional.normalize(evaluator.tracklet_features().float(), dim=1).numpy()
    data = get_dataset(cfg, name)
    q, g = list(data.query), list(data.gallery)
    train = [it for n in cfg.DATASETS.NAMES for it in get_dataset(cfg, n).train]
    # Market1501: per-sequence frame offsets from every name (generate_seq_market.py:19-63)
    offsets = market_sequence_offsets(p for it in train + q + g for p in it[0]) if st.SEQ_OFFSETS else None
    tq = [parse_frame(it[0][0], offsets) for it in train]
    qcf = [parse_frame(it[0][0], offsets) for it in q]
    gcf = [parse_frame(it[0][0], offsets) for it in g]
    num_cams = max(c for c, _ in tq + qcf + gcf)
    dist = st_distribution([c for c, _ in tq], [it[1] for it in train], [f for _, f in tq], num_cams,
                           st.INTERVAL, st.MAX_HIST)
    dist = smooth_distribution(dist, st.SIGMA)
    qf, gf = feats[:len(q)], feats[len(q):]
    p_st = st_probability(dist, [c for c, _ in qcf], [f for _, f in qcf], [c for c, _ in gcf],
                          [f for _, f in gcf], st.INTERVAL)
    sim = qf @ gf.T
    args = (np.array([it[1] for it in q]), np.array([it[1] for it in g]),
            np.array([it[2] for it in q]), np.array([it[2] for it in g]))
    return {"plain": _metrics(1.0 - sim, *args),
            "st": _metrics(joint_distance(sim, p_st, st.ALPHA, st.LAMBDA), *args)}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config-file", required=True)
    parser.add_argument("--weights", default="")
    parser.add_argument("opts", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    cfg = build_config(args.config_file, list(args.opts))
    if not cfg.FGREID.ST.ENABLED:
        raise SystemExit("FGREID.ST.ENABLED is False: use a *_st.yml config or add FGREID.ST.ENABLED True")
    model, cfg = build_inference_model(cfg, args.weights or None)
    results = evaluate_with_st(cfg, model)
    print(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
