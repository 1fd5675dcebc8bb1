"""PRID-2011 multi-shot video ReID dataset (Hirzer et al., "Person Re-identification by
Descriptive and Discriminative Classification", SCIA 2011), with the 10 public splits of
``splits_prid2011.json`` (deep-person-reid / jiyanggao).
"""
from __future__ import annotations

import json
import logging
import os.path as osp
from typing import List, Sequence

from fastreid.data.datasets import DATASET_REGISTRY

from .person_folders import TwoCameraSplitDataset, check_split

logger = logging.getLogger(__name__)

__all__ = ["PRID2011"]

PRID2011_LAYOUT = """<root>/<dataset_dir>/
  prid_2011/multi_shot/cam_a/person_XXXX/*.png
  prid_2011/multi_shot/cam_b/person_XXXX/*.png
  splits_prid2011.json   (list of splits {"train": [...], "test": [...]}; entries are person
                          numbers (1) or folder names ("person_0001"))"""


def person_folder(entry) -> str:
    """Split entry -> folder name: ``1`` / ``"0001"`` / ``"person_0001"`` -> ``"person_0001"``."""
    if isinstance(entry, str) and entry.startswith("person_"):
        return entry
    return f"person_{int(entry):04d}"


@DATASET_REGISTRY.register()
class PRID2011(TwoCameraSplitDataset):
    """PRID-2011 tracklets of one split (``PRID2011_LAYOUT``); query = cam_a, gallery = cam_b;
    ``split`` an index into the splits file (0..9).

    Only ids with a folder in both cameras are used; split entries missing a camera are
    skipped with a logged count. pids are folder numbers, cameras 0 (cam_a) and 1 (cam_b).
    """

    dataset_dir = "prid2011"
    dataset_name = "prid2011"
    eval_protocol = "cross_camera"
    camera_dirs = ("prid_2011/multi_shot/cam_a", "prid_2011/multi_shot/cam_b")
    split_file = "splits_prid2011.json"
    layout = PRID2011_LAYOUT

    def split_persons(self, split):
        with open(self.split_path) as f:
            splits = json.load(f)
        if not isinstance(splits, list) or not all(isinstance(s, dict) and {"train", "test"} <= set(s) for s in splits):
            raise ValueError(f"{self.split_path!r}: expected a list of {{'train': [...], 'test': [...]}} dicts")
        self.split = check_split(split, len(splits), type(self).__name__)
        return (self._in_both_cameras(splits[self.split]["train"], "train"),
                self._in_both_cameras(splits[self.split]["test"], "test"))

    def _in_both_cameras(self, entries: Sequence, subset: str) -> List[str]:
        folders = sorted({person_folder(e) for e in entries})
        kept = [d for d in folders if all(osp.isdir(osp.join(c, d)) for c in self.cam_dirs)]
        if len(kept) < len(folders):
            logger.warning(f"{type(self).__name__}: skipped {len(folders) - len(kept)} {subset} id(s) of split "
                           f"{self.split} without a folder in both cameras")
        return kept
