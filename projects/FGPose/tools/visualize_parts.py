#!/usr/bin/env python
"""Draw FGPose's part boxes (head, body, left / right arm, legs) on the first test clips of a
config's test set, and, with ``--weights``, the refined motion-attentive masks (Eq. 2) of
the five levels under each clip.

    python projects/FGPose/tools/visualize_parts.py --config-file projects/FGPose/configs/synthetic_cpu.yml \\
        --out parts.png [--weights logs/fgpose/synthetic_cpu/model_final.pth] DATASETS.ROOT datasets

The classifier's size comes from the run's ``config.yaml`` next to the weights, or from the
checkpoint (:func:`fastreid_ext.engine.build_inference_model`).
"""
from __future__ import annotations

import argparse

import cv2
import numpy as np
import torch

import fgpose  # noqa: F401  (registers FGPose)
from fastreid_ext.commands.options import add_weights_option, opts_with_weights
from fastreid_ext.config import build_config
from fastreid_ext.data.build import build_video_test_loader
from fastreid_ext.engine import build_inference_model
from fgpose.joints import PARTS, paper16_from_coco, part_boxes

COLOURS = [(0, 0, 255), (0, 200, 0), (255, 0, 0), (255, 0, 255), (0, 200, 255)]  # BGR per part


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config-file", required=True)
    p.add_argument("--out", required=True, help="PNG file")
    p.add_argument("--clips", type=int, default=6)
    p.add_argument("--scale", type=int, default=3, help="upscaling of the drawn frames")
    add_weights_option(p)
    p.add_argument("opts", nargs=argparse.REMAINDER)
    args = p.parse_args(argv)
    cfg = build_config(args.config_file, opts_with_weights(args))
    loader, _, _ = build_video_test_loader(cfg, cfg.DATASETS.TESTS[0])
    batch = next(iter(loader))
    if "keypoints" not in batch:
        raise KeyError("the test batches carry no keypoints (keypoints.json next to the dataset)")
    images, kp = batch["images"][:args.clips], batch["keypoints"][:args.clips]  # (B, L, 3, H, W), (B, L, 17, 3)
    b, _, _, h, w = images.shape
    masks = None
    if cfg.MODEL.WEIGHTS:
        model, _ = build_inference_model(cfg)
        with torch.no_grad():
            model.stream_features({"images": images, "keypoints": kp})  # every stream, masks included
        if hasattr(model, "attention"):
            masks = model.attention.last_masks
    s = args.scale
    rows = []
    for i in range(b):
        frame = images[i, 0].permute(1, 2, 0).numpy().astype(np.uint8)[:, :, ::-1]  # RGB -> BGR
        frame = cv2.resize(np.ascontiguousarray(frame), (w * s, h * s), interpolation=cv2.INTER_NEAREST)
        boxes = part_boxes(paper16_from_coco(kp[i, :1]), (h, w), cfg.MODEL.FGPOSE.PART_MARGIN)[0]
        for (cx, cy, bw, bh), colour in zip(boxes.tolist(), COLOURS):
            cv2.rectangle(frame, (int((cx - bw / 2) * w * s), int((cy - bh / 2) * h * s)),
                          (int((cx + bw / 2) * w * s), int((cy + bh / 2) * h * s)), colour, 1)
        tiles = [frame]
        for level in sorted(masks or {}):
            m = masks[level][i, 0].numpy()
            m = cv2.resize((255 * m).astype(np.uint8), (w * s, h * s), interpolation=cv2.INTER_LINEAR)
            tiles.append(cv2.cvtColor(m, cv2.COLOR_GRAY2BGR))
        rows.append(np.concatenate(tiles, axis=1))
    cv2.imwrite(args.out, np.concatenate(rows, axis=0))
    print(f"wrote {args.out}: parts {[p.name for p in PARTS]}" + (f", masks of levels {sorted(masks)}" if masks else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
