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

Short tracklets (``INPUT.VIDEO.SHORT_PAD`` for training clips, ``TEST.VIDEO.SHORT_PAD`` for
test clips): when a tracklet (or the last dense clip) has fewer than ``T`` frames, it is padded
to ``T`` by :func:`pad_frames`:

- ``"cycle"`` (default): the frames are repeated in order, ``n = 3, T = 8 ->
  [0, 1, 2, 0, 1, 2, 0, 1]``: jiyanggao Video-Person-ReID's ``random`` and ``dense`` modes
  (the code the video baseline's public code and its successors build on). Every frame appears
  ``floor(T / n)`` or ``ceil(T / n)`` times, so a short clip's average weighs its frames evenly.
- ``"repeat_last"``: the last frame is repeated, ``[0, 1, 2, 2, 2, 2, 2, 2]``:
  deep-person-reid's ``evenly`` mode and the video baseline's public ``random`` sampler
  (``configs/Video-Baseline/mars.yml`` sets it with ``SAMPLER random``).
"""
from __future__ import annotations

import functools
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np

ClipSampler = Callable[[int, int, Optional[np.random.Generator]], List[int]]


def _check(n: int, T: int) -> None:
    if n < 1:
        raise ValueError(f"a tracklet needs at least one frame, got n={n}")
    if T < 1:
        raise ValueError(f"clip length T must be >= 1, got T={T}")


#: Conventions for clips longer than the tracklet (module docstring).
PAD_MODES = ("cycle", "repeat_last")


def pad_frames(indices: Sequence[int], T: int, mode: str = "cycle") -> List[int]:
    """Pad ``indices`` to ``T`` entries: ``"cycle"`` repeats them in order, ``"repeat_last"``
    repeats the last one (unchanged when already ``>= T`` long; the first ``T`` are kept)."""
    if len(indices) == 0:
        raise ValueError("cannot pad an empty index list")
    idx = [int(i) for i in indices]
    if mode == "cycle":
        return (idx * -(-T // len(idx)))[:T]
    if mode == "repeat_last":
        return (idx + [idx[-1]] * max(0, T - len(idx)))[:T]
    raise ValueError(f"unknown padding {mode!r} (INPUT / TEST.VIDEO.SHORT_PAD); expected one of {PAD_MODES}")


def restricted_random(n: int, T: int, rng: Optional[np.random.Generator] = None, pad: str = "cycle") -> List[int]:
    """One random frame from each of ``T`` equal chunks; chunk ``i < T-1`` is
    ``[i * s, (i + 1) * s)`` with ``s = n // T``, the last chunk is ``[(T-1) * s, n)``.

    ``n < T``: every frame once, padded to ``T`` (:func:`pad_frames`).
    """
    _check(n, T)
    if n < T:
        return pad_frames(range(n), T, pad)
    rng = rng if rng is not None else np.random.default_rng()
    s = n // T
    starts = np.arange(T) * s
    ends = np.append(starts[1:], n)
    return [int(v) for v in rng.integers(starts, ends)]


def random_consecutive(n: int, T: int, rng: Optional[np.random.Generator] = None, pad: str = "cycle") -> List[int]:
    """``T`` consecutive frames from a start drawn uniformly in ``[0, n - T]``.

    ``n < T``: every frame once, padded to ``T`` (:func:`pad_frames`).
    """
    _check(n, T)
    if n < T:
        return pad_frames(range(n), T, pad)
    rng = rng if rng is not None else np.random.default_rng()
    start = int(rng.integers(0, n - T + 1))
    return list(range(start, start + T))


def random_public(n: int, T: int, rng: Optional[np.random.Generator] = None, pad: str = "cycle") -> List[int]:
    """The video-baseline public code's ``random`` sampling (``tools/video_loader.py:58-67`` of
    Video-Person-Re-ID-Fantastic-Techniques): ``begin ~ U{0, ..., max(0, n - T - 1)}``, frames
    ``begin .. min(begin + T, n) - 1``, padded to ``T`` by :func:`pad_frames` (the public code
    repeats the last frame: ``pad="repeat_last"``, ``INPUT.VIDEO.SHORT_PAD repeat_last``).

    Its range is one start shorter than :func:`random_consecutive`'s (for ``n > T`` the last
    frame is never the end of a clip), as the public code's ``rand_end = n - T - 1``.
    """
    _check(n, T)
    rng = rng if rng is not None else np.random.default_rng()
    begin = int(rng.integers(0, max(0, n - T - 1) + 1))
    return pad_frames(range(begin, min(begin + T, n)), T, pad)


def evenly(n: int, T: int, rng: Optional[np.random.Generator] = None, pad: str = "cycle") -> List[int]:
    """``T`` frames at the fixed stride ``n // T`` from frame 0 (deterministic; ``rng`` is
    accepted for a uniform signature and ignored). ``n < T``: :func:`pad_frames`
    (deep-person-reid's own ``evenly`` uses ``pad="repeat_last"``)."""
    _check(n, T)
    if n < T:
        return pad_frames(range(n), T, pad)
    stride = n // T
    return [i * stride for i in range(T)]


#: Which clips a cap keeps (``TEST.VIDEO.CLIP_SELECT``).
CLIP_SELECTIONS = ("spread", "first")


def dense_clips(n: int, T: int, max_clips: int = 0, pad: str = "cycle", select: str = "spread") -> List[List[int]]:
    """Non-overlapping clips of ``T`` frames covering frames ``0..n-1`` in order; the last
    clip, when shorter, is padded with its own frames (:func:`pad_frames`).

    ``max_clips <= 0`` (the default, ``TEST.VIDEO.MAX_CLIPS 0``) keeps every clip: every frame
    of the tracklet is seen. When more than ``max_clips`` clips exist (``max_clips > 0``),
    ``max_clips`` of them are kept: ``select="spread"``, spread evenly over the tracklet, clip
    ``round(j * (N - 1) / (max_clips - 1))`` for ``j = 0..max_clips-1`` (first and last clip
    always kept; ``max_clips == 1`` keeps the middle clip ``N // 2``); ``select="first"``, the
    first ``max_clips`` clips (the public codes whose dense test
    mode stops after a maximum number of clips).
    """
    _check(n, T)
    if select not in CLIP_SELECTIONS:
        raise ValueError(f"unknown clip selection {select!r} (TEST.VIDEO.CLIP_SELECT); expected one of {CLIP_SELECTIONS}")
    clips = [pad_frames(range(s, min(s + T, n)), T, pad) for s in range(0, n, T)]
    N = len(clips)
    if max_clips > 0 and N > max_clips and select == "first":
        clips = clips[:max_clips]
    elif max_clips > 0 and N > max_clips:
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


def build_train_clip_sampler(name: str, pad: str = "cycle") -> ClipSampler:
    """The train clip sampler named by ``cfg.INPUT.VIDEO.SAMPLER``, padding short tracklets by
    ``pad`` (``cfg.INPUT.VIDEO.SHORT_PAD``); unknown names raise."""
    try:
        sampler = _TRAIN_SAMPLERS[name]
    except KeyError:
        raise KeyError(
            f"unknown clip sampler {name!r} (INPUT.VIDEO.SAMPLER); known: {sorted(_TRAIN_SAMPLERS)}"
        ) from None
    if pad not in PAD_MODES:
        raise ValueError(f"unknown padding {pad!r} (INPUT.VIDEO.SHORT_PAD); expected one of {PAD_MODES}")
    return sampler if pad == "cycle" else functools.partial(sampler, pad=pad)
