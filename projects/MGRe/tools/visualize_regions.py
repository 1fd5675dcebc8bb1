#!/usr/bin/env python
"""The regions MGRe locates after residual blocks 1, 2, 3 drawn on the input images, as PNG.

    python projects/MGRe/tools/visualize_regions.py --config-file projects/MGRe/configs/synthetic_cpu.yml \
        --num 6 --out vis/mgre [--weights logs/mgre/synthetic/model_final.pth]
    python projects/MGRe/tools/visualize_regions.py --config-file X.yml --images a.jpg b.jpg --out vis/mgre

Writes ``<out>/regions.png``: one row per image: the input, then one copy per stage with that
stage's boxes (stage 1: head / left torso / right torso / legs; stage 2: upper / lower body;
stage 3: whole body; colours in Table 1 order: red, green, blue, orange). Query images of the
first test dataset are used unless ``--images`` is given. With ``MODEL.MGRE.JOINT_OPTIMIZATION
False`` the boxes come from the keypoints, which ``--images`` cannot provide.
"""
from __future__ import annotations

import argparse
import os

import cv2
import numpy as np
import torch

import fastreid_ext  # noqa: F401  (compat shims, registrations)
import mgre  # noqa: F401
from fastreid_ext.commands.options import add_weights_option, opts_with_weights
from fastreid_ext.config import build_config
from fastreid_ext.data.frame_io import read_frame
from fastreid_ext.engine import build_inference_model
from mgre.visualize import save_regions_png


def image_tensor(paths, size) -> torch.Tensor:
    """RGB frames -> ``(N, 3, H, W)`` float 0..255 resized to ``size`` = (H, W)."""
    frames = [cv2.resize(np.asarray(read_frame(p)), (int(size[1]), int(size[0])), interpolation=cv2.INTER_LINEAR)
              for p in paths]
    return torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2).float()


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config-file", required=True)
    parser.add_argument("--out", default="vis/mgre")
    parser.add_argument("--num", type=int, default=6, help="query images to draw")
    parser.add_argument("--images", nargs="+", default=None, help="image files instead of queries")
    add_weights_option(parser)
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE config overrides")
    args = parser.parse_args(argv)
    cfg = build_config(args.config_file, opts_with_weights(args))
    if not cfg.MODEL.WEIGHTS:
        print("no --weights given: drawing the regions of an untrained model (the Table 1 priors)")
    model, cfg = build_inference_model(cfg, allow_untrained=True)
    if args.images:
        paths = args.images
    else:
        from fastreid_ext.data.build import get_dataset
        data = get_dataset(cfg, cfg.DATASETS.TESTS[0])
        picks = np.linspace(0, len(data.query) - 1, num=min(args.num, len(data.query))).round().astype(int)
        paths = [data.query[i][0] if isinstance(data.query[i][0], str) else data.query[i][0][0] for i in picks]
    images = image_tensor(paths, cfg.INPUT.SIZE_TEST)
    boxes = model.locate({"images": images})
    if not boxes:
        raise ValueError(f"MODEL.MGRE.MODE {cfg.MODEL.MGRE.MODE} / STAGES {list(cfg.MODEL.MGRE.STAGES)} locate no regions")
    path = save_regions_png(os.path.join(args.out, "regions.png"), images, boxes)
    print(f"wrote {path} ({len(paths)} images, stages {sorted(boxes)})")


if __name__ == "__main__":
    main()
