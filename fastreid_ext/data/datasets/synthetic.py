"""Datasets written by the procedural generator (``fastreid_ext.data.synthetic``) under
``<root>/synthetic/<layout>``, in the exact layout of the real dataset.

Each class is the real loader with another folder (and ``dataset_name``, so train pids never
collide with the real dataset's), plus :class:`SyntheticExtras`: when the generator wrote
``keypoints.json`` ({frame path relative to the dataset folder: [[x, y, v] x 17]}) and / or
``groups.json`` ({str(pid): group}) into the dataset folder, every item carries
``{"keypoints": <absolute json path>, "group": <group of its pid>}`` as extras, and the dataset
has ``groups`` ({int pid: group}; ``None`` without the file). The keypoint lookup itself is the
data pipeline's job.
"""
from __future__ import annotations

import json
import logging
import os.path as osp
import warnings
from typing import Dict, List, Optional, Sequence

from fastreid.data.datasets import DATASET_REGISTRY
from fastreid.data.datasets.market1501 import Market1501

from .cuhk01 import CUHK01
from .ilidsvid import iLIDSVID
from .mars import MARS
from .prid2011 import PRID2011
from .tracklet_dataset import Tracklet, TrackletDataset, require_layout

logger = logging.getLogger(__name__)

__all__ = [
    "SyntheticExtras", "SyntheticMARS", "SyntheticILIDSVID", "SyntheticPRID2011", "SyntheticCUHK01",
    "SyntheticMarket1501",
]

KEYPOINTS_FILE = "keypoints.json"
GROUPS_FILE = "groups.json"


class SyntheticExtras:
    """Mixin placed before a loader: reads the generator's side files of the dataset folder
    ``<root>/<dataset_dir>`` and attaches them to every item through ``item_extras``."""

    groups: Optional[Dict[int, str]] = None
    keypoints_path: Optional[str] = None

    def __init__(self, root: str = "datasets", **kwargs):
        keypoints = self.find_side_file(root, KEYPOINTS_FILE)
        if keypoints is not None:
            self.keypoints_path = osp.abspath(keypoints)
        groups = self.find_side_file(root, GROUPS_FILE)
        if groups is not None:
            with open(groups) as f:
                self.groups = {int(pid): str(group) for pid, group in json.load(f).items()}
        super().__init__(root=root, **kwargs)

    def side_file_dirs(self, root: str) -> List[str]:
        """Folders searched, in order, for the side files (keypoint keys are relative to the
        folder holding ``keypoints.json``)."""
        return [osp.join(root, type(self).dataset_dir)]

    def find_side_file(self, root: str, name: str) -> Optional[str]:
        for folder in self.side_file_dirs(root):
            if osp.isfile(osp.join(folder, name)):
                return osp.join(folder, name)
        return None

    def item_extras(self, frame_paths: Sequence[str], pid: int) -> Dict:
        extras = {}
        if self.keypoints_path is not None:
            extras["keypoints"] = self.keypoints_path
        if self.groups is not None and pid in self.groups:
            extras["group"] = self.groups[pid]
        return extras


@DATASET_REGISTRY.register()
class SyntheticMARS(SyntheticExtras, MARS):
    dataset_dir = "synthetic/mars"
    dataset_name = "synthetic_mars"
    eval_protocol = MARS.eval_protocol


@DATASET_REGISTRY.register()
class SyntheticILIDSVID(SyntheticExtras, iLIDSVID):
    dataset_dir = "synthetic/ilidsvid"
    dataset_name = "synthetic_ilidsvid"
    eval_protocol = iLIDSVID.eval_protocol


@DATASET_REGISTRY.register()
class SyntheticPRID2011(SyntheticExtras, PRID2011):
    dataset_dir = "synthetic/prid2011"
    dataset_name = "synthetic_prid2011"
    eval_protocol = PRID2011.eval_protocol


@DATASET_REGISTRY.register()
class SyntheticCUHK01(SyntheticExtras, CUHK01):
    dataset_dir = "synthetic/cuhk01"
    dataset_name = "synthetic_cuhk01"
    eval_protocol = CUHK01.eval_protocol


MARKET1501_LAYOUT = """<root>/<dataset_dir>/Market-1501-v15.09.15/   (or the folders directly in <root>/<dataset_dir>/)
  bounding_box_train/<pid4>_c<cam>s<seq>_<frame6>_<box2>.jpg
  query/...  bounding_box_test/...   (pid -1 = junk, dropped; pid 0 = distractor, kept)"""
MARKET1501_SUBDIR = "Market-1501-v15.09.15"


@DATASET_REGISTRY.register()
class SyntheticMarket1501(SyntheticExtras, Market1501, TrackletDataset):
    """The host's ``Market1501`` parsing, items as sorted 1-frame tracklets ``((path,), pid, camid)``.

    The image folders live in ``<root>/<dataset_dir>/Market-1501-v15.09.15`` (the host's layout)
    or, as the generator writes them when given the dataset folder, directly in
    ``<root>/<dataset_dir>``; ``keypoints.json`` / ``groups.json`` are read next to them, else
    from ``<root>/<dataset_dir>``.
    ``split`` / ``protocol`` (single split and protocol) and unknown host keys are ignored.
    """

    dataset_dir = "synthetic/market1501"
    dataset_name = "synthetic_market1501"
    eval_protocol = "cross_camera"

    def __init__(self, root: str = "datasets", **kwargs):
        kwargs.pop("split", None)
        kwargs.pop("protocol", None)
        data_dir = self.side_file_dirs(root)[0]
        require_layout(
            type(self).__name__, root,
            [data_dir] + [osp.join(data_dir, d) for d in ("bounding_box_train", "query", "bounding_box_test")],
            MARKET1501_LAYOUT.replace("<dataset_dir>", self.dataset_dir),
        )
        with warnings.catch_warnings():  # the host warns when the folders are not in the subdir
            warnings.filterwarnings("ignore", message="The current data structure is deprecated")
            super().__init__(root=root, **kwargs)

    def side_file_dirs(self, root: str) -> List[str]:
        """The folder holding the image folders (the host's subdir when it exists), then the
        dataset folder."""
        folder = osp.join(root, type(self).dataset_dir)
        sub = osp.join(folder, MARKET1501_SUBDIR)
        return [sub, folder] if osp.isdir(sub) else [folder]

    def process_dir(self, dir_path: str, is_train: bool = True) -> List[Tracklet]:
        # the host parses int pids / 0-based cameras (junk dropped); make_item adds the train prefix
        images = sorted(Market1501.process_dir(self, dir_path, is_train=False))
        return [self.make_item((path,), pid, camid, is_train) for path, pid, camid in images]
