"""Reading frames as RGB ``uint8`` arrays, with a counted, logged skip of unreadable ones.

A frame that is missing, truncated or otherwise undecodable is *skipped*: the clip uses the
nearest readable frame of the same tracklet instead (searching ``i+1, i-1, i+2, i-2, ...``),
a warning is logged once per file (per process), and the skip is counted twice:

- per item: :func:`load_clip` returns the number of skipped reads, which the datasets put in
  the item as ``skipped_frames`` (collated to an int64 ``(B,)`` tensor); this total is exact
  whatever the number of DataLoader workers, so the trainer / evaluator should sum it;
- per process: :func:`skipped_frame_count` (only sees the reads of the calling process, i.e.
  everything when ``num_workers == 0``).

A tracklet with no readable frame raises :class:`FrameReadError` naming it.
"""
from __future__ import annotations

import logging
from typing import Dict, List, Sequence, Set, Tuple

import cv2
import numpy as np

logger = logging.getLogger(__name__)

# Per-process state: files already reported / known bad, and the count of skipped reads.
_BAD_FILES: Set[str] = set()
_SKIPPED = 0

_JPEG_SOI = b"\xff\xd8"
_JPEG_EOI = b"\xff\xd9"
_EOI_TAIL = 1024  # bytes at the end of a JPEG that must hold its end-of-image marker


class FrameReadError(OSError):
    """A frame (or every frame of a tracklet) could not be read."""


def read_frame(path: str) -> np.ndarray:
    """Decode ``path`` to an RGB ``uint8`` ``(H, W, 3)`` array.

    Raises :class:`FrameReadError` for a missing file, an undecodable file, or a JPEG without
    its end-of-image marker in its last 1 KiB (truncated; checked explicitly because some
    libjpeg builds decode a truncated file with a grey tail and only print a warning).
    """
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as e:
        raise FrameReadError(f"cannot read frame {path!r}: {e}") from None
    if data[:2].tobytes() == _JPEG_SOI and _JPEG_EOI not in data[-_EOI_TAIL:].tobytes():
        raise FrameReadError(f"truncated JPEG frame {path!r} (no end-of-image marker)")
    img = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if img is None:
        raise FrameReadError(f"cannot decode frame {path!r}")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def _neighbours(i: int, n: int):
    """``i, i+1, i-1, i+2, i-2, ...`` restricted to ``[0, n)``."""
    yield i
    for d in range(1, n):
        if i + d < n:
            yield i + d
        if i - d >= 0:
            yield i - d


def _note_bad(path: str, err: Exception) -> None:
    if path not in _BAD_FILES:
        _BAD_FILES.add(path)
        logger.warning(f"skipping unreadable frame ({err}); using a neighbouring frame instead")


def load_clip(
    frame_paths: Sequence[str], indices: Sequence[int], name: str = ""
) -> Tuple[List[np.ndarray], List[int], int]:
    """Read the frames ``indices`` of one tracklet, replacing unreadable ones by the nearest
    readable frame of the same tracklet.

    Each distinct frame is decoded once (a padded clip repeating a frame shares the array;
    the arrays must be treated as read-only).

    Returns ``(frames, used_indices, skipped)``: the RGB ``uint8`` frames, the index actually
    read for each requested one, and how many requested reads were replaced.
    Raises :class:`FrameReadError` naming the tracklet when none of its frames is readable.
    """
    n = len(frame_paths)
    cache: Dict[int, np.ndarray] = {}
    frames, used, skipped = [], [], 0
    for i in indices:
        if not 0 <= i < n:
            raise IndexError(f"frame index {i} out of range for tracklet {name!r} of {n} frames")
        for j in _neighbours(int(i), n):
            if j in cache:
                break
            path = frame_paths[j]
            if path in _BAD_FILES:
                continue
            try:
                cache[j] = read_frame(path)
                break
            except FrameReadError as e:
                _note_bad(path, e)
        else:
            raise FrameReadError(
                f"tracklet {name or '?'!r}: none of its {n} frames is readable "
                f"(first frame {frame_paths[0]!r})"
            )
        if j != i:
            skipped += 1
        frames.append(cache[j])
        used.append(j)
    global _SKIPPED
    _SKIPPED += skipped
    return frames, used, skipped


def skipped_frame_count() -> int:
    """Frame reads this process replaced by a neighbour so far (see the module docstring for
    the exact per-batch total over workers)."""
    return _SKIPPED


def reset_skipped_frames() -> None:
    """Forget the per-process bad-file set and counter (tests)."""
    global _SKIPPED
    _SKIPPED = 0
    _BAD_FILES.clear()


__all__ = ["FrameReadError", "read_frame", "load_clip", "skipped_frame_count", "reset_skipped_frames"]
