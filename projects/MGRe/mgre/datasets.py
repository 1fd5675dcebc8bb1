"""Keypoint-aware variants of the real image / video datasets for MGRe's location loss.

``<Name>Keypoints`` is the registered dataset ``<Name>`` whose train, query and gallery items
carry ``{"keypoints": <json path>}`` extras (the data pipeline then adds ``keypoints``
(B, T, 17, 3) to the batches, ``docs/architecture.md``; frames missing from the JSON get
``v = 0``). Train items feed the location loss (Eq. 3); test items are needed only by
"MGRe w/o JO" (Table 7), which reads the regions off the keypoints at test time too (use it as
``DATASETS.TESTS``; the flip test mirrors the keypoints with the images). The JSON (``{frame path relative to the JSON's
folder: [[x, y, v] x 17]}``, pixels) is looked up as ``keypoints.json`` in the folder of the
first train image and its parents up to the dataset root, so running
``tools/make_keypoints.py --dataset-dir <dataset folder>`` on the folder holding the image
folders (e.g. ``<root>/market1501/Market-1501-v15.09.15``) is enough. A missing file raises
``FileNotFoundError`` naming that script.

Also registers ``CUHK03Detected`` (the host ``CUHK03`` defaults to the labeled boxes).
"""
from __future__ import annotations

import os.path as osp
from typing import Optional, Sequence

from fastreid.data.datasets import DATASET_REGISTRY
from fastreid_ext.data.datasets.mars import MARS
from fastreid_ext.data.items import with_extras

__all__ = ["KEYPOINTS_FILE", "find_keypoints_file", "KeypointsMixin"]

KEYPOINTS_FILE = "keypoints.json"


def _first_path(item) -> str:
    paths = item[0]
    return paths if isinstance(paths, str) else paths[0]


def find_keypoints_file(items: Sequence, root: str) -> Optional[str]:
    """``keypoints.json`` in the folder of the first item's first frame or one of its parents,
    stopping at ``root`` (inclusive); ``None`` when there is none."""
    if not items:
        return None
    stop = osp.abspath(root)
    folder = osp.dirname(osp.abspath(_first_path(items[0])))
    while True:
        candidate = osp.join(folder, KEYPOINTS_FILE)
        if osp.isfile(candidate):
            return candidate
        parent = osp.dirname(folder)
        if folder == stop or parent == folder:
            return None
        folder = parent


class KeypointsMixin:
    """Placed before a dataset class: attaches the dataset's ``keypoints.json`` to train items."""

    keypoints_path: Optional[str] = None

    def __init__(self, root: str = "datasets", **kwargs):
        super().__init__(root=root, **kwargs)
        path = find_keypoints_file(self.train, root)
        if path is None:
            folder = osp.dirname(_first_path(self.train[0])) if self.train else root
            base = type(self).__mro__[2].__name__
            raise FileNotFoundError(
                f"{type(self).__name__}: no {KEYPOINTS_FILE} in {folder} or its parents up to {root}. "
                f"Create it with `python tools/make_keypoints.py --dataset-dir <the dataset folder> "
                f"--pose-model <local pose model file>`, or train without the location loss: "
                f"DATASETS.NAMES (\"{base}\",) and MODEL.MGRE.USE_KEYPOINTS False")
        self.keypoints_path = osp.abspath(path)
        # host ImageDataset.train / query / gallery are read-only properties over these
        self._train = with_extras(self.train, keypoints=self.keypoints_path)
        self._query = with_extras(self.query, keypoints=self.keypoints_path)
        self._gallery = with_extras(self.gallery, keypoints=self.keypoints_path)


def _register(name: str, base: type, **fixed) -> type:
    def __init__(self, root: str = "datasets", **kwargs):
        kwargs.update(fixed)
        KeypointsMixin.__init__(self, root=root, **kwargs)

    cls = type(name, (KeypointsMixin, base), {"__init__": __init__, "__doc__":
               f"``{base.__name__}`` with keypoints.json pseudo labels on its train items (MGRe)."})
    DATASET_REGISTRY.register(cls)
    return cls


def _register_detected(host_cuhk03: type) -> type:
    def __init__(self, root: str = "datasets", **kwargs):
        kwargs["cuhk03_labeled"] = False
        host_cuhk03.__init__(self, root=root, **kwargs)

    cls = type("CUHK03Detected", (host_cuhk03,), {"__init__": __init__, "__doc__":
               "The host ``CUHK03`` with the detected boxes (``cuhk03_labeled=False``)."})
    DATASET_REGISTRY.register(cls)
    return cls


def _register_all() -> None:
    host = {n: DATASET_REGISTRY.get(n) for n in ("Market1501", "DukeMTMC", "CUHK03", "MSMT17")}
    detected = _register_detected(host["CUHK03"])
    for name, base in list(host.items()) + [("CUHK03Detected", detected), ("MARS", MARS)]:
        _register(f"{name}Keypoints", base)


_register_all()
