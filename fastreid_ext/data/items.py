"""Dataset items and the host's pid / camid relabelling.

An item is an :class:`Item` ``(paths, pid, camid, extras)``: ``paths`` a tuple of sorted frame
paths (a tracklet; one path for an image dataset's 1-frame tracklet) or one ``str`` path (the
host's image items), ``extras`` a dict of side data (``{"keypoints": json_path}``,
``{"group": name}``, ...; ``{}`` when none). Train items follow the host convention
``pid = f"{dataset_name}_{pid}"``; query / gallery items keep int ids.

:class:`Item` is a tuple, so the host code that indexes items keeps working:
``item[0] / [1] / [2]`` in ``fastreid/data/common.py:22-23,36-38`` (``CommDataset``) and
``fastreid/data/datasets/bases.py:96-97`` (``parse_data``). The host's samplers that unpack
exactly three values (``fastreid/data/samplers/triplet_sampler.py:90``) get
:func:`host_sampler_items`. The host's own datasets (Market1501, ...) give plain
``(img_path, pid, camid)`` tuples; :func:`as_item` turns any such tuple into an :class:`Item`.
"""
from __future__ import annotations

from typing import Any, Dict, Hashable, Iterable, List, NamedTuple, Sequence, Tuple, Union

__all__ = ["Item", "as_item", "extras_of", "with_extras", "host_sampler_items", "relabel_ids",
           "RelabelledItems"]


class Item(NamedTuple):
    """One tracklet or image of a dataset (module docstring)."""

    paths: Union[str, Tuple[str, ...]]
    pid: Hashable
    camid: Hashable
    extras: Dict[str, Any]


def extras_of(item: Sequence) -> dict:
    """The extras dict of an item (4th element), ``{}`` when it has none (a host 3-tuple)."""
    return item[3] if len(item) > 3 and isinstance(item[3], dict) else {}


def as_item(item: Sequence) -> Item:
    """``(paths, pid, camid[, extras])`` -> :class:`Item` (``extras`` ``{}`` when absent; the
    input is not modified). Fewer than 3 or more than 4 elements, or a 4th element that is not
    a dict, raise ``ValueError``."""
    if isinstance(item, Item):
        return item
    if not 3 <= len(item) <= 4 or (len(item) == 4 and not isinstance(item[3], dict)):
        raise ValueError(f"an item is (paths, pid, camid[, extras dict]), got {item!r}")
    return Item(item[0], item[1], item[2], extras_of(item) if len(item) == 4 else {})


def with_extras(items: Iterable[Sequence], **extras) -> List[Item]:
    """Copies of ``items`` (any item form) with ``extras`` merged into each item's extras."""
    return [Item(it.paths, it.pid, it.camid, {**it.extras, **extras}) for it in map(as_item, items)]


def host_sampler_items(items: Iterable[Sequence]) -> List[Tuple]:
    """``(paths, pid, camid)`` of each item, for the host's samplers that unpack three values
    (``fastreid/data/samplers/triplet_sampler.py:90``)."""
    return [tuple(it[:3]) for it in items]


def relabel_ids(items: Sequence) -> Tuple[List, List, Dict, Dict]:
    """``(pids, cams, pid_dict, cam_dict)`` of train items ``(paths, pid, camid[, extras])``:
    the sorted distinct pids and camids and their labels ``0..N-1`` in that order (the host's
    ``CommDataset`` relabelling, ``fastreid/data/common.py:20-30``). Pure: ``items`` is not
    modified."""
    pids = sorted({i[1] for i in items})
    cams = sorted({i[2] for i in items})
    return pids, cams, {p: k for k, p in enumerate(pids)}, {c: k for k, c in enumerate(cams)}


class RelabelledItems:
    """Mixin of the train datasets (images and clips): ``pids`` / ``cams`` of ``self.items``,
    ``num_classes`` / ``num_cameras``, and with ``relabel`` the labels of :func:`relabel_ids`
    (``pid_dict`` / ``cam_dict``) that :meth:`labels` returns."""

    items: List[Item]

    def _set_labels(self, relabel: bool) -> None:
        self.relabel = relabel
        self.pids, self.cams, pid_dict, cam_dict = relabel_ids(self.items)
        if relabel:
            self.pid_dict, self.cam_dict = pid_dict, cam_dict

    @property
    def num_classes(self) -> int:
        return len(self.pids)

    @property
    def num_cameras(self) -> int:
        return len(self.cams)

    def labels(self, item: Item) -> dict:
        """``{"targets": pid, "camids": camid}`` of ``item``, relabelled when ``relabel``."""
        pid, camid = item.pid, item.camid
        if self.relabel:
            pid, camid = self.pid_dict[pid], self.cam_dict[camid]
        return {"targets": pid, "camids": camid}
