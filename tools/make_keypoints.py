#!/usr/bin/env python
"""Pose pseudo labels for MGRe's location loss (the MGRe paper, Eq. (3); the paper uses HRNet):
``<dataset-dir>/keypoints.json`` = {frame path relative to dataset-dir: [[x, y, v] x 17]}
(COCO joint order, pixels of the original image, ``v`` = the joint's score, 0 below
``--min-score``), the format ``fastreid_ext.data.video_dataset`` reads.

    python tools/make_keypoints.py --dataset-dir datasets/market1501/Market-1501-v15.09.15 \
        --pose-model models/hrnet_w32_coco_256x192.ts [--input-size 256 192] [--device cuda]

The pose model is yours, stored locally (nothing is downloaded): a TorchScript file
(``torch.jit.save``) taking ``(N, 3, H, W)`` RGB images resized to ``--input-size`` and
normalised with the ImageNet mean / std, returning either COCO heatmaps ``(N, 17, h, w)``
(the joint is the arg-max cell centre, its score the maximum) or joints ``(N, 17, 3)`` =
``(x, y, score)`` in input pixels. A tuple / list output uses its first element.

Every ``.jpg`` / ``.jpeg`` / ``.png`` / ``.bmp`` under ``--dataset-dir`` is labelled (sorted, in
batches of ``--batch-size``); unreadable images are skipped, counted and listed at the end.
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import List, Sequence, Tuple

import cv2
import numpy as np
import torch

from fastreid_ext.utils.safe_io import atomic_write_json

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
NUM_JOINTS = 17


def list_images(root: str) -> List[str]:
    """Image files under ``root``, relative to it with ``/`` separators, sorted."""
    out = []
    for folder, _, files in os.walk(root):
        for name in files:
            if name.lower().endswith(IMAGE_EXTS):
                out.append(os.path.relpath(os.path.join(folder, name), root).replace(os.sep, "/"))
    return sorted(out)


def heatmaps_to_joints(heatmaps: torch.Tensor) -> torch.Tensor:
    """``(N, 17, h, w)`` -> ``(N, 17, 3)`` = (x, y, score), x / y in fractions of the map
    (arg-max cell centre)."""
    n, k, h, w = heatmaps.shape
    score, idx = heatmaps.reshape(n, k, h * w).max(dim=2)
    x = ((idx % w).float() + 0.5) / w
    y = ((idx // w).float() + 0.5) / h
    return torch.stack([x, y, score.float()], dim=2)


def model_joints(output, input_size: Sequence[int]) -> torch.Tensor:
    """The pose model's output -> ``(N, 17, 3)`` (x, y as fractions of the input, score)."""
    if isinstance(output, (tuple, list)):
        output = output[0]
    if output.dim() == 4 and output.shape[1] == NUM_JOINTS:
        return heatmaps_to_joints(output)
    if output.dim() == 3 and tuple(output.shape[1:]) == (NUM_JOINTS, 3):
        out = output.float().clone()
        out[..., 0] /= float(input_size[1])
        out[..., 1] /= float(input_size[0])
        return out
    raise ValueError(f"the pose model must return (N, 17, h, w) heatmaps or (N, 17, 3) joints, "
                     f"got {tuple(output.shape)}")


def load_batch(root: str, rels: Sequence[str], input_size: Sequence[int]) -> Tuple[torch.Tensor, list, list]:
    """Images resized to ``input_size`` and normalised -> ``(N, 3, H, W)``, their original
    ``(h, w)``, and the relative paths that could not be read."""
    tensors, sizes, bad = [], [], []
    for rel in rels:
        img = cv2.imread(os.path.join(root, rel), cv2.IMREAD_COLOR)
        if img is None:
            bad.append(rel)
            continue
        sizes.append((rel, img.shape[0], img.shape[1]))
        rgb = cv2.cvtColor(cv2.resize(img, (int(input_size[1]), int(input_size[0]))), cv2.COLOR_BGR2RGB)
        x = (rgb.astype(np.float32) / 255.0 - IMAGENET_MEAN) / IMAGENET_STD
        tensors.append(torch.from_numpy(x.astype(np.float32)).permute(2, 0, 1))
    batch = torch.stack(tensors) if tensors else torch.zeros(0, 3, int(input_size[0]), int(input_size[1]))
    return batch, sizes, bad


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset-dir", required=True, help="folder whose images are labelled")
    parser.add_argument("--pose-model", required=True, help="local TorchScript pose model file")
    parser.add_argument("--input-size", type=int, nargs=2, default=[256, 192], metavar=("H", "W"))
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--min-score", type=float, default=0.2, help="joints scoring less get v = 0")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--out", default="", help="output file (default <dataset-dir>/keypoints.json)")
    args = parser.parse_args(argv)

    if not os.path.isfile(args.pose_model):
        print(f"error: pose model file {args.pose_model!r} not found. tools/make_keypoints.py needs a "
              f"local TorchScript pose model (e.g. HRNet-W32 COCO exported with torch.jit.save); nothing "
              f"is downloaded.", file=sys.stderr)
        return 2
    if not os.path.isdir(args.dataset_dir):
        print(f"error: dataset folder {args.dataset_dir!r} not found", file=sys.stderr)
        return 2
    rels = list_images(args.dataset_dir)
    if not rels:
        print(f"error: no images ({', '.join(IMAGE_EXTS)}) under {args.dataset_dir!r}", file=sys.stderr)
        return 2
    device = torch.device(args.device)
    model = torch.jit.load(args.pose_model, map_location=device).eval()
    table, skipped = {}, []
    with torch.no_grad():
        for start in range(0, len(rels), args.batch_size):
            batch, sizes, bad = load_batch(args.dataset_dir, rels[start:start + args.batch_size], args.input_size)
            skipped.extend(bad)
            if not sizes:
                continue
            joints = model_joints(model(batch.to(device)), args.input_size).cpu().numpy()
            for (rel, h, w), kp in zip(sizes, joints):
                v = np.where(kp[:, 2] >= args.min_score, kp[:, 2], 0.0)
                table[rel] = [[round(float(x * w), 2), round(float(y * h), 2), round(float(s), 4)]
                              for x, y, s in zip(kp[:, 0], kp[:, 1], v)]
            print(f"{min(start + args.batch_size, len(rels))}/{len(rels)} images", flush=True)
    out = args.out or os.path.join(args.dataset_dir, "keypoints.json")
    atomic_write_json(out, table)
    print(f"wrote {out}: {len(table)} images labelled, {len(skipped)} skipped (unreadable)")
    for rel in skipped[:20]:
        print(f"  skipped: {rel}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
