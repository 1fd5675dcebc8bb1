"""MARS video ReID dataset (Zheng et al., "MARS: A Video Benchmark for Large-Scale Person
Re-identification", ECCV 2016), read from its official files.

Two test protocols (see ``video-reid-protocols.md``):

- ``standard`` (default; jiyanggao/Video-Person-ReID, deep-person-reid): gallery = test rows
  minus the ``query_IDX`` rows; junk (pid -1) dropped at load; distractors (pid 0) kept.
  Evaluated with ``cross_camera`` (same pid and same camera removed per query).
- ``official`` (MATLAB ``evaluation_mars.m``, AP3D): gallery = all test rows, queries
  included; junk rows kept with pid -1 so the ``mars_official`` evaluator can ignore them.
"""
from __future__ import annotations

import logging
import os
import os.path as osp
from typing import Dict, List, Sequence

import numpy as np
from scipy.io import loadmat

from fastreid.data.datasets import DATASET_REGISTRY

from .tracklet_dataset import Tracklet, TrackletDataset, require_layout

logger = logging.getLogger(__name__)

__all__ = ["MARS"]

MARS_LAYOUT = """<root>/<dataset_dir>/
  bbox_train/<pid4>/<pid4>C<cam>T<tracklet4>F<frame3>.jpg
  bbox_test/<pid4>/...
  info/train_name.txt  info/test_name.txt           (one frame name per line)
  info/tracks_train_info.mat  (key track_train_info, rows [start, end, pid, camid], 1-based)
  info/tracks_test_info.mat   (key track_test_info)
  info/query_IDX.mat          (key query_IDX, 1-based rows of track_test_info)"""

MARS_PROTOCOLS = ("standard", "official")


def read_names(path: str) -> List[str]:
    """Frame names of a ``*_name.txt`` file, one per non-empty line, in file order."""
    with open(path) as f:
        return [line.strip() for line in f if line.strip()]


def read_mat(path: str, key: str) -> np.ndarray:
    """Array ``key`` of a MATLAB file as int64; raises ``KeyError`` naming the file when absent
    and ``ValueError`` naming it when the file cannot be read (truncated, not a .mat)."""
    try:
        mat = loadmat(path)
    except Exception as e:  # scipy raises MatReadError, ValueError, IndexError ... without the file name
        raise ValueError(f"cannot read MATLAB file {path!r} (truncated or damaged?): {type(e).__name__}: {e}") from None
    if key not in mat:
        raise KeyError(f"{path!r} has no key {key!r} (keys: {sorted(k for k in mat if not k.startswith('__'))})")
    return np.asarray(mat[key]).astype(np.int64)


def read_track_info(path: str, key: str) -> np.ndarray:
    """The ``(N, 4)`` rows ``[start, end, pid, camid]`` of a MARS track-info file; another
    shape (e.g. the ``(4, N)`` transpose) raises ``ValueError`` naming the file."""
    rows = read_mat(path, key)
    if rows.ndim != 2 or rows.shape[1] != 4:
        hint = " (transposed? the rows must be tracklets)" if rows.ndim == 2 and rows.shape[0] == 4 else ""
        raise ValueError(f"{path!r}: {key} has shape {tuple(rows.shape)}, expected (N, 4) rows "
                         f"[start, end, pid, camid]{hint}")
    return rows


@DATASET_REGISTRY.register()
class MARS(TrackletDataset):
    """MARS tracklets.

    Args:
        root: datasets root; the data lives in ``<root>/<dataset_dir>`` (``MARS_LAYOUT``).
        protocol: ``"standard"`` (default) or ``"official"``; anything else raises ``ValueError``.
        kwargs: passed to the host ``Dataset`` (``mode``, ``verbose``, ...); ``split`` and
            unknown keys the host passes are ignored (MARS has a single split).
    """

    dataset_dir = "mars"
    dataset_name = "mars"
    eval_protocol = "cross_camera"
    _junk_pids = [0, -1]  # not train ids when query / gallery are combined into train

    def __init__(self, root: str = "datasets", protocol: str = "standard", **kwargs):
        if protocol not in MARS_PROTOCOLS:
            raise ValueError(f"{type(self).__name__}: unknown protocol {protocol!r}; expected one of {MARS_PROTOCOLS}")
        kwargs.pop("split", None)
        self.root = root
        self.protocol = protocol
        if protocol == "official":
            self.eval_protocol = "mars_official"
        self.data_dir = osp.join(root, self.dataset_dir)
        info = osp.join(self.data_dir, "info")
        self.train_name_path = osp.join(info, "train_name.txt")
        self.test_name_path = osp.join(info, "test_name.txt")
        self.track_train_path = osp.join(info, "tracks_train_info.mat")
        self.track_test_path = osp.join(info, "tracks_test_info.mat")
        self.query_idx_path = osp.join(info, "query_IDX.mat")
        require_layout(
            type(self).__name__, root,
            [self.data_dir, osp.join(self.data_dir, "bbox_train"), osp.join(self.data_dir, "bbox_test"),
             self.train_name_path, self.test_name_path, self.track_train_path, self.track_test_path,
             self.query_idx_path],
            MARS_LAYOUT.replace("<dataset_dir>", self.dataset_dir),
        )

        train_names = read_names(self.train_name_path)
        test_names = read_names(self.test_name_path)
        track_train = read_track_info(self.track_train_path, "track_train_info")
        track_test = read_track_info(self.track_test_path, "track_test_info")
        query_idx = read_mat(self.query_idx_path, "query_IDX").reshape(-1) - 1  # 1-based -> 0-based
        if query_idx.size and (query_idx.min() < 0 or query_idx.max() >= len(track_test)):
            raise ValueError(f"{self.query_idx_path!r}: query_IDX outside 1..{len(track_test)}")
        is_query = np.zeros(len(track_test), dtype=bool)
        is_query[query_idx] = True

        train = self._tracklets(train_names, track_train, "bbox_train", is_train=True, keep_junk=False)
        query = self._tracklets(test_names, track_test[query_idx], "bbox_test", is_train=False, keep_junk=False)
        if protocol == "standard":
            gallery = self._tracklets(test_names, track_test[~is_query], "bbox_test", is_train=False, keep_junk=False)
        else:
            gallery = self._tracklets(test_names, track_test, "bbox_test", is_train=False, keep_junk=True)
        super().__init__(train, query, gallery, **kwargs)

    def _tracklets(self, names: Sequence[str], rows: np.ndarray, home_dir: str, is_train: bool,
                   keep_junk: bool) -> List[Tracklet]:
        """Items of the track-info ``rows`` ``[start, end, pid, camid]`` (1-based inclusive
        indices into ``names``, 1-based camera). Junk (pid -1) is dropped unless ``keep_junk``;
        empty rows (end < start) and tracklets none of whose frames is on disk (an empty or
        missing ``<pid4>`` folder: one listing per folder) are dropped with one logged warning
        giving their count."""
        rows = np.asarray(rows, dtype=np.int64).reshape(-1, 4)
        items, n_junk, n_empty, n_absent = [], 0, 0, 0
        listing: Dict[str, set] = {}
        for start, end, pid, camid in rows.tolist():
            if pid == -1 and not keep_junk:
                n_junk += 1
                continue
            if end < start:
                n_empty += 1
                continue
            if start < 1 or end > len(names):
                raise ValueError(f"{type(self).__name__}: {home_dir} track row [{start}, {end}, {pid}, {camid}] "
                                 f"indexes outside the {len(names)} frame names")
            frames = sorted(names[start - 1:end])
            self._check_frames(frames, pid, camid, home_dir)
            folder = osp.join(self.data_dir, home_dir, frames[0][:4])
            if folder not in listing:
                listing[folder] = set(os.listdir(folder)) if osp.isdir(folder) else set()
            if not any(name in listing[folder] for name in frames):
                n_absent += 1
                continue
            paths = [osp.join(folder, name) for name in frames]
            items.append(self.make_item(paths, int(pid), int(camid) - 1, is_train))
        if n_empty:
            logger.warning(f"{type(self).__name__}: dropped {n_empty} empty tracklet(s) (end < start) from {home_dir}")
        if n_absent:
            logger.warning(f"{type(self).__name__}: dropped {n_absent} tracklet(s) of {home_dir} none of whose "
                           f"frames is on disk (empty or missing folders)")
        if n_junk:
            logger.info(f"{type(self).__name__}: dropped {n_junk} junk tracklet(s) (pid -1) from {home_dir}")
        return items

    def _check_frames(self, frames: Sequence[str], pid: int, camid: int, home_dir: str) -> None:
        """Every frame name of a row must carry the row's camera (``name[5]``) and one folder
        (``name[:4]``) that matches the row's pid (junk rows are named ``00-1``)."""
        folders = {name[:4] for name in frames}
        cams = {name[5] for name in frames}
        if len(folders) != 1 or cams != {str(camid)}:
            raise ValueError(f"{type(self).__name__}: {home_dir} track row (pid {pid}, camera {camid}) "
                             f"spans frames of folders {sorted(folders)} / cameras {sorted(cams)}")
        folder = folders.pop()
        if pid >= 0 and folder.lstrip("0") != str(pid).lstrip("0"):
            raise ValueError(f"{type(self).__name__}: {home_dir} track row pid {pid} points at folder {folder!r}")
