"""``MARSPose``: the MARS loader whose train, query *and* gallery items carry the dataset's
``keypoints.json`` (FGPose's joint-specific stream needs the joints at test time too).

The file (``{frame path relative to its folder: [[x, y, v] x 17]}``, pixels) is looked up in
``<root>/<dataset_dir>`` (``tools/make_keypoints.py --dataset-dir <root>/mars``); a missing file
raises ``FileNotFoundError`` naming that script.
"""
from __future__ import annotations

import os.path as osp

from fastreid.data.datasets import DATASET_REGISTRY
from fastreid_ext.data.datasets.mars import MARS
from fastreid_ext.data.items import with_extras

__all__ = ["MARSPose"]


@DATASET_REGISTRY.register()
class MARSPose(MARS):
    dataset_name = "mars"

    def __init__(self, root: str = "datasets", **kwargs):
        path = osp.join(root, self.dataset_dir, "keypoints.json")
        if not osp.isfile(path):
            raise FileNotFoundError(
                f"MARSPose: no {path}. Create it with `python tools/make_keypoints.py --dataset-dir "
                f"{osp.join(root, self.dataset_dir)} --pose-model <local pose model file>`")
        super().__init__(root=root, **kwargs)
        path = osp.abspath(path)
        # the host ImageDataset's train / query / gallery are read-only properties
        self._train = with_extras(self.train, keypoints=path)
        self._query = with_extras(self.query, keypoints=path)
        self._gallery = with_extras(self.gallery, keypoints=path)
