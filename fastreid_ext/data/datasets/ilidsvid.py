"""iLIDS-VID video ReID dataset (Wang et al., "Person Re-identification by Video Ranking",
ECCV 2014): 300 ids, one tracklet per id in each of 2 cameras, 10 official train/test splits.
"""
from __future__ import annotations

import glob
import os.path as osp

from fastreid.data.datasets import DATASET_REGISTRY

from .mars import read_mat
from .person_folders import TwoCameraSplitDataset, check_split

__all__ = ["iLIDSVID"]

ILIDSVID_LAYOUT = """<root>/<dataset_dir>/
  i-LIDS-VID/sequences/cam1/personXXX/*.png
  i-LIDS-VID/sequences/cam2/personXXX/*.png
  train-test people splits/train_test_splits_ilidsvid.mat
      (key ls_set, shape (10, num_ids), 1-based indices into the sorted person folders;
       per split the first num_ids // 2 are test ids, the rest train ids)"""


@DATASET_REGISTRY.register()
class iLIDSVID(TwoCameraSplitDataset):
    """iLIDS-VID tracklets of one official split (``ILIDSVID_LAYOUT``); query = cam1, gallery =
    cam2; ``split`` 0..9 (rows of ``ls_set``).

    pids are the person folder numbers (``person042`` -> 42); cameras 0 (cam1) and 1 (cam2).
    """

    dataset_dir = "ilids-vid"
    dataset_name = "ilidsvid"
    eval_protocol = "cross_camera"
    camera_dirs = ("i-LIDS-VID/sequences/cam1", "i-LIDS-VID/sequences/cam2")
    split_file = "train-test people splits/train_test_splits_ilidsvid.mat"
    layout = ILIDSVID_LAYOUT

    def split_persons(self, split):
        ls_set = read_mat(self.split_path, "ls_set")
        if ls_set.ndim != 2:
            raise ValueError(f"{self.split_path!r}: ls_set must be 2-D (num_splits, num_ids), got {ls_set.shape}")
        self.split = check_split(split, ls_set.shape[0], type(self).__name__)

        persons = sorted(osp.basename(p) for p in glob.glob(osp.join(self.cam_dirs[0], "*")) if osp.isdir(p))
        persons_b = sorted(osp.basename(p) for p in glob.glob(osp.join(self.cam_dirs[1], "*")) if osp.isdir(p))
        if persons != persons_b:
            raise ValueError(f"{type(self).__name__}: cam1 and cam2 hold different person folders "
                             f"({sorted(set(persons) ^ set(persons_b))[:5]} ...)")
        if ls_set.shape[1] != len(persons):
            raise ValueError(f"{self.split_path!r}: ls_set has {ls_set.shape[1]} ids per split, "
                             f"the tree has {len(persons)} person folders")
        row = ls_set[self.split] - 1  # 1-based -> 0-based
        if row.min() < 0 or row.max() >= len(persons) or len(set(row.tolist())) != len(row):
            raise ValueError(f"{self.split_path!r}: split {self.split} is not a permutation of 1..{len(persons)}")
        num_test = len(persons) // 2
        test_dirs = [persons[i] for i in sorted(row[:num_test].tolist())]
        train_dirs = [persons[i] for i in sorted(row[num_test:].tolist())]
        return train_dirs, test_dirs
