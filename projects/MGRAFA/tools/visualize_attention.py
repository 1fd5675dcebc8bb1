#!/usr/bin/env python
"""Figure 3 of the MG-RAFA paper: attention per granularity over the T frames of a clip, as PNG.

    python projects/MGRAFA/tools/visualize_attention.py --config-file projects/MGRAFA/configs/synthetic_cpu.yml \
        --tracklets 0 1 2 --out vis/ [MODEL.WEIGHTS logs/mgrafa/synthetic_mgrafa_n4/model_final.pth]
    python projects/MGRAFA/tools/visualize_attention.py --config-file X.yml --images f1.jpg f2.jpg ... --out vis/

Frames are picked evenly (INPUT.VIDEO.SEQ_LEN of them) from query tracklets of the first test
dataset (``--tracklets``: query indices) or taken from ``--images``; each clip gives
``<out>/attention_<name>.png``: the frames, then one row per granularity (G-1st, ...).
"""
from __future__ import annotations

import argparse
import os

import cv2
import numpy as np
import torch

import fastreid_ext  # noqa: F401  (compat shims, registrations)
import mgrafa  # noqa: F401
from fastreid_ext.config import build_config
from fastreid_ext.data.clip_sampler import evenly
from fastreid_ext.data.frame_io import load_clip, read_frame
from fastreid_ext.engine import build_inference_model
from mgrafa.visualize import save_attention_grid


def clip_tensor(frames, size) -> torch.Tensor:
    """RGB uint8 frames -> ``(T, 3, H, W)`` float 0..255 resized to ``size`` = (H, W)."""
    resized = [cv2.resize(np.asarray(f), (int(size[1]), int(size[0])), interpolation=cv2.INTER_LINEAR)
               for f in frames]
    return torch.from_numpy(np.stack(resized)).permute(0, 3, 1, 2).float()


def clips_from_args(args, cfg):
    t = cfg.INPUT.VIDEO.SEQ_LEN
    if args.images:
        frames = [read_frame(p) for p in args.images]
        yield "images", clip_tensor(frames, cfg.INPUT.SIZE_TEST)
        return
    from fastreid_ext.data.build import get_dataset
    data = get_dataset(cfg, cfg.DATASETS.TESTS[0])
    for q in args.tracklets:
        item = data.query[q]
        paths = item[0]
        frames, _, _ = load_clip(paths, evenly(len(paths), t), name=str(q))
        yield f"{cfg.DATASETS.TESTS[0]}_q{q}_pid{item[1]}", clip_tensor(frames, cfg.INPUT.SIZE_TEST)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config-file", required=True)
    parser.add_argument("--out", default="vis/mgrafa")
    parser.add_argument("--tracklets", type=int, nargs="+", default=[0])
    parser.add_argument("--images", nargs="+", default=None, help="frame files of one clip")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE config overrides")
    args = parser.parse_args(argv)
    cfg = build_config(args.config_file, args.opts)
    if cfg.MODEL.MGRAFA.ATTENTION == "avg":
        raise ValueError("MODEL.MGRAFA.ATTENTION avg has no attention to draw")
    if not cfg.MODEL.WEIGHTS:
        print("no MODEL.WEIGHTS given: drawing the attention of an untrained model")
    model, cfg = build_inference_model(cfg, allow_untrained=True)
    os.makedirs(args.out, exist_ok=True)
    for name, frames in clips_from_args(args, cfg):
        with torch.no_grad():
            maps = model.frame_maps({"images": frames[None]})
            weights = model.heads.attention_maps(maps)
        path = os.path.join(args.out, f"attention_{name}.png")
        image = save_attention_grid(path, frames, [w[0] for w in weights])
        print(f"wrote {path} ({image.shape[1]}x{image.shape[0]})")


if __name__ == "__main__":
    main()
