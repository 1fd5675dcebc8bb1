"""Frames per second the video training loader sustains, and frames per CPU-second beside the
rate of decoding alone.

Writes small trees of JPEG tracklets (128x64 and 256x128 frames) to a temp dir (smooth random
images, so JPEG sizes resemble real crops), builds the train loader (restricted-random clips,
pad + crop, flip, random erasing, P x K identity sampler) and times batches after a warm-up.
Prints the median of ``--runs`` runs per configuration. "decode only": the same frames through
:func:`fastreid_ext.data.frame_io.read_frame` (JPEG decode + BGR -> RGB, the loader's decoder)
per CPU-second of this process; "of decode": loader frames per CPU-second / that rate
(workers 0 only: with workers the work is in other processes).

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
from fastreid_ext.data.frame_io import read_frame
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


def decode_rate(items, repeats: int = 2) -> float:
    """Frames per CPU-second of decoding alone (every frame of ``items``, ``repeats`` times)."""
    paths = [p for it in items for p in it[0]]
    c0, n = time.process_time(), 0
    for _ in range(repeats):
        for p in paths:
            read_frame(p)
            n += 1
    return n / (time.process_time() - c0)


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
    load0 = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as root:
        trees = {size: write_tree(os.path.join(root, f"{size[0]}x{size[1]}"), size=size)
                 for size in ((128, 64), (256, 128))}
        decode = {size: statistics.median(decode_rate(items) for _ in range(args.runs)) for size, items in trees.items()}
        for workers, T, size in ((0, 8, (256, 128)), (0, 8, (128, 64)), (2, 8, (256, 128)), (2, 8, (128, 64))):
            res = [measure(trees[size], workers, T, size, args.batches) for _ in range(args.runs)]
            fps = [r[0] for r in res]
            cpu = statistics.median(r[1] for r in res)
            rows.append((workers, T, f"{size[0]}x{size[1]}", statistics.median(fps), min(fps), max(fps), cpu,
                         decode[size]))
    print(f"load average (1 min) at the start / end: {load0:.1f} / {os.getloadavg()[0]:.1f}; cpu cores: {os.cpu_count()}; "
          f"JPEG frames of the output size, batch P=4 x K=4 clips, {args.batches} timed batches, median of {args.runs} runs")
    print("| workers | T | frames = output | frames/s (median) | min | max | frames/CPU-s | decode only (frames/CPU-s) | of decode |")
    print("|---|---|---|---|---|---|---|---|---|")
    for w, T, out, med, lo, hi, cpu, dec in rows:
        cpu_s, ratio = (f"{cpu:.0f}", f"{cpu / dec:.2f}") if cpu == cpu else ("-", "-")
        print(f"| {w} | {T} | {out} | {med:.0f} | {lo:.0f} | {hi:.0f} | {cpu_s} | {dec:.0f} | {ratio} |")


if __name__ == "__main__":
    main()
