"""Frames per second the video training loader sustains.

Writes a small tree of 128x64 JPEG tracklets to a temp dir (smooth random images, so JPEG
sizes resemble real crops), builds the train loader (restricted-random clips, pad + crop,
flip, random erasing, P x K identity sampler) and times batches after a warm-up. Prints the
median of ``--runs`` runs per configuration.

    .venv/bin/python benchmarks/bench_loader.py [--runs 3] [--batches 30]
"""
from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import cv2
import numpy as np

import fastreid_ext  # noqa: F401  (compat shims first)
from fastreid_ext.data.build import build_video_train_loader
from fastreid_ext.data.clip_sampler import build_train_clip_sampler
from fastreid_ext.data.samplers import IdentityBalancedSampler
from fastreid_ext.data.transforms import ClipTrainTransform
from fastreid_ext.data.video_dataset import VideoTrainDataset


def write_tree(root: str, num_ids: int = 24, cams: int = 2, frames: int = 40, size=(128, 64)) -> list:
    rng = np.random.default_rng(0)
    items = []
    for pid in range(num_ids):
        for cam in range(cams):
            d = os.path.join(root, f"{pid:04d}_c{cam}")
            os.makedirs(d)
            base = cv2.resize(rng.integers(0, 256, (8, 4, 3), dtype=np.uint8), size[::-1], interpolation=cv2.INTER_CUBIC)
            paths = []
            for j in range(frames):
                noise = rng.integers(-12, 13, base.shape)
                img = np.clip(base.astype(np.int64) + noise, 0, 255).astype(np.uint8)
                p = os.path.join(d, f"{j:04d}.jpg")
                cv2.imwrite(p, img, [cv2.IMWRITE_JPEG_QUALITY, 90])
                paths.append(p)
            items.append((tuple(paths), f"bench_{pid}", f"bench_{cam}"))
    return items


def measure(items, workers: int, T: int, out_size, batches: int, P: int = 4, K: int = 4):
    tf = ClipTrainTransform(out_size, padding=10, flip_prob=0.5, rea_prob=0.5)
    ds = VideoTrainDataset(items, tf, build_train_clip_sampler("restricted_random"), T)
    sampler = IdentityBalancedSampler(ds.items, P * K, K, seed=0)
    loader = build_video_train_loader(train_set=ds, sampler=sampler, total_batch_size=P * K, num_workers=workers)
    it = iter(loader)
    for _ in range(3):  # warm-up: worker start, first prefetch
        next(it)
    t0, c0 = time.perf_counter(), time.process_time()
    n = 0
    for _ in range(batches):
        b = next(it)
        n += b["images"].shape[0] * b["images"].shape[1]
    dt, dc = time.perf_counter() - t0, time.process_time() - c0
    del it, loader
    # frames per CPU-second of this process: the per-core cost, meaningful only without workers
    return n / dt, (n / dc if workers == 0 else float("nan"))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--batches", type=int, default=30)
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as root:
        items = write_tree(root)
        for workers, T, out in ((0, 8, (128, 64)), (0, 8, (256, 128)), (2, 4, (128, 64)), (2, 8, (128, 64)), (2, 8, (256, 128))):
            res = [measure(items, workers, T, out, args.batches) for _ in range(args.runs)]
            fps = [r[0] for r in res]
            cpu = statistics.median(r[1] for r in res)
            rows.append((workers, T, f"{out[0]}x{out[1]}", statistics.median(fps), min(fps), max(fps), cpu))
    print(f"load average (1 min) at the end: {os.getloadavg()[0]:.1f}; cpu cores: {os.cpu_count()}, input frames 128x64 JPEG, batch P=4 x K=4 clips, "
          f"{args.batches} timed batches, median of {args.runs} runs")
    print(f"| {'workers':>7} | {'T':>2} | {'output':>7} | {'frames/s (median)':>17} | {'min':>7} | {'max':>7} | {'frames/CPU-s':>12} |")
    print(f"|{'-' * 9}|{'-' * 4}|{'-' * 9}|{'-' * 19}|{'-' * 9}|{'-' * 9}|{'-' * 14}|")
    for w, T, out, med, lo, hi, cpu in rows:
        cpu_s = f"{cpu:12.0f}" if cpu == cpu else f"{'-':>12}"
        print(f"| {w:>7} | {T:>2} | {out:>7} | {med:>17.0f} | {lo:>7.0f} | {hi:>7.0f} | {cpu_s} |")


if __name__ == "__main__":
    main()
