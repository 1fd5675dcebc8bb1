"""Base class of tracklet (video) datasets, and the dataset-root convention.

Items are :class:`fastreid_ext.data.items.Item` ``(frame_paths, pid, camid, extras)``:
``frame_paths`` a tuple of sorted paths (one path for image datasets), ``extras`` a dict
(``{"keypoints": json_path}``, ``{"group": name}``, ...; ``{}`` when none). Train items follow
the host convention ``pid = f"{dataset_name}_{pid}"``; query / gallery items keep int ids.
"""
from __future__ import annotations

import logging
import os
from typing import Dict, Iterable, List, Sequence

from tabulate import tabulate
from termcolor import colored

from fastreid.data.datasets.bases import ImageDataset

from ..items import Item, as_item

logger = logging.getLogger(__name__)

Tracklet = Item  # a tracklet item (one frame for image datasets)


def datasets_root(cfg=None) -> str:
    """``cfg.DATASETS.ROOT`` when set, else ``$FASTREID_DATASETS``, else ``datasets``."""
    if cfg is not None and cfg.DATASETS.ROOT:
        return cfg.DATASETS.ROOT
    return os.getenv("FASTREID_DATASETS", "datasets")


def require_layout(dataset_name: str, root: str, required: Sequence[str], layout: str) -> None:
    """Raise ``FileNotFoundError`` naming the expected layout when a required path is missing."""
    missing = [p for p in required if not os.path.exists(p)]
    if missing:
        raise FileNotFoundError(
            f"{dataset_name}: {missing[0]!r} not found (root {root!r}, set by DATASETS.ROOT or the "
            f"FASTREID_DATASETS environment variable). Expected layout:\n{layout}"
        )


class TrackletDataset(ImageDataset):
    """Train / query / gallery lists of tracklets with the host's summary tables.

    ``eval_protocol`` names the default evaluation protocol for the evaluator
    (``cross_camera`` | ``mars_official`` | ``cuhk03_sgs`` | ``groupwise``).
    """

    eval_protocol = "cross_camera"
    dataset_name = "tracklets"

    def __init__(self, train: List[Tracklet], query: List[Tracklet], gallery: List[Tracklet], **kwargs):
        super().__init__(train, query, gallery, **kwargs)

    def item_extras(self, frame_paths: Sequence[str], pid: int) -> Dict:
        """Extras dict of a tracklet (a new dict); none here, synthetic data add some."""
        return {}

    def make_item(self, frame_paths: Sequence[str], pid: int, camid: int, is_train: bool) -> Tracklet:
        """Build one item from int ``pid`` / 0-based ``camid``: train items get the host's
        ``f"{dataset_name}_{pid}"`` strings."""
        frame_paths = tuple(frame_paths)
        extras = self.item_extras(frame_paths, pid)
        if is_train:
            pid, camid = f"{self.dataset_name}_{pid}", f"{self.dataset_name}_{camid}"
        return Item(frame_paths, pid, camid, extras)

    def combine_all(self) -> None:
        """The host's ``combine_all`` (``DATASETS.COMBINEALL``) for tracklet items: query and
        gallery join the train set with ``f"{dataset_name}_test_{pid}"`` ids, extras kept,
        ``_junk_pids`` skipped, and a tracklet listed in both query and gallery added once."""
        combined = list(self.train)
        seen = set()
        for item in map(as_item, list(self.query) + list(self.gallery)):
            if item.pid in self._junk_pids or item.paths in seen:
                continue
            seen.add(item.paths)
            combined.append(item._replace(pid=f"{self.dataset_name}_test_{item.pid}",
                                          camid=f"{self.dataset_name}_test_{item.camid}"))
        self._train = combined

    @staticmethod
    def num_frames(data: Iterable[Tracklet]) -> int:
        return sum(len(item[0]) for item in data)

    def _table(self, rows) -> str:
        headers = ["subset", "# ids", "# tracklets", "# frames", "# cameras"]
        return tabulate(rows, tablefmt="pipe", headers=headers, numalign="left")

    def show_train(self):
        n_ids, n_cams = self.parse_data(self.train)
        table = self._table([["train", n_ids, len(self.train), self.num_frames(self.train), n_cams]])
        logger.info(f"=> Loaded {type(self).__name__} in csv format: \n" + colored(table, "cyan"))

    def show_test(self):
        rows = []
        for name, data in (("query", self.query), ("gallery", self.gallery)):
            n_ids, n_cams = self.parse_data(data)
            rows.append([name, n_ids, len(data), self.num_frames(data), n_cams])
        logger.info(f"=> Loaded {type(self).__name__} in csv format: \n" + colored(self._table(rows), "cyan"))
