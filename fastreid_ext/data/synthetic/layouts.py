"""One writer per on-disk layout; each reproduces the official files of the real dataset.

Each writer's docstring states the official layout it reproduces (folders, file names, index
and split files of the real dataset). A writer plans
its tracklets (who, which camera, how long, where each frame goes), renders them (in worker
processes when ``workers > 1``: every tracklet has its own seeded generator, so the bytes do not
depend on scheduling), then writes the index files (name lists, ``.mat`` / ``.json`` splits),
``keypoints.json`` and ``groups.json``, and returns its counts.
"""
from __future__ import annotations

import collections
import dataclasses
import io
import multiprocessing as mp
import os
import os.path as osp
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
from scipy.io import savemat

from fastreid_ext.utils.safe_io import atomic_write_json

from .identity import (
    KIND_LAYOUT,
    KIND_SPLIT,
    KIND_TRACKLET,
    UNIFORM_NAMES,
    Identity,
    gait_only,
    group_template,
    make_identities,
    make_identity,
    make_stranger,
    rng_for,
)
from .render import TrackletSpec, render_and_write

__all__ = ["LAYOUTS", "DATASET_DIRS", "LayoutArgs", "OWNED_PATHS", "DEFAULT_LENGTHS", "DEFAULT_CAMERAS", "write_layout"]

KEYPOINTS_FILE = "keypoints.json"
GROUPS_FILE = "groups.json"
#: {frame path relative to the dataset folder: mark} for the frames a knob changed (corrupted,
#: partially occluded, misaligned; see ``render.render_tracklet_marked``); ``{}`` without knobs
MARKS_FILE = "frame_marks.json"
#: generator knobs that isolate a mechanism; 0 = off (the marker's args omit knobs that are off,
#: so datasets made before the knobs existed are still recognised)
KNOBS: Tuple[str, ...] = ("corrupt", "part_occlusion", "misalign", "scale_var", "pose_var", "occluder_clothes")

# layout -> (default cameras, allowed cameras)
DEFAULT_CAMERAS: Dict[str, Tuple[int, Tuple[int, int]]] = {
    "mars": (6, (2, 9)),  # one digit after "C" in the frame name
    "ilidsvid": (2, (2, 2)),
    "prid2011": (2, (2, 2)),
    "market1501": (6, (2, 6)),  # the host Market1501 asserts 1 <= camid <= 6
    "cuhk01": (2, (2, 2)),
    "fgpr": (5, (5, 5)),  # blue 1-2, white 2-3, green 4-5
    "vehicleid": (2, (1, 6)),  # no camera in the layout: views of a vehicle, for rendering only
}
# layout -> default (min_len, max_len): frames per tracklet (market1501: images per id and camera)
DEFAULT_LENGTHS: Dict[str, Tuple[int, int]] = {
    "mars": (8, 48),
    "ilidsvid": (23, 64),
    "prid2011": (27, 72),
    "market1501": (2, 7),
    "cuhk01": (2, 2),
    "fgpr": (20, 40),  # the real sequences have >= 150 frames; short by default for CPU runs
    "vehicleid": (2, 4),  # images per id and view
}
# layout -> (max ids, max frames per tracklet) allowed by the name formats
_LIMITS: Dict[str, Tuple[int, int]] = {
    "mars": (9999, 999),
    "ilidsvid": (999, 9999),
    "prid2011": (9999, 9999),
    "market1501": (1501, 99),
    "cuhk01": (9999, 2),
    "fgpr": (9999, 99999),
    "vehicleid": (99999, 99),
}
LAYOUTS: Tuple[str, ...] = tuple(DEFAULT_CAMERAS)
# The paths a layout owns inside its dataset folder (removed before a regeneration).
OWNED_PATHS: Dict[str, Tuple[str, ...]] = {
    "mars": ("bbox_train", "bbox_test", "info"),
    "ilidsvid": ("i-LIDS-VID", "train-test people splits"),
    "prid2011": ("prid_2011", "splits_prid2011.json"),
    "market1501": ("bounding_box_train", "bounding_box_test", "query"),
    "cuhk01": ("campus",),
    "fgpr": ("blue", "white", "green", "splits_fgpr.json"),
    "vehicleid": ("image", "train_test_split"),
}
#: where each layout's registered dataset (``Synthetic<Name>`` in ``data/datasets/synthetic.py``,
#: ``fgpr.py``) reads it under a datasets root: the folder to generate it in (vehicleid has none)
DATASET_DIRS: Dict[str, str] = {
    "mars": osp.join("synthetic", "mars"),
    "ilidsvid": osp.join("synthetic", "ilidsvid"),
    "prid2011": osp.join("synthetic", "prid2011"),
    "market1501": osp.join("synthetic", "market1501", "Market-1501-v15.09.15"),
    "cuhk01": osp.join("synthetic", "cuhk01"),
    "fgpr": osp.join("synthetic", "fgpr"),
}
_LAYOUT_CODE = {name: i + 1 for i, name in enumerate(LAYOUTS)}


@dataclasses.dataclass(frozen=True)
class LayoutArgs:
    """Resolved generation arguments (everything that changes the bytes written)."""

    layout: str
    ids: int
    seed: int
    cameras: int
    frame_size: Tuple[int, int]
    min_len: int
    max_len: int
    groups: int
    occlusion: float
    distractors: float
    junk: float
    appearance: str = "per_identity"  # identity.APPEARANCE_MODES
    corrupt: float = 0.0  # test tracklets only (all tracklets in layouts without a fixed split)
    part_occlusion: float = 0.0
    misalign: float = 0.0
    scale_var: float = 0.0
    pose_var: float = 0.0
    occluder_clothes: float = 0.0

    def as_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["frame_size"] = list(self.frame_size)
        if d["appearance"] == "per_identity":  # the default: markers written before the option still match
            del d["appearance"]
        for k in KNOBS:  # knobs that are off are left out, for the same reason
            if not d[k]:
                del d[k]
        return d


@dataclasses.dataclass
class _Track:
    """A planned tracklet: its rendering spec plus the relative path of each frame."""

    spec: TrackletSpec
    rel: List[str]
    marks: Optional[List[Optional[dict]]] = None  # per frame, set by _render_all


def _spec(a: LayoutArgs, out: str, ident: Identity, cam: int, rel: Sequence[str], key: Tuple[int, ...],
          kind: str = "person", frame_step: float = 1.0) -> _Track:
    paths = tuple(osp.join(out, p) for p in rel)
    is_train = rel[0].split("/")[0] in _TRAIN_FOLDERS
    spec = TrackletSpec(identity=ident, camera=cam, n_frames=len(rel), key=(a.seed, KIND_TRACKLET) + key,
                        paths=paths, kind=kind, frame_step=frame_step, occlusion=a.occlusion,
                        corrupt=0.0 if is_train else a.corrupt, part_occlusion=a.part_occlusion,
                        misalign=a.misalign, scale_var=a.scale_var, pose_var=a.pose_var,
                        occluder_clothes=a.occluder_clothes)
    return _Track(spec, list(rel))


# top folders of training frames in the layouts with a fixed split (``corrupt`` spares them)
_TRAIN_FOLDERS = ("bbox_train", "bounding_box_train")


def _render_all(tracks: Sequence[_Track], a: LayoutArgs, workers: int) -> List[np.ndarray]:
    """Render and write every tracklet; keypoints returned in ``tracks`` order (the per-frame
    marks are stored on the tracks)."""
    out = _render_jobs(tracks, a, workers)
    for t, (_, marks) in zip(tracks, out):
        t.marks = marks
    return [kp for kp, _ in out]


def _render_jobs(tracks: Sequence[_Track], a: LayoutArgs, workers: int) -> List[tuple]:
    for d in sorted({osp.dirname(p) for t in tracks for p in t.spec.paths}):
        os.makedirs(d, exist_ok=True)
    h, w = a.frame_size
    jobs = [(t.spec, a.seed, h, w) for t in tracks]
    if workers <= 1 or len(jobs) < 4:
        return [render_and_write(*j) for j in jobs]
    methods = mp.get_all_start_methods()
    ctx = mp.get_context("fork" if "fork" in methods else "spawn")
    chunk = max(1, len(jobs) // (workers * 16))
    with ctx.Pool(workers) as pool:
        return pool.starmap(render_and_write, jobs, chunksize=chunk)


def _write_side_files(out: str, tracks: Sequence[_Track], kps: Sequence[np.ndarray], groups: Dict[int, str]) -> None:
    table, marks = {}, {}
    for t, kp in zip(tracks, kps):
        table.update(zip(t.rel, np.round(kp, 1).tolist()))
        marks.update((rel, m) for rel, m in zip(t.rel, t.marks or ()) if m)
    _write_json(osp.join(out, KEYPOINTS_FILE), table)
    _write_json(osp.join(out, MARKS_FILE), marks)
    _write_json(osp.join(out, GROUPS_FILE), {str(pid): g for pid, g in sorted(groups.items())})


def _write_json(path: str, obj) -> None:
    atomic_write_json(path, obj, separators=(",", ":"))  # dumps: the C encoder (dump is pure Python)


def _savemat(path: str, arrays: Dict[str, np.ndarray]) -> None:
    """``scipy.io.savemat`` with a fixed 116-byte header text (scipy stamps the creation time
    there, which would make equal datasets differ in bytes)."""
    buf = io.BytesIO()
    savemat(buf, arrays)
    data = bytearray(buf.getvalue())
    text = b"MATLAB 5.0 MAT-file, written by fastreid_ext.data.synthetic"
    data[:116] = text.ljust(116, b" ")
    with open(path, "wb") as f:
        f.write(bytes(data))


def _split_half(a: LayoutArgs, pids: Sequence[int]) -> Tuple[List[int], List[int]]:
    """Seeded half / half split of ``pids`` into (train, test); test gets the odd one."""
    perm = rng_for(a.seed, KIND_SPLIT, _LAYOUT_CODE[a.layout], -1).permutation(len(pids))
    n_train = len(pids) // 2
    train = sorted(int(pids[i]) for i in perm[:n_train])
    test = sorted(int(pids[i]) for i in perm[n_train:])
    return train, test


def _query_cameras(r: np.random.Generator, cams: Sequence[int], every_camera: bool) -> List[int]:
    """Cameras whose first tracklet becomes a query. Usually 1..k-1 of the id's k cameras, so
    the other cameras stay in the gallery and every query has a cross-camera match; ids with
    ``every_camera`` query from all cameras (as in MARS, where some queries have no
    cross-camera match)."""
    k = len(cams)
    nq = k if (k == 1 or every_camera) else int(r.integers(1, k))
    return sorted(int(c) for c in r.choice(np.asarray(cams), nq, replace=False))


def _every_camera_ids(a: LayoutArgs, test_pids: Sequence[int]) -> set:
    """The 10% of test ids (rounded) that query from every camera."""
    perm = rng_for(a.seed, KIND_SPLIT, _LAYOUT_CODE[a.layout], -3).permutation(len(test_pids))
    return {int(test_pids[i]) for i in perm[:int(round(0.1 * len(test_pids)))]}


def _group_counts(groups: Dict[int, str]) -> Dict[str, int]:
    c = collections.Counter(groups.values())
    return {g: c[g] for g in UNIFORM_NAMES if g in c}


# ----------------------------------------------------------------------------- MARS
def _mars(a: LayoutArgs, out: str, workers: int) -> dict:
    code = _LAYOUT_CODE["mars"]
    pids = list(range(1, a.ids + 1))
    idents = make_identities(pids, a.seed, a.groups)
    train_pids, test_pids = _split_half(a, pids)
    split_of = {p: "train" for p in train_pids}
    split_of.update({p: "test" for p in test_pids})
    plan: Dict[str, List[tuple]] = {"train": [], "test": []}  # (folder, pid, cam, t, ident, kind, n)
    cams_of: Dict[int, List[int]] = {}
    for pid in pids:
        r = rng_for(a.seed, KIND_LAYOUT, code, pid)
        k = int(r.integers(2, a.cameras + 1))
        cams = sorted(int(c) for c in r.choice(a.cameras, k, replace=False))
        cams_of[pid] = cams
        for cam in cams:
            for t in range(1, 2 + int(r.random() < 0.3)):
                n = int(r.integers(a.min_len, a.max_len + 1))
                plan[split_of[pid]].append((f"{pid:04d}", pid, cam, t, idents[pid], "person", n))
    n_test = len(plan["test"])
    counters: Dict[Tuple[int, int], int] = collections.Counter()
    for pid, frac in ((0, a.distractors), (-1, a.junk)):
        for j in range(int(round(frac * n_test))):
            r = rng_for(a.seed, KIND_LAYOUT, code, pid, j)
            cam = int(r.integers(a.cameras))
            counters[(pid, cam)] += 1
            kind = ("background" if r.random() < 0.5 else "person") if pid == 0 else "junk"
            folder = "0000" if pid == 0 else "00-1"
            n = int(r.integers(a.min_len, a.max_len + 1))
            stranger = make_stranger(j + (0 if pid == 0 else 500000), a.seed, a.groups)
            plan["test"].append((folder, pid, cam, counters[(pid, cam)], stranger, kind, n))

    tracks: List[_Track] = []
    rows: Dict[str, List[Tuple[str, int, int]]] = {}
    for split in ("train", "test"):
        items = sorted(plan[split], key=lambda it: f"{it[0]}C{it[2] + 1}T{it[3]:04d}")
        rows[split] = []
        for folder, pid, cam, t, ident, kind, n in items:
            prefix = f"{folder}C{cam + 1}T{t:04d}"
            rel = [f"bbox_{split}/{folder}/{prefix}F{f:03d}.jpg" for f in range(1, n + 1)]
            tracks.append(_spec(a, out, ident, cam, rel, (pid, cam, t), kind))
            rows[split].append((prefix, pid, cam))
    kps = _render_all(tracks, a, workers)

    info = osp.join(out, "info")
    os.makedirs(info, exist_ok=True)
    by_split = {"train": [t for t in tracks if t.rel[0].startswith("bbox_train/")],
                "test": [t for t in tracks if t.rel[0].startswith("bbox_test/")]}
    mats = {}
    for split in ("train", "test"):
        names, info_rows = [], []
        for t, (_, pid, cam) in zip(by_split[split], rows[split]):
            start = len(names) + 1
            names.extend(osp.basename(p) for p in t.rel)
            info_rows.append([start, len(names), pid, cam + 1])
        with open(osp.join(info, f"{split}_name.txt"), "w") as f:
            f.write("".join(n + "\n" for n in names))
        mats[split] = np.asarray(info_rows, np.float64).reshape(-1, 4)
        _savemat(osp.join(info, f"tracks_{split}_info.mat"), {f"track_{split}_info": mats[split]})
    # queries: per test id, the first tracklet of some cameras
    test_rows = rows["test"]
    row_of = {(pid, cam, prefix[-5:]): i for i, (prefix, pid, cam) in enumerate(test_rows)}
    query = []
    every = _every_camera_ids(a, test_pids)
    for pid in test_pids:
        r = rng_for(a.seed, KIND_SPLIT, code, pid)
        for cam in _query_cameras(r, cams_of[pid], pid in every):
            query.append(row_of[(pid, cam, "T0001")] + 1)
    query = np.asarray(sorted(query), np.float64)
    _savemat(osp.join(info, "query_IDX.mat"), {"query_IDX": query.reshape(1, -1)})

    groups = {pid: idents[pid].group for pid in pids}
    _write_side_files(out, tracks, kps, groups)
    tinfo = mats["test"]
    return {
        "train_ids": len(train_pids), "test_ids": len(test_pids),
        "train_tracklets": len(mats["train"]), "test_tracklets": len(tinfo),
        "query": len(query), "gallery": len(tinfo) - len(query),
        "distractor_tracklets": int((tinfo[:, 2] == 0).sum()), "junk_tracklets": int((tinfo[:, 2] == -1).sum()),
        "frames": sum(len(t.rel) for t in tracks), "groups": _group_counts(groups),
    }


# ----------------------------------------------------------------------------- iLIDS-VID
def _ilidsvid(a: LayoutArgs, out: str, workers: int) -> dict:
    code = _LAYOUT_CODE["ilidsvid"]
    r0 = rng_for(a.seed, KIND_LAYOUT, code, -1)
    top = min(999, a.ids + max(1, a.ids // 15))  # person numbers with gaps, like the real 1..319
    numbers = sorted(int(x) for x in r0.choice(np.arange(1, top + 1), a.ids, replace=False))
    idents = make_identities(numbers, a.seed, a.groups)
    tracks = []
    for pid in numbers:
        r = rng_for(a.seed, KIND_LAYOUT, code, pid)
        for cam in (0, 1):
            n = int(r.integers(a.min_len, a.max_len + 1))
            start = int(r.integers(1, 90000 - n))
            rel = [f"i-LIDS-VID/sequences/cam{cam + 1}/person{pid:03d}/cam{cam + 1}_person{pid:03d}_{start + f:05d}.png"
                   for f in range(n)]
            tracks.append(_spec(a, out, idents[pid], cam, rel, (pid, cam, 1)))
    kps = _render_all(tracks, a, workers)
    ls_set = np.stack([rng_for(a.seed, KIND_SPLIT, code, s).permutation(a.ids) + 1 for s in range(10)])
    split_dir = osp.join(out, "train-test people splits")
    os.makedirs(split_dir, exist_ok=True)
    _savemat(osp.join(split_dir, "train_test_splits_ilidsvid.mat"), {"ls_set": ls_set.astype(np.float64)})
    groups = {pid: idents[pid].group for pid in numbers}
    _write_side_files(out, tracks, kps, groups)
    return {"persons": len(numbers), "test_ids_per_split": a.ids // 2, "train_ids_per_split": a.ids - a.ids // 2,
            "tracklets": len(tracks), "frames": sum(len(t.rel) for t in tracks), "groups": _group_counts(groups)}


# ----------------------------------------------------------------------------- PRID-2011
def _prid2011(a: LayoutArgs, out: str, workers: int) -> dict:
    code = _LAYOUT_CODE["prid2011"]
    n_only_a = int(round(0.15 * a.ids)) if a.ids >= 8 else 0
    n_both = a.ids - n_only_a
    numbers = list(range(1, a.ids + 1))
    idents = make_identities(numbers, a.seed, a.groups)
    tracks, lengths = [], {}
    # ~10% of the two-camera ids (at least one) get one tracklet shorter than 27 frames
    n_short = max(1, int(round(0.1 * n_both))) if n_both >= 4 else 0
    short = {int(p) + 1 for p in rng_for(a.seed, KIND_LAYOUT, code, -2).permutation(n_both)[:n_short]}
    for pid in numbers:
        r = rng_for(a.seed, KIND_LAYOUT, code, pid)
        cams = (0, 1) if pid <= n_both else (0,)
        short_cam = int(r.integers(2)) if pid in short else -1
        for cam in cams:
            if cam == short_cam:
                n = int(r.integers(5, 27))
            else:
                n = int(r.integers(a.min_len, a.max_len + 1))
            lengths[(pid, cam)] = n
            rel = [f"prid_2011/multi_shot/cam_{'ab'[cam]}/person_{pid:04d}/{f:04d}.png" for f in range(1, n + 1)]
            tracks.append(_spec(a, out, idents[pid], cam, rel, (pid, cam, 1)))
    usable = [p for p in range(1, n_both + 1) if min(lengths[(p, 0)], lengths[(p, 1)]) >= 27]
    if len(usable) < 2:  # the PRID-2011 protocol keeps ids with >= 27 frames in both cameras
        raise ValueError(f"prid2011: only {len(usable)} of {n_both} two-camera ids have >= 27 frames in both "
                         f"cameras (frames per tracklet {a.min_len}..{a.max_len}); the splits need at least 2 "
                         f"(1 train + 1 test). Raise max_len (--max-len) to >= 27 or add ids.")
    kps = _render_all(tracks, a, workers)
    splits = []
    for s in range(10):
        perm = rng_for(a.seed, KIND_SPLIT, code, s).permutation(len(usable))
        half = len(usable) // 2
        # the public file's format (deep-person-reid, jiyanggao): person folder names
        splits.append({part: [f"person_{usable[i]:04d}" for i in sorted(idx, key=lambda i: usable[i])]
                       for part, idx in (("train", perm[half:]), ("test", perm[:half]))})
    _write_json(osp.join(out, "splits_prid2011.json"), splits)
    groups = {pid: idents[pid].group for pid in numbers}
    _write_side_files(out, tracks, kps, groups)
    return {"persons_cam_a": a.ids, "persons_cam_b": n_both, "usable_ids": len(usable),
            "test_ids_per_split": len(usable) // 2, "tracklets": len(tracks),
            "frames": sum(len(t.rel) for t in tracks), "groups": _group_counts(groups)}


# ----------------------------------------------------------------------------- Market-1501
def _market1501(a: LayoutArgs, out: str, workers: int) -> dict:
    code = _LAYOUT_CODE["market1501"]
    pids = list(range(1, a.ids + 1))
    idents = make_identities(pids, a.seed, a.groups)
    train_pids, test_pids = _split_half(a, pids)
    test_set = set(test_pids)
    every = _every_camera_ids(a, test_pids)
    tracks = []
    n_test_images = 0
    for pid in pids:
        r = rng_for(a.seed, KIND_LAYOUT, code, pid)
        k = int(r.integers(2, a.cameras + 1))
        cams = sorted(int(c) for c in r.choice(a.cameras, k, replace=False))
        qcams = set(_query_cameras(rng_for(a.seed, KIND_SPLIT, code, pid), cams, pid in every)) if pid in test_set else set()
        for cam in cams:
            n = int(r.integers(a.min_len, a.max_len + 1))
            seq = int(r.integers(1, 7))
            base = int(r.integers(100, 9000)) * 100
            rel = []
            for i in range(n):
                name = f"{pid:04d}_c{cam + 1}s{seq}_{base + 7 * i:06d}_01.jpg"
                if pid not in test_set:
                    rel.append(f"bounding_box_train/{name}")
                else:
                    rel.append(f"{'query' if (i == 0 and cam in qcams) else 'bounding_box_test'}/{name}")
            n_test_images += n if pid in test_set else 0
            tracks.append(_spec(a, out, idents[pid], cam, rel, (pid, cam, 1), frame_step=3.0))
    for pid, frac in ((0, a.distractors), (-1, a.junk)):
        for j in range(int(round(frac * n_test_images / 2.5))):  # ~2.5 images per distractor track
            r = rng_for(a.seed, KIND_LAYOUT, code, pid, j)
            cam = int(r.integers(a.cameras))
            n = int(r.integers(1, 5))
            kind = ("background" if r.random() < 0.5 else "person") if pid == 0 else "junk"
            stranger = make_stranger(j + (0 if pid == 0 else 500000), a.seed, a.groups)
            rel = [f"bounding_box_test/{'0000' if pid == 0 else '-1'}_c{cam + 1}s{int(r.integers(1, 7))}_"
                   f"{100 * j + 7 * i:06d}_01.jpg" for i in range(n)]
            tracks.append(_spec(a, out, stranger, cam, rel, (pid, cam, j), kind, frame_step=3.0))
    kps = _render_all(tracks, a, workers)
    groups = {pid: idents[pid].group for pid in pids}
    _write_side_files(out, tracks, kps, groups)
    rels = [p for t in tracks for p in t.rel]
    return {
        "train_ids": len(train_pids), "test_ids": len(test_pids),
        "train_images": sum(p.startswith("bounding_box_train/") for p in rels),
        "query_images": sum(p.startswith("query/") for p in rels),
        "gallery_images": sum(p.startswith("bounding_box_test/") for p in rels),
        "distractor_images": sum(p.startswith("bounding_box_test/0000_") for p in rels),
        "junk_images": sum(p.startswith("bounding_box_test/-1_") for p in rels),
        "frames": len(rels), "groups": _group_counts(groups),
    }


# ----------------------------------------------------------------------------- CUHK01
def _cuhk01(a: LayoutArgs, out: str, workers: int) -> dict:
    pids = list(range(1, a.ids + 1))
    idents = make_identities(pids, a.seed, a.groups)
    tracks = []
    for pid in pids:
        for cam in (0, 1):
            rel = [f"campus/{pid:04d}{2 * cam + i + 1:03d}.png" for i in range(2)]
            tracks.append(_spec(a, out, idents[pid], cam, rel, (pid, cam, 1), frame_step=4.0))
    kps = _render_all(tracks, a, workers)
    groups = {pid: idents[pid].group for pid in pids}
    _write_side_files(out, tracks, kps, groups)
    return {"ids": len(pids), "images": 4 * len(pids), "frames": 4 * len(pids), "groups": _group_counts(groups)}


# ----------------------------------------------------------------------------- VehicleID
#: VehicleID's test lists (``train_test_split/test_list_<n>.txt``, n = the real list's ids): the
#: Small / Medium / Large lists are nested subsets of the test ids, the 13164 list holds them all
VEHICLEID_TEST_LISTS: Tuple[Tuple[int, float], ...] = ((800, 1 / 3), (1600, 2 / 3), (2400, 1.0), (13164, 1.0))


def _vehicleid(a: LayoutArgs, out: str, workers: int) -> dict:
    """``image/<imgid7>.jpg`` and ``train_test_split/{train_list,test_list_<n>}.txt`` with lines
    ``<imgid> <vid>`` (the host's ``vehicleid.py``): half the ids train, the others test; the host
    draws query / gallery from a test list itself (one gallery image per id)."""
    code = _LAYOUT_CODE["vehicleid"]
    pids = list(range(1, a.ids + 1))
    idents = make_identities(pids, a.seed, a.groups)
    train_pids, test_pids = _split_half(a, pids)
    tracks, lines, next_img = [], {}, 1
    for pid in pids:
        r = rng_for(a.seed, KIND_LAYOUT, code, pid)
        for cam in range(a.cameras):
            n = int(r.integers(a.min_len, a.max_len + 1))
            names = [f"{next_img + i:07d}" for i in range(n)]
            next_img += n
            lines.setdefault(pid, []).extend(f"{name} {pid}\n" for name in names)
            tracks.append(_spec(a, out, idents[pid], cam, [f"image/{name}.jpg" for name in names], (pid, cam, 1),
                                frame_step=3.0))
    kps = _render_all(tracks, a, workers)
    split = osp.join(out, "train_test_split")
    os.makedirs(split, exist_ok=True)
    lists = {"train_list.txt": train_pids}
    for n, frac in VEHICLEID_TEST_LISTS:
        lists[f"test_list_{n}.txt"] = test_pids[:max(1, int(np.ceil(frac * len(test_pids))))]
    for name, ids in lists.items():
        with open(osp.join(split, name), "w") as f:
            f.write("".join(line for pid in sorted(ids) for line in lines[pid]))
    groups = {pid: idents[pid].group for pid in pids}
    _write_side_files(out, tracks, kps, groups)
    return {"train_ids": len(train_pids), "test_ids": len(test_pids),
            "test_list_ids": {n: len(lists[f"test_list_{n}.txt"]) for n, _ in VEHICLEID_TEST_LISTS},
            "frames": next_img - 1, "groups": _group_counts(groups)}


# ----------------------------------------------------------------------------- FGPR
#: FGPR's groups (Yin et al., IJCV 2020, section 3): (uniform, 0-based cameras, ids in the real
#: dataset, test ids per split in the real protocol)
FGPR_GROUPS: Tuple[Tuple[str, Tuple[int, int], int, int], ...] = (
    ("blue", (0, 1), 200, 60), ("white", (1, 2), 45, 10), ("green", (3, 4), 113, 30))
FGPR_SPLITS = 10


def fgpr_group_sizes(ids: int) -> Dict[str, int]:
    """Ids per group: 200 / 45 / 113 scaled to ``ids`` (largest remainders), at least 2 each."""
    if ids < 2 * len(FGPR_GROUPS):
        raise ValueError(f"layout 'fgpr' needs ids >= {2 * len(FGPR_GROUPS)} (2 per group), got {ids}")
    full = np.array([g[2] for g in FGPR_GROUPS], np.float64)
    share = full / full.sum() * ids  # 358 ids: exactly 200 / 45 / 113
    sizes = np.floor(share).astype(np.int64)
    order = np.argsort(-(share - np.floor(share)), kind="stable")
    sizes[order[:ids - int(sizes.sum())]] += 1
    while sizes.min() < 2:  # tiny datasets: the largest group gives ids to the smallest
        sizes[int(np.argmax(sizes))] -= 1
        sizes[int(np.argmin(sizes))] += 1
    return {g[0]: int(n) for g, n in zip(FGPR_GROUPS, sizes)}


def fgpr_test_counts(sizes: Dict[str, int]) -> Dict[str, int]:
    """Test ids per group and split: the real protocol's fractions (60/200, 10/45, 30/113, so
    exactly 60 / 10 / 30 for the full 358 ids), rounded, kept in ``[1, size - 1]``."""
    out = {}
    for name, _, full, test in FGPR_GROUPS:
        n = sizes[name]
        out[name] = int(min(max(int(round(n * test / full)), 1), n - 1))
    return out


def fgpr_splits(pids_of: Dict[str, Sequence[int]], seed: int, n_splits: int = FGPR_SPLITS) -> List[dict]:
    """``n_splits`` random train / test splits stratified by group (:func:`fgpr_test_counts`)."""
    counts = fgpr_test_counts({g: len(p) for g, p in pids_of.items()})
    splits = []
    for s in range(n_splits):
        train, test = [], []
        for gi, (name, _, _, _) in enumerate(FGPR_GROUPS):
            pids = list(pids_of[name])
            perm = rng_for(seed, KIND_SPLIT, _LAYOUT_CODE["fgpr"], s, gi).permutation(len(pids))
            test += [int(pids[i]) for i in perm[:counts[name]]]
            train += [int(pids[i]) for i in perm[counts[name]:]]
        splits.append({"train": sorted(train), "test": sorted(test)})
    return splits


def _fgpr(a: LayoutArgs, out: str, workers: int) -> dict:
    """``<group>/cam<c>/<pid4>/<frame5>.jpg`` (one sequence per id per camera, pids unique
    over the groups), ``splits_fgpr.json``; ``appearance='per_group'``: see identity.py."""
    code = _LAYOUT_CODE["fgpr"]
    sizes = fgpr_group_sizes(a.ids)
    tracks, groups, pids_of = [], {}, {}
    pid = 0
    for gi, (name, cams, _, _) in enumerate(FGPR_GROUPS):
        uniform = UNIFORM_NAMES.index(name)
        template = group_template(uniform, a.seed)
        pids_of[name] = []
        for _ in range(sizes[name]):
            pid += 1
            ident = make_identity(pid, uniform, a.seed)
            if a.appearance == "per_group":
                ident = gait_only(template, ident)
            groups[pid] = name
            pids_of[name].append(pid)
            r = rng_for(a.seed, KIND_LAYOUT, code, pid)
            for cam in cams:
                n = int(r.integers(a.min_len, a.max_len + 1))
                rel = [f"{name}/cam{cam + 1}/{pid:04d}/{f:05d}.jpg" for f in range(1, n + 1)]
                tracks.append(_spec(a, out, ident, cam, rel, (pid, cam, 1)))
    kps = _render_all(tracks, a, workers)
    splits = fgpr_splits(pids_of, a.seed)
    _write_json(osp.join(out, "splits_fgpr.json"), splits)
    _write_side_files(out, tracks, kps, groups)
    return {"ids_per_group": sizes, "test_ids_per_group": fgpr_test_counts(sizes),
            "test_ids_per_split": len(splits[0]["test"]), "train_ids_per_split": len(splits[0]["train"]),
            "tracklets": len(tracks), "frames": sum(len(t.rel) for t in tracks), "groups": _group_counts(groups),
            "appearance": a.appearance}


_WRITERS: Dict[str, Callable[[LayoutArgs, str, int], dict]] = {
    "mars": _mars, "ilidsvid": _ilidsvid, "prid2011": _prid2011, "market1501": _market1501, "cuhk01": _cuhk01,
    "fgpr": _fgpr, "vehicleid": _vehicleid,
}


def write_layout(a: LayoutArgs, out: str, workers: int) -> dict:
    """Write layout ``a.layout`` into ``out`` (which must be empty of its owned paths)."""
    return _WRITERS[a.layout](a, out, workers)


def limits(layout: str) -> Tuple[int, int]:
    return _LIMITS[layout]


def check_cameras(layout: str, cameras: Optional[int]) -> int:
    default, (lo, hi) = DEFAULT_CAMERAS[layout]
    c = default if cameras is None else int(cameras)
    if not lo <= c <= hi:
        raise ValueError(f"layout {layout!r} supports {lo}..{hi} cameras, got {c}")
    return c
