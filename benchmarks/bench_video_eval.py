#!/usr/bin/env python
"""Time and peak memory of evaluating a MARS-sized video test set on the CPU (``make bench-eval``).

MARS's official protocol: 1,980 query tracklets against a gallery of all 12,180 test tracklets
(queries included), 681,089 gallery frames. This builds a test set of that shape (tracklet
lengths drawn from a seeded log-normal, rescaled to the exact frame total; the real lengths are
not on this machine), and runs the evaluation path of a training run: the dense clips of
:class:`~fastreid_ext.data.video_dataset.VideoTestDataset`, a small per-frame CNN (2 conv
layers, 64-d embedding; a stand-in for the model, so that the evaluation's own cost shows),
:func:`~fastreid_ext.evaluation.inference.inference_on_dataset` and
:class:`~fastreid_ext.evaluation.video_evaluator.VideoClipEvaluator` under ``mars_official``.

Frames are not decoded: each clip is cut from a fixed random uint8 pool (``benchmarks/
bench_loader.py`` measures decoding). Prints one row per test-time sampling: frames through the
model, CPU seconds in the model, in the rest of the loop (clip assembly, accumulation), and in
ranking (CPU seconds, so that a loaded machine changes them little; wall seconds beside), and
the peak resident memory.

    python benchmarks/bench_video_eval.py [--size 64 32] [--threads 1] [--max-clips 0 32]
"""
from __future__ import annotations

import argparse
import resource
import time

import numpy as np
import torch
from tabulate import tabulate
from torch import nn

import fastreid_ext  # noqa: F401  (compat shims)
from fastreid_ext.config import build_config
from fastreid_ext.data.video_dataset import VideoTestDataset
from fastreid_ext.evaluation.inference import inference_on_dataset
from fastreid_ext.evaluation.video_evaluator import VideoClipEvaluator

NUM_QUERY, NUM_TEST, NUM_FRAMES, NUM_IDS = 1980, 12180, 681089, 626


def mars_sized_lengths(seed: int = 0) -> np.ndarray:
    """``(12180,)`` tracklet lengths summing to 681,089 (log-normal shape, at least 2 frames)."""
    rng = np.random.default_rng(seed)
    raw = rng.lognormal(mean=3.6, sigma=0.8, size=NUM_TEST)
    n = np.maximum(2, np.round(raw * NUM_FRAMES / raw.sum())).astype(np.int64)
    n[np.argmax(n)] += NUM_FRAMES - int(n.sum())  # exact total
    return n


def mars_sized_labels(seed: int = 0):
    """Test pids (about 9 % junk -1, 4 % distractors 0), 6 cameras, and 1,980 query rows that
    each have a same-pid item in another camera."""
    rng = np.random.default_rng(seed + 1)
    pids = rng.integers(1, NUM_IDS + 1, NUM_TEST)
    u = rng.random(NUM_TEST)
    pids[u < 0.09] = -1
    pids[(u >= 0.09) & (u < 0.13)] = 0
    cams = rng.integers(0, 6, NUM_TEST)
    ok = [i for i in rng.permutation(NUM_TEST) if pids[i] > 0
          and np.any((pids == pids[i]) & (cams != cams[i]))]
    return pids, cams, np.sort(np.asarray(ok[:NUM_QUERY]))


class PooledClips(VideoTestDataset):
    """The dense clips of the test set, each cut from a random uint8 frame pool (no decoding)."""

    def __init__(self, items, seq_len, max_clips, size, pool=256):
        super().__init__(items, None, seq_len, max_clips)
        g = torch.Generator().manual_seed(0)
        self.pool = torch.randint(0, 256, (pool, 3, *size), dtype=torch.uint8, generator=g)

    def __getitem__(self, index):
        k, idx = self.clips[index]
        frames = self.pool[torch.as_tensor(idx) % len(self.pool)].float()
        return {"images": frames, "track_idx": k}


def collate(batch):
    return {"images": torch.stack([b["images"] for b in batch]),
            "track_idx": torch.tensor([b["track_idx"] for b in batch])}


class SmallFrameNet(nn.Module):
    """Per-frame 2-layer CNN, mean over the clip: ``(B, T, 3, H, W)`` -> ``(B, 64)``."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 16, 5, stride=4, padding=2), nn.ReLU(),
                                  nn.Conv2d(16, 64, 3, stride=2, padding=1), nn.ReLU(),
                                  nn.AdaptiveAvgPool2d(1), nn.Flatten())

    def forward(self, batch):
        x = batch["images"] / 255.0
        b, t = x.shape[:2]
        return self.body(x.flatten(0, 1)).view(b, t, -1).mean(1)


class TimedModel(nn.Module):
    """Adds up the CPU seconds spent inside the wrapped model."""

    def __init__(self, model):
        super().__init__()
        self.model, self.seconds = model, 0.0

    def forward(self, batch):
        t0 = time.process_time()
        out = self.model(batch)
        self.seconds += time.process_time() - t0
        return out


def run(max_clips: int, size, seq_len: int, batch: int):
    lengths = mars_sized_lengths()
    pids, cams, qrows = mars_sized_labels()
    test = [(tuple(range(n)), int(p), int(c)) for n, p, c in zip(lengths, pids, cams)]
    items = [test[i] for i in qrows] + test
    t0 = time.process_time()
    ds = PooledClips(items, seq_len, max_clips, size)
    build_s = time.process_time() - t0
    cfg = build_config(None, ["TEST.VIDEO.MAX_CLIPS", str(max_clips), "TEST.VIDEO.SEQ_LEN", str(seq_len),
                              "TEST.METRIC", "euclidean"])
    ev = VideoClipEvaluator(cfg, NUM_QUERY, len(items), [it[1] for it in items], [it[2] for it in items],
                            protocol="mars_official")
    loader = torch.utils.data.DataLoader(ds, batch_size=batch, shuffle=False, num_workers=0, collate_fn=collate)
    model = TimedModel(SmallFrameNet().eval())
    rank_s = [0.0]
    evaluate = ev.evaluate

    def timed_evaluate():
        t = time.process_time()
        out = evaluate()
        rank_s[0] = time.process_time() - t
        return out

    ev.evaluate = timed_evaluate
    t0, w0 = time.process_time(), time.perf_counter()
    res = inference_on_dataset(model, loader, ev, progress=False)
    total_s, wall_s = time.process_time() - t0, time.perf_counter() - w0
    frames = len(ds) * seq_len
    seen = ds.frames_seen()
    return [max_clips or "all", len(ds), frames, int(np.count_nonzero(seen < ds.frame_counts())),
            f"{build_s:.1f}", f"{model.seconds:.1f}", f"{total_s - model.seconds - rank_s[0]:.1f}",
            f"{rank_s[0]:.1f}", f"{total_s:.1f}", f"{wall_s:.1f}", f"{res['mAP']:.2f}"]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", type=int, nargs=2, default=(64, 32), help="frame height width")
    p.add_argument("--seq-len", type=int, default=4)
    p.add_argument("--batch", type=int, default=64, help="clips per batch")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--max-clips", type=int, nargs="+", default=(0, 32))
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    rows = [run(m, tuple(a.size), a.seq_len, a.batch) for m in a.max_clips]
    peak_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(tabulate(rows, headers=["MAX_CLIPS", "clips", "frames through model", "tracklets not seen whole",
                                  "clip list CPU s", "model CPU s", "loop rest CPU s", "rank CPU s", "total CPU s",
                                  "wall s", "mAP (random net)"],
                   tablefmt="github"))
    print(f"peak resident memory of the process: {peak_gib:.2f} GiB; frames {a.size[0]}x{a.size[1]}, "
          f"T={a.seq_len}, {a.threads} thread(s)")


if __name__ == "__main__":
    main()
