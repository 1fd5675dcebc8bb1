"""iLIDS-VID video ReID dataset (Wang et al., "Person Re-identification by Video Ranking",
ECCV 2014): 300 ids, one tracklet per id in each of 2 cameras, 10 official train/test splits.
"""
from __future__ import annotations

import glob
import os.path as osp

from fastreid.data.datasets import DATASET_REGISTRY

from .mars import read_mat
from .person_folders import check_split, folder_tracklets
from .tracklet_dataset import TrackletDataset, require_layout

__all__ = ["iLIDSVID"]

ILIDSVID_LAYOUT = """<root>/<dataset_dir>/
  i-LIDS-VID/sequences/cam1/personXXX/*.png
  i-LIDS-VID/sequences/cam2/personXXX/*.png
  train-test people splits/train_test_splits_ilidsvid.mat
      (key ls_set, shape (10, num_ids), 1-based indices into the sorted person folders;
       per split the first num_ids // 2 are test ids, the rest train ids)"""


@DATASET_REGISTRY.register()
class iLIDSVID(TrackletDataset):
    """iLIDS-VID tracklets of one official split; query = cam1, gallery = cam2.

    Args:
        root: datasets root; the data lives in ``<root>/<dataset_dir>`` (``ILIDSVID_LAYOUT``).
        split: 0..9 (rows of ``ls_set``); out of range raises ``ValueError``.
        kwargs: passed to the host ``Dataset``; ``protocol`` (single protocol here) and
            unknown keys the host passes are ignored.

    pids are the person folder numbers (``person042`` -> 42); cameras 0 (cam1) and 1 (cam2).
    """

    dataset_dir = "ilids-vid"
    dataset_name = "ilidsvid"
    eval_protocol = "cross_camera"
    frame_ext = "png"

    def __init__(self, root: str = "datasets", split: int = 0, **kwargs):
        kwargs.pop("protocol", None)
        self.root = root
        self.data_dir = osp.join(root, self.dataset_dir)
        self.cam_dirs = [osp.join(self.data_dir, "i-LIDS-VID", "sequences", f"cam{c}") for c in (1, 2)]
        self.split_mat_path = osp.join(self.data_dir, "train-test people splits", "train_test_splits_ilidsvid.mat")
        layout = ILIDSVID_LAYOUT.replace("<dataset_dir>", self.dataset_dir)
        require_layout(type(self).__name__, root, [self.data_dir, *self.cam_dirs], layout)
        require_layout(type(self).__name__, root, [self.split_mat_path], layout)

        ls_set = read_mat(self.split_mat_path, "ls_set")
        if ls_set.ndim != 2:
            raise ValueError(f"{self.split_mat_path!r}: ls_set must be 2-D (num_splits, num_ids), got {ls_set.shape}")
        self.split = check_split(split, ls_set.shape[0], type(self).__name__)

        persons = sorted(osp.basename(p) for p in glob.glob(osp.join(self.cam_dirs[0], "*")) if osp.isdir(p))
        persons_b = sorted(osp.basename(p) for p in glob.glob(osp.join(self.cam_dirs[1], "*")) if osp.isdir(p))
        if persons != persons_b:
            raise ValueError(f"{type(self).__name__}: cam1 and cam2 hold different person folders "
                             f"({sorted(set(persons) ^ set(persons_b))[:5]} ...)")
        if ls_set.shape[1] != len(persons):
            raise ValueError(f"{self.split_mat_path!r}: ls_set has {ls_set.shape[1]} ids per split, "
                             f"the tree has {len(persons)} person folders")
        row = ls_set[self.split] - 1  # 1-based -> 0-based
        if row.min() < 0 or row.max() >= len(persons) or len(set(row.tolist())) != len(row):
            raise ValueError(f"{self.split_mat_path!r}: split {self.split} is not a permutation of 1..{len(persons)}")
        num_test = len(persons) // 2
        test_dirs = [persons[i] for i in sorted(row[:num_test].tolist())]
        train_dirs = [persons[i] for i in sorted(row[num_test:].tolist())]

        train = folder_tracklets(self, self.cam_dirs, train_dirs, cams=(0, 1), is_train=True)
        query = folder_tracklets(self, self.cam_dirs, test_dirs, cams=(0,), is_train=False)
        gallery = folder_tracklets(self, self.cam_dirs, test_dirs, cams=(1,), is_train=False)
        super().__init__(train, query, gallery, **kwargs)
