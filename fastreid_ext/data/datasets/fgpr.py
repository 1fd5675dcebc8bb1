"""FGPR, the Fine-Grained Person Re-id benchmark (Yin, Wu, Zheng, "Fine-Grained Person
Re-identification", IJCV 2020, section 3), and its synthetic twin.

Facts from the paper: 358 ids in three uniform groups, ``blue`` (200 ids, cameras 1-2),
``white`` (45, cameras 2-3) and ``green`` (113, cameras 4-5); one sequence per id per camera;
10 random splits of 258 train / 100 test ids, stratified by group (60 / 10 / 30). Test: in each
group one camera is the gallery and the other the probe, then swapped, and the two cases are
averaged; reported for all groups pooled and for each group alone (the ``fgpr`` evaluation
protocol, :func:`fastreid_ext.evaluation.two_direction.evaluate_two_direction`).

The paper does not describe the released files. The layout assumed here (and written by the
synthetic generator's ``fgpr`` layout) is :data:`FGPR_LAYOUT`; pids are unique over the groups
(the paper: no id is in two groups). Here the *probe* (query) set holds every test id's
sequence from its group's second camera and the *gallery* the one from its first camera;
the evaluator's ``fgpr`` protocol also runs the swapped direction from the same features.
Cameras are 0-based (``cam1`` -> 0). Every item carries ``{"group": <group>}`` and, when the
dataset folder holds ``keypoints.json`` (written by the generator or by
``tools/make_keypoints.py --dataset-dir <root>/fgpr``), ``{"keypoints": <its path>}`` (train
and test items: pose-based models need the joints at test time too).
"""
from __future__ import annotations

import json
import logging
import os
import os.path as osp
from typing import Dict, List, Sequence, Tuple

from fastreid.data.datasets import DATASET_REGISTRY

from .person_folders import check_split, sorted_frames
from .synthetic import SyntheticExtras
from .tracklet_dataset import TrackletDataset, require_layout

logger = logging.getLogger(__name__)

__all__ = ["FGPR", "SyntheticFGPR", "FGPR_GROUP_CAMERAS", "FGPR_LAYOUT"]

#: group -> (gallery camera, probe camera), 1-based as in the paper ("first" camera = gallery)
FGPR_GROUP_CAMERAS: Dict[str, Tuple[int, int]] = {"blue": (1, 2), "white": (2, 3), "green": (4, 5)}

FGPR_LAYOUT = """<root>/<dataset_dir>/
  blue/cam1/<pid4>/*.jpg   blue/cam2/<pid4>/*.jpg      (one sequence per id per camera)
  white/cam2/<pid4>/*.jpg  white/cam3/<pid4>/*.jpg
  green/cam4/<pid4>/*.jpg  green/cam5/<pid4>/*.jpg     (pids unique over the groups)
  splits_fgpr.json   (list of 10 {"train": [pid, ...], "test": [pid, ...]}, ints)
  keypoints.json     (optional: {frame path relative to this folder: [[x, y, v] x 17]})"""


class _FGPRBase(TrackletDataset):
    dataset_dir = "fgpr"
    dataset_name = "fgpr"
    eval_protocol = "fgpr"
    frame_ext = "jpg"
    keypoints_path = None

    def __init__(self, root: str = "datasets", split: int = 0, **kwargs):
        kwargs.pop("protocol", None)
        self.root = root
        self.data_dir = osp.join(root, self.dataset_dir)
        self.split_path = osp.join(self.data_dir, "splits_fgpr.json")
        layout = FGPR_LAYOUT.replace("<dataset_dir>", self.dataset_dir)
        cam_dirs = [osp.join(self.data_dir, g, f"cam{c}") for g, cams in FGPR_GROUP_CAMERAS.items() for c in cams]
        require_layout(type(self).__name__, root, [self.data_dir, self.split_path, *cam_dirs], layout)
        if self.keypoints_path is None and osp.isfile(osp.join(self.data_dir, "keypoints.json")):
            self.keypoints_path = osp.abspath(osp.join(self.data_dir, "keypoints.json"))

        with open(self.split_path) as f:
            splits = json.load(f)
        if not isinstance(splits, list) or not all(isinstance(s, dict) and {"train", "test"} <= set(s) for s in splits):
            raise ValueError(f"{self.split_path!r}: expected a list of {{'train': [...], 'test': [...]}} dicts")
        self.split = check_split(split, len(splits), type(self).__name__)
        train_ids = {int(p) for p in splits[self.split]["train"]}
        test_ids = {int(p) for p in splits[self.split]["test"]}
        if train_ids & test_ids:
            raise ValueError(f"{self.split_path!r} split {self.split}: ids in both train and test: "
                             f"{sorted(train_ids & test_ids)[:5]}")
        self.group_of = self._scan_groups()
        unknown = sorted((train_ids | test_ids) - set(self.group_of))
        if unknown:
            raise ValueError(f"{type(self).__name__}: split {self.split} names ids without a sequence folder: "
                             f"{unknown[:5]} ({len(unknown)} in all)")

        train, query, gallery = [], [], []
        for pid in sorted(train_ids | test_ids):
            group = self.group_of[pid]
            gcam, pcam = FGPR_GROUP_CAMERAS[group]
            seqs = {cam: self._frames(group, cam, pid) for cam in (gcam, pcam)}
            missing = [c for c, fr in seqs.items() if not fr]
            if missing:
                raise ValueError(f"{type(self).__name__}: id {pid} ({group}) has no *.{self.frame_ext} frames "
                                 f"in camera(s) {missing}")
            if pid in train_ids:
                train += [self.make_item(seqs[c], pid, c - 1, True) for c in (gcam, pcam)]
            else:
                gallery.append(self.make_item(seqs[gcam], pid, gcam - 1, False))
                query.append(self.make_item(seqs[pcam], pid, pcam - 1, False))
        super().__init__(train, query, gallery, **kwargs)

    def _scan_groups(self) -> Dict[int, str]:
        """pid -> group from the sequence folders (an id in two groups raises)."""
        group_of: Dict[int, str] = {}
        for group, cams in FGPR_GROUP_CAMERAS.items():
            for cam in cams:
                for name in sorted(os.listdir(osp.join(self.data_dir, group, f"cam{cam}"))):
                    if not name.isdigit():
                        continue
                    pid = int(name)
                    if group_of.setdefault(pid, group) != group:
                        raise ValueError(f"{type(self).__name__}: id {pid} is in groups {group_of[pid]!r} and "
                                         f"{group!r}; FGPR ids are unique over the groups")
        return group_of

    def _frames(self, group: str, cam: int, pid: int) -> List[str]:
        return sorted_frames(osp.join(self.data_dir, group, f"cam{cam}", f"{pid:04d}"), self.frame_ext)

    def item_extras(self, frame_paths: Sequence[str], pid: int) -> Dict:
        extras = dict(super().item_extras(frame_paths, pid))
        extras["group"] = self.group_of[int(pid)]
        if self.keypoints_path is not None:
            extras["keypoints"] = self.keypoints_path
        return extras


@DATASET_REGISTRY.register()
class FGPR(_FGPRBase):
    """FGPR tracklets of one split (``split`` 0..9, ``DATASETS.SPLIT``): train = both cameras
    of the train ids; query (probe) = each test id's second-camera sequence, gallery = its
    first-camera one (:data:`FGPR_GROUP_CAMERAS`). Evaluated with the ``fgpr`` protocol."""


@DATASET_REGISTRY.register()
class SyntheticFGPR(SyntheticExtras, _FGPRBase):
    """:class:`FGPR` on the generator's ``fgpr`` layout under ``<root>/synthetic/fgpr``
    (``python -m fastreid_ext.data.synthetic --layout fgpr --out <root>/synthetic/fgpr --ids 358``)."""

    dataset_dir = "synthetic/fgpr"
    dataset_name = "synthetic_fgpr"
