#!/usr/bin/env python
"""How much gait signal a dataset's keypoints carry: a hand-made 6-number gait descriptor per
sequence from ``keypoints.json`` (no learning), matched with FGPR's protocol.

Descriptor (:func:`gait_descriptor`, distances divided by the median nose-to-ankles height):
standard deviation of the ankle-ankle, wrist-wrist and knee-knee distances over the frames, the
dominant frequency of the ankle-ankle distance (cycles per frame, 128-point FFT), and the
maxima of the ankle-ankle and wrist-wrist distances. Each number is standardised over the
test sequences; the distance is Euclidean.

    python projects/FGPose/tools/keypoint_gait_oracle.py --config-file projects/FGPose/configs/synthetic_cpu.yml \\
        DATASETS.ROOT datasets
"""
from __future__ import annotations

import argparse
import json
import os
import os.path as osp

import numpy as np
import torch

import fgpose  # noqa: F401
from fastreid.data.datasets import DATASET_REGISTRY
from fastreid_ext.config import build_config
from fastreid_ext.data.datasets import datasets_root
from fastreid_ext.data.items import extras_of
from fastreid_ext.evaluation.two_direction import evaluate_tracklets

__all__ = ["gait_descriptor", "main"]


def dominant_frequency(x: np.ndarray, n_fft: int = 128) -> float:
    """Frequency (cycles per frame) of the largest non-zero FFT bin of ``x`` (mean removed)."""
    spec = np.abs(np.fft.rfft(np.asarray(x, np.float64) - np.mean(x), n=n_fft))
    return float(np.argmax(spec[1:]) + 1) / n_fft


def gait_descriptor(kp: np.ndarray) -> np.ndarray:
    """``(T, 17, 3)`` COCO keypoints (pixels) -> the 6 numbers of the module docstring."""
    xy = np.asarray(kp, np.float64)[..., :2]
    height = float(np.median(xy[:, 15:17, 1].mean(1) - xy[:, 0, 1])) + 1e-6
    ank = np.linalg.norm(xy[:, 15] - xy[:, 16], axis=1) / height
    wri = np.linalg.norm(xy[:, 9] - xy[:, 10], axis=1) / height
    kne = np.linalg.norm(xy[:, 13] - xy[:, 14], axis=1) / height
    return np.array([ank.std(), wri.std(), kne.std(), dominant_frequency(ank), ank.max(), wri.max()])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config-file", required=True)
    p.add_argument("opts", nargs=argparse.REMAINDER)
    args = p.parse_args(argv)
    cfg = build_config(args.config_file, args.opts)
    name = cfg.DATASETS.TESTS[0]
    data = DATASET_REGISTRY.get(name)(root=datasets_root(cfg), split=cfg.DATASETS.SPLIT)
    items = list(data.query) + list(data.gallery)
    path = extras_of(items[0]).get("keypoints")
    if not path:
        raise FileNotFoundError(f"{name} has no keypoints.json")
    table = json.load(open(path))
    base = osp.dirname(osp.abspath(path))
    feats = []
    for paths, *_ in items:
        kp = [table.get(osp.relpath(osp.abspath(f), base).replace(os.sep, "/")) for f in paths]
        kp = np.array([k for k in kp if k is not None], np.float64)
        if kp.size == 0:
            raise ValueError(f"no keypoints for {paths[0]}")
        feats.append(gait_descriptor(kp))
    f = np.stack(feats)
    f = (f - f.mean(0)) / (f.std(0) + 1e-9)
    groups = [it[3].get("group") for it in items] if data.eval_protocol in ("fgpr", "groupwise") else None
    res = evaluate_tracklets(torch.from_numpy(f), len(data.query), [it[1] for it in items],
                             [it[2] for it in items], groups, data.eval_protocol, "euclidean")
    print(json.dumps({k: round(v, 2) for k, v in res.items()}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
