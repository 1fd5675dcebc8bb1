"""Which frames of a tracklet make a clip: train modes and dense test clips.

Pure functions on frame counts that return frame indices, following the clip sampling of the
public video ReID code bases named below:

- ``restricted_random``: split the ``n`` frames into ``T`` equal chunks of
  ``n // T`` frames, the last chunk running to the end, and draw one random frame from each.
- ``random_consecutive`` (jiyanggao Video-Person-ReID): ``T`` consecutive frames from a random
  start.
- ``random`` (the video-baseline public code, ``--sampling random``): ``T`` consecutive frames
  from a start drawn in ``[0, max(0, n - T - 1)]``, short tracklets padded with their last frame
  (``tools/video_loader.py:58-67``).
- ``evenly`` (deep-person-reid): ``T`` frames at the fixed stride ``n // T`` from frame 0.
- ``dense_clips`` (test): all frames in non-overlapping clips of ``T``.

Padding rule (every sampler but ``random``, which ports its public code as it is): when a tracklet (or the last dense clip) has fewer than
``T`` frames, its frames are **cycled in order** until there are ``T`` of them:
``n = 3, T = 8 -> [0, 1, 2, 0, 1, 2, 0, 1]`` (:func:`loop_pad`). This is the "loop frames"
convention of jiyanggao / deep-person-reid, so a short clip keeps its frames' order inside each
cycle and every frame appears ``floor(T / n)`` or ``ceil(T / n)`` times.
"""
from __future__ import annotations

from typing import Callable, Dict, List, Optional, Sequence

import numpy as np

ClipSampler = Callable[[int, int, Optional[np.random.Generator]], List[int]]


def _check(n: int, T: int) -> None:
    if n < 1:
        raise ValueError(f"a tracklet needs at least one frame, got n={n}")
    if T < 1:
        raise ValueError(f"clip length T must be >= 1, got T={T}")


def loop_pad(indices: Sequence[int], T: int) -> List[int]:
    """Cycle ``indices`` in order until the list holds ``T`` entries (unchanged when already
    ``>= T`` long; the first ``T`` are kept)."""
    if len(indices) == 0:
        raise ValueError("cannot pad an empty index list")
    reps = -(-T // len(indices))
    return [int(i) for i in (list(indices) * reps)[:T]]


def restricted_random(n: int, T: int, rng: Optional[np.random.Generator] = None) -> List[int]:
    """One random frame from each of ``T`` equal chunks; chunk ``i < T-1`` is
    ``[i * s, (i + 1) * s)`` with ``s = n // T``, the last chunk is ``[(T-1) * s, n)``.

    ``n < T``: every frame once, cycled to ``T`` (:func:`loop_pad`).
    """
    _check(n, T)
    if n < T:
        return loop_pad(range(n), T)
    rng = rng if rng is not None else np.random.default_rng()
    s = n // T
    starts = np.arange(T) * s
    ends = np.append(starts[1:], n)
    return [int(v) for v in rng.integers(starts, ends)]


def random_consecutive(n: int, T: int, rng: Optional[np.random.Generator] = None) -> List[int]:
    """``T`` consecutive frames from a start drawn uniformly in ``[0, n - T]``.

    ``n < T``: ``[0, 1, ..., n-1, 0, 1, ...]`` (frames looped, :func:`loop_pad`).
    """
    _check(n, T)
    if n < T:
        return loop_pad(range(n), T)
    rng = rng if rng is not None else np.random.default_rng()
    start = int(rng.integers(0, n - T + 1))
    return list(range(start, start + T))


def random_public(n: int, T: int, rng: Optional[np.random.Generator] = None) -> List[int]:
    """The video-baseline public code's ``random`` sampling (``tools/video_loader.py:58-67`` of
    Video-Person-Re-ID-Fantastic-Techniques): ``begin ~ U{0, ..., max(0, n - T - 1)}``, frames
    ``begin .. min(begin + T, n) - 1``, then the last frame repeated up to ``T``.

    Its range is one start shorter than :func:`random_consecutive`'s (for ``n > T`` the last
    frame is never the end of a clip), as the public code's ``rand_end = n - T - 1``.
    """
    _check(n, T)
    rng = rng if rng is not None else np.random.default_rng()
    begin = int(rng.integers(0, max(0, n - T - 1) + 1))
    indices = list(range(begin, min(begin + T, n)))
    return indices + [indices[-1]] * (T - len(indices))


def evenly(n: int, T: int, rng: Optional[np.random.Generator] = None) -> List[int]:
    """``T`` frames at the fixed stride ``n // T`` from frame 0 (deterministic; ``rng`` is
    accepted for a uniform signature and ignored). ``n < T``: :func:`loop_pad`."""
    _check(n, T)
    if n < T:
        return loop_pad(range(n), T)
    stride = n // T
    return [i * stride for i in range(T)]


def dense_clips(n: int, T: int, max_clips: int = 0) -> List[List[int]]:
    """Non-overlapping clips of ``T`` frames covering frames ``0..n-1`` in order; the last
    clip, when shorter, is padded with its own frames (:func:`loop_pad`).

    When more than ``max_clips`` clips exist (``max_clips > 0``), ``max_clips`` of them are kept,
    spread evenly over the tracklet: clip ``round(j * (N - 1) / (max_clips - 1))`` for
    ``j = 0..max_clips-1`` (first and last clip always kept; ``max_clips == 1`` keeps the middle
    clip ``N // 2``). ``max_clips <= 0`` keeps all clips.
    """
    _check(n, T)
    clips = [loop_pad(range(s, min(s + T, n)), T) for s in range(0, n, T)]
    N = len(clips)
    if max_clips > 0 and N > max_clips:
        if max_clips == 1:
            keep = [N // 2]
        else:
            keep = np.rint(np.linspace(0, N - 1, max_clips)).astype(int).tolist()
        clips = [clips[k] for k in keep]
    return clips


_TRAIN_SAMPLERS: Dict[str, ClipSampler] = {
    "restricted_random": restricted_random,
    "random_consecutive": random_consecutive,
    "random": random_public,
    "evenly": evenly,
}


def build_train_clip_sampler(name: str) -> ClipSampler:
    """The train clip sampler named by ``cfg.INPUT.VIDEO.SAMPLER``; unknown names raise."""
    try:
        return _TRAIN_SAMPLERS[name]
    except KeyError:
        raise KeyError(
            f"unknown clip sampler {name!r} (INPUT.VIDEO.SAMPLER); known: {sorted(_TRAIN_SAMPLERS)}"
        ) from None
