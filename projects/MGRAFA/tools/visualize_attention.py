#!/usr/bin/env python
"""Figure 3 of the MG-RAFA paper: attention per granularity over the T frames of a clip, as PNG.

    python projects/MGRAFA/tools/visualize_attention.py --config-file projects/MGRAFA/configs/synthetic_cpu.yml \
        --tracklets 0 1 2 --out vis/ [--weights logs/mgrafa/synthetic_mgrafa_n4/model_final.pth]
    python projects/MGRAFA/tools/visualize_attention.py --config-file X.yml --images f1.jpg f2.jpg ... --out vis/

Frames are picked evenly (INPUT.VIDEO.SEQ_LEN of them) from query tracklets of the first test
dataset (``--tracklets``: query indices) or taken from ``--images``; each clip gives
``<out>/attention_<name>.png``: the frames, then one row per granularity (G-1st, ...).

``--marks <frame_marks.json>`` (written by the synthetic generator's ``corrupt`` /
``part_occlusion`` knobs): corrupted frames are outlined in red, and the tool prints, over all
drawn clips, each granularity's attention share of the corrupted frames, of the (partially)
occluded ones and of the clean ones (x T: 1 = uniform), the weight of the finest nodes inside
the occluder boxes relative to the rest of their frame (1 = no difference), and per granularity
the mean node weight x K on the occluded nodes and on the others (1 = uniform; the claims
benchmark's ``occluded_nodes_below_uniform`` measure). ``--tracklets all`` uses every query
(PNGs for the first ``--pictures``).
"""
from __future__ import annotations

import argparse
import json
import os
from collections import defaultdict

import cv2
import numpy as np
import torch

import fastreid_ext  # noqa: F401  (compat shims, registrations)
import mgrafa  # noqa: F401
from fastreid_ext.commands.options import add_weights_option, opts_with_weights
from fastreid_ext.config import build_config
from fastreid_ext.data.clip_sampler import evenly
from fastreid_ext.data.frame_io import load_clip, read_frame
from fastreid_ext.engine import build_inference_model
from fastreid_ext.modeling.aggregation.measures import frame_attention_mass, occluded_node_weights
from mgrafa.visualize import box_attention_ratio, log_weight_variance, save_attention_grid


def clip_tensor(frames, size) -> torch.Tensor:
    """RGB uint8 frames -> ``(T, 3, H, W)`` float 0..255 resized to ``size`` = (H, W)."""
    resized = [cv2.resize(np.asarray(f), (int(size[1]), int(size[0])), interpolation=cv2.INTER_LINEAR)
               for f in frames]
    return torch.from_numpy(np.stack(resized)).permute(0, 3, 1, 2).float()


def clips_from_args(args, cfg):
    t = cfg.INPUT.VIDEO.SEQ_LEN
    if args.images:
        frames = [read_frame(p) for p in args.images]
        yield "images", clip_tensor(frames, cfg.INPUT.SIZE_TEST), list(args.images), frames[0].shape[:2]
        return
    from fastreid_ext.data.build import get_dataset
    data = get_dataset(cfg, cfg.DATASETS.TESTS[0])
    queries = range(len(data.query)) if args.tracklets == ["all"] else [int(q) for q in args.tracklets]
    for q in queries:
        item = data.query[q]
        paths = item[0]
        indices = evenly(len(paths), t)
        frames, used, _ = load_clip(paths, indices, name=str(q))
        yield (f"{cfg.DATASETS.TESTS[0]}_q{q}_pid{item[1]}", clip_tensor(frames, cfg.INPUT.SIZE_TEST),
               [paths[j] for j in used], np.asarray(frames[0]).shape[:2])


def load_marks(path):
    """``{absolute frame path: mark}`` from a generator ``frame_marks.json`` (keys relative to
    its folder)."""
    with open(path) as f:
        raw = json.load(f)
    root = os.path.dirname(os.path.abspath(path))
    return {os.path.normpath(os.path.join(root, k)): v for k, v in raw.items()}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config-file", required=True)
    parser.add_argument("--out", default="vis/mgrafa")
    parser.add_argument("--tracklets", nargs="+", default=["0"], help="query indices, or 'all'")
    parser.add_argument("--marks", default=None, help="frame_marks.json of a synthetic dataset")
    parser.add_argument("--pictures", type=int, default=4, help="PNGs written at most (the summary uses every clip)")
    parser.add_argument("--images", nargs="+", default=None, help="frame files of one clip")
    parser.add_argument("--stats", action="store_true",
                        help="print where the log weights vary (frames / positions) and theta's BN gamma per granularity")
    add_weights_option(parser)
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE config overrides")
    args = parser.parse_args(argv)
    cfg = build_config(args.config_file, opts_with_weights(args))
    if cfg.MODEL.MGRAFA.ATTENTION == "avg":
        raise ValueError("MODEL.MGRAFA.ATTENTION avg has no attention to draw")
    if not cfg.MODEL.WEIGHTS:
        print("no --weights given: drawing the attention of an untrained model")
    model, cfg = build_inference_model(cfg, allow_untrained=True)
    os.makedirs(args.out, exist_ok=True)
    marks = load_marks(args.marks) if args.marks else {}
    shares = defaultdict(list)  # (granularity, "corrupted" | "occluded" | "clean") -> frame share x T
    node_weights = defaultdict(list)  # (granularity, "occluded" | "visible") -> node weight x K
    box_ratios = []
    all_weights = defaultdict(list)  # granularity -> per clip (C/N, T, H_m, W_m), for --stats
    written = 0
    for name, frames, paths, frame_size in clips_from_args(args, cfg):
        with torch.no_grad():
            maps = model.frame_maps({"images": frames[None]})
            weights = [w[0] for w in model.heads.attention_maps(maps)]
        clip_marks = [marks.get(os.path.normpath(os.path.abspath(p)), {}) for p in paths]
        corrupted = [t for t, m in enumerate(clip_marks) if m.get("corrupted")]
        boxes = [m.get("occluder") if not m.get("corrupted") else None for m in clip_marks]
        t_len = frames.shape[0]
        if args.stats:
            for g, w in enumerate(weights, start=1):
                all_weights[g].append(w)
        for g, w in enumerate(weights, start=1):
            mass = frame_attention_mass(w) * t_len
            for t in range(t_len):
                kind = "corrupted" if t in corrupted else ("occluded" if boxes[t] is not None else "clean")
                shares[(g, kind)].append(float(mass[t]))
            if any(b is not None for b in boxes):
                occ, vis = occluded_node_weights(w, boxes, frame_size)
                node_weights[(g, "occluded")].extend(occ)
                node_weights[(g, "visible")].extend(vis)
        for t, m in enumerate(clip_marks):
            if "occluder" in m and not m.get("corrupted"):
                r = box_attention_ratio(weights[0], t, m["occluder"], frame_size)
                if r == r:  # not nan
                    box_ratios.append(r)
        if written < args.pictures:
            path = os.path.join(args.out, f"attention_{name}.png")
            image = save_attention_grid(path, frames, weights, marked=corrupted)
            written += 1
            print(f"wrote {path} ({image.shape[1]}x{image.shape[0]})")
    if marks:
        def mean(v):
            return f"{np.mean(v) if v else float('nan'):.3f} ({len(v)})"

        for g in sorted({k[0] for k in shares}):
            print(f"G-{g}: attention share x T, corrupted frames {mean(shares[(g, 'corrupted')])}, "
                  f"occluded frames {mean(shares[(g, 'occluded')])}, clean frames {mean(shares[(g, 'clean')])}; "
                  f"node weight x K, occluded nodes {mean(node_weights[(g, 'occluded')])}, "
                  f"other nodes {mean(node_weights[(g, 'visible')])}")
        if box_ratios:
            print(f"G-1 nodes inside occluder boxes / rest of their frame: mean {np.mean(box_ratios):.3f}, "
                  f"median {np.median(box_ratios):.3f} ({len(box_ratios)} frames)")
    if args.stats:
        blocks = model.heads.aggregation.blocks
        for g in sorted(all_weights):
            v = log_weight_variance(torch.stack(all_weights[g]))
            theta = getattr(blocks[g - 1], "theta", None) if g <= len(blocks) else None
            gamma = f"; theta BN gamma mean {float(theta[1].weight.mean()):.3f}" if theta is not None else ""
            print(f"G-{g}: log-weight variance total {v['total']:.4f}, between frames {v['frames']:.4f}, "
                  f"positions {v['positions']:.4f} (shared by every clip {v['shared']:.4f}){gamma}")


if __name__ == "__main__":
    main()
