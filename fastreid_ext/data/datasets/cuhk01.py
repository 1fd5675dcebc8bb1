"""CUHK01 image ReID dataset (Li et al., "Human Reidentification with Transferred Metric
Learning", ACCV 2012) as 1-frame tracklets: 971 ids, 2 images in each of 2 cameras.

Protocols (random id splits, as in deep-person-reid's ``cuhk01.py``):

- ``p486``: 486 test ids / 485 train ids (Pathak, "Fine-Grained Re-Identification", Table 1);
- ``p100``: 100 test ids / 871 train ids.

On a tree with ``n`` ids (e.g. synthetic data) the number of test ids is
``min(486, (n + 1) // 2)`` resp. ``min(100, (n + 1) // 2)`` (486 of the real 971 ids: the larger
half is the test half); the rest are train ids. The 10 splits are the
first 10 permutations of ``numpy.random.default_rng(SPLIT_SEED)`` over the sorted ids (test ids =
the first ``num_test`` of a permutation), so they are the same on every machine.
"""
from __future__ import annotations

import glob
import os.path as osp
import re
from typing import Dict, List, Tuple

import numpy as np

from fastreid.data.datasets import DATASET_REGISTRY

from .person_folders import check_split
from .tracklet_dataset import TrackletDataset, require_layout

__all__ = ["CUHK01", "cuhk01_test_ids", "num_test_ids", "CUHK01_PROTOCOLS"]

CUHK01_LAYOUT = """<root>/<dataset_dir>/
  campus/NNNNMMM.png   (NNNN = person 0001.., MMM = image 001..004; 001-002 camera A, 003-004 camera B)"""

CUHK01_PROTOCOLS: Dict[str, int] = {"p486": 486, "p100": 100}
NUM_SPLITS = 10
SPLIT_SEED = 0
_NAME = re.compile(r"^(\d{4})(\d{3})\.png$")


def cuhk01_test_ids(pids: List[int], num_test: int, split: int) -> List[int]:
    """Sorted test ids of ``split``: the first ``num_test`` ids of the ``split``-th permutation
    drawn from ``default_rng(SPLIT_SEED)`` over ``sorted(pids)``."""
    pids = sorted(pids)
    rng = np.random.default_rng(SPLIT_SEED)
    perms = [rng.permutation(len(pids)) for _ in range(NUM_SPLITS)]
    return sorted(pids[i] for i in perms[split][:num_test])


def num_test_ids(protocol: str, num_ids: int) -> int:
    """Test identities of ``protocol`` on a tree with ``num_ids`` ids: 486 (p486) / 100 (p100) on
    the real 971, at most the larger half ``(num_ids + 1) // 2`` on smaller trees."""
    return min(CUHK01_PROTOCOLS[protocol], (num_ids + 1) // 2)


def parse_name(path: str) -> Tuple[int, int]:
    """``.../0042003.png`` -> (pid 42, camera 1): images 1-2 are camera A (0), 3-4 camera B (1)."""
    match = _NAME.match(osp.basename(path))
    if match is None:
        raise ValueError(f"CUHK01: unexpected image name {osp.basename(path)!r} (expected NNNNMMM.png)")
    pid, img = int(match.group(1)), int(match.group(2))
    if not 1 <= img <= 4:
        raise ValueError(f"CUHK01: image index {img} of {osp.basename(path)!r} outside 001..004")
    return pid, (img - 1) // 2


@DATASET_REGISTRY.register()
class CUHK01(TrackletDataset):
    """CUHK01 as 1-frame tracklets ``((path,), pid, camid)``; query = camera A images, gallery =
    camera B images of the test ids.

    Args:
        root: datasets root; the data lives in ``<root>/<dataset_dir>`` (``CUHK01_LAYOUT``).
        protocol: ``"p486"`` (default; ``"standard"``, the config default, means it too) or
            ``"p100"``; anything else raises ``ValueError``.
        split: 0..9; out of range raises ``ValueError``.
        kwargs: passed to the host ``Dataset``; unknown host keys are ignored.
    """

    dataset_dir = "cuhk01"
    dataset_name = "cuhk01"
    eval_protocol = "cross_camera"

    def __init__(self, root: str = "datasets", protocol: str = "p486", split: int = 0, **kwargs):
        if protocol == "standard":
            protocol = "p486"
        if protocol not in CUHK01_PROTOCOLS:
            raise ValueError(f"{type(self).__name__}: unknown protocol {protocol!r}; "
                             f"expected one of {tuple(CUHK01_PROTOCOLS)} ('standard' = 'p486')")
        self.root = root
        self.protocol = protocol
        self.split = check_split(split, NUM_SPLITS, type(self).__name__)
        self.data_dir = osp.join(root, self.dataset_dir)
        self.campus_dir = osp.join(self.data_dir, "campus")
        require_layout(type(self).__name__, root, [self.data_dir, self.campus_dir],
                       CUHK01_LAYOUT.replace("<dataset_dir>", self.dataset_dir))

        images = [(p, *parse_name(p)) for p in sorted(glob.glob(osp.join(self.campus_dir, "*.png")))]
        pids = sorted({pid for _, pid, _ in images})
        if len(pids) < 2:
            raise ValueError(f"{type(self).__name__}: {self.campus_dir!r} holds {len(pids)} id(s); need >= 2")
        self.num_test_ids = num_test_ids(protocol, len(pids))
        test_ids = set(cuhk01_test_ids(pids, self.num_test_ids, self.split))

        train, query, gallery = [], [], []
        for path, pid, camid in images:
            if pid not in test_ids:
                train.append(self.make_item((path,), pid, camid, is_train=True))
            else:
                (query if camid == 0 else gallery).append(self.make_item((path,), pid, camid, is_train=False))
        super().__init__(train, query, gallery, **kwargs)
