"""Datasets stored as one folder of frames per person and camera: the two-camera split base of
iLIDS-VID and PRID-2011 (:class:`TwoCameraSplitDataset`) and its helpers (folder numbers, sorted
frames, split index checks)."""
from __future__ import annotations

import glob
import os.path as osp
from typing import List, Sequence, Tuple

import numpy as np

from .tracklet_dataset import Tracklet, TrackletDataset, require_layout


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


class TwoCameraSplitDataset(TrackletDataset):
    """Two cameras, one frame folder per (camera, person), numbered train / test splits of the
    persons in a split file: train = both cameras of the train persons, query = camera 0 and
    gallery = camera 1 of the test persons (the protocol of iLIDS-VID and PRID-2011).

    A subclass sets ``dataset_dir``, ``camera_dirs`` (the two camera folders, relative to
    ``<root>/<dataset_dir>``), ``split_file`` (relative too), ``layout`` (the expected tree, with
    ``<dataset_dir>``) and :meth:`split_persons`.

    Args:
        root: datasets root; the data lives in ``<root>/<dataset_dir>``.
        split: the split index; out of range raises ``ValueError``.
        kwargs: passed to the host ``Dataset``; ``protocol`` (one protocol here) and unknown
            keys the host passes are ignored.
    """

    eval_protocol = "cross_camera"
    frame_ext = "png"
    camera_dirs: Tuple[str, str] = ("", "")
    split_file = ""
    layout = ""

    def __init__(self, root: str = "datasets", split: int = 0, **kwargs):
        kwargs.pop("protocol", None)
        self.root = root
        self.data_dir = osp.join(root, self.dataset_dir)
        self.cam_dirs = [osp.join(self.data_dir, d) for d in self.camera_dirs]
        self.split_path = osp.join(self.data_dir, self.split_file)
        layout = self.layout.replace("<dataset_dir>", self.dataset_dir)
        require_layout(type(self).__name__, root, [self.data_dir, *self.cam_dirs], layout)
        require_layout(type(self).__name__, root, [self.split_path], layout)
        train_dirs, test_dirs = self.split_persons(split)
        train = folder_tracklets(self, self.cam_dirs, train_dirs, cams=(0, 1), is_train=True)
        query = folder_tracklets(self, self.cam_dirs, test_dirs, cams=(0,), is_train=False)
        gallery = folder_tracklets(self, self.cam_dirs, test_dirs, cams=(1,), is_train=False)
        super().__init__(train, query, gallery, **kwargs)

    def split_persons(self, split) -> Tuple[List[str], List[str]]:
        """``(train person folders, test person folders)`` of ``split`` read from
        ``self.split_path``; sets ``self.split`` (:func:`check_split`)."""
        raise NotImplementedError
