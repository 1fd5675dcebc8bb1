"""Helpers shared by datasets stored as one folder of frames per person and camera
(iLIDS-VID, PRID-2011): folder numbers, sorted frames, split index checks."""
from __future__ import annotations

import glob
import os.path as osp
from typing import List, Sequence

import numpy as np

from .tracklet_dataset import Tracklet


def person_number(folder: str) -> int:
    """``person042`` / ``person_0042`` -> 42."""
    digits = "".join(ch for ch in folder if ch.isdigit())
    if not digits:
        raise ValueError(f"person folder {folder!r} has no number")
    return int(digits)


def sorted_frames(folder: str, ext: str) -> List[str]:
    """Sorted frame paths of one tracklet folder (public code globs unsorted, so the order
    varies by filesystem)."""
    return sorted(glob.glob(osp.join(folder, f"*.{ext}")))


def check_split(split, num_splits: int, name: str) -> int:
    """``split`` as an int in ``0..num_splits-1``; raises ``ValueError`` otherwise."""
    if isinstance(split, bool) or not isinstance(split, (int, np.integer)) or not 0 <= split < num_splits:
        raise ValueError(f"{name}: split must be an int in 0..{num_splits - 1}, got {split!r}")
    return int(split)


def folder_tracklets(dataset, cam_dirs: Sequence[str], person_dirs: Sequence[str], cams: Sequence[int],
                     is_train: bool) -> List[Tracklet]:
    """One item per (person folder, camera index) built by ``dataset.make_item``; pids are the
    folder numbers, camids the indices into ``cam_dirs``. A folder without frames raises."""
    items = []
    for folder in person_dirs:
        for cam in cams:
            path = osp.join(cam_dirs[cam], folder)
            frames = sorted_frames(path, dataset.frame_ext)
            if not frames:
                raise ValueError(f"{type(dataset).__name__}: no *.{dataset.frame_ext} frames in {path!r}")
            items.append(dataset.make_item(frames, person_number(folder), cam, is_train))
    return items
