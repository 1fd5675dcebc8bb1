"""The COCO-17 keypoint layout shared by the data pipeline (keypoint files, flip transform), the
evaluation (flipped test images) and the synthetic generator. A leaf: it imports nothing.

Joint order of the COCO keypoint annotations (Lin et al., "Microsoft COCO", ECCV 2014; the
``keypoints`` category of ``person_keypoints_*.json``).
"""
from __future__ import annotations

from typing import Tuple

__all__ = ["COCO_JOINTS", "NUM_JOINTS", "COCO_FLIP_PERM"]

COCO_JOINTS: Tuple[str, ...] = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear",
    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
    "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle",
)
NUM_JOINTS = len(COCO_JOINTS)  # 17

#: A horizontal flip swaps every left joint with its right twin: joint ``j`` of the flipped
#: image is joint ``COCO_FLIP_PERM[j]`` of the original.
COCO_FLIP_PERM: Tuple[int, ...] = (0, 2, 1, 4, 3, 6, 5, 8, 7, 10, 9, 12, 11, 14, 13, 16, 15)
