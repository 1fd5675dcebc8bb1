"""Torch datasets over tracklets: random train clips, dense test clips.

Items are :class:`~.items.Item` ``(frame_paths, pid, camid, extras)``
(``docs/architecture.md``, "Datasets"). Host image datasets give ``(img_path, pid, camid)``:
a ``str`` path is wrapped to the 1-frame tracklet ``Item((img_path,), pid, camid, {})``; asking for
``T > 1`` frames of it repeats the frame ``T`` times (decoded once), ``T = 1`` gives a plain
image clip.

Keypoints: when ``extras["keypoints"]`` names a JSON file, it is read once per process. Format:
an object mapping each frame path *relative to the JSON's folder* (``/`` separators) to its 17
COCO joints, either ``[[x, y, v], ...]`` or the flat COCO list ``[x0, y0, v0, x1, ...]``, in
pixels of the original frame (optionally nested under a top-level ``"frames"`` key). A frame
missing from the file gets all-zero joints (``v = 0``). The item's ``keypoints`` are
``(T, 17, 3)`` float32 with ``x, y`` in ``[0, 1]`` of the output frame
(:func:`~fastreid_ext.data.transforms.transform_keypoints`).
"""
from __future__ import annotations

import json
import os
from typing import Callable, Dict, List, Sequence, Tuple

import numpy as np
import torch
from torch.utils.data import Dataset

from fastreid_ext.utils.keypoints import NUM_JOINTS

from .clip_sampler import dense_clips
from .frame_io import load_clip
from .items import Item, RelabelledItems, as_item
from .transforms import ClipParams, transform_keypoints

_KEYPOINT_FILES: Dict[str, Dict[str, np.ndarray]] = {}  # per-process cache: json path -> rel path -> (17, 3)


def as_tracklet(item: Sequence) -> Item:
    """``(img_path, pid, camid[, extras])`` -> ``Item((img_path,), pid, camid, extras)``; a
    tracklet item becomes an :class:`~.items.Item` with ``paths`` a tuple. The input is not
    modified."""
    item = as_item(item)
    paths = (item.paths,) if isinstance(item.paths, str) else tuple(item.paths)
    if not paths:
        raise ValueError(f"tracklet without frames: pid {item.pid!r}, camid {item.camid!r}")
    return item._replace(paths=paths)


def _load_keypoint_file(json_path: str) -> Dict[str, np.ndarray]:
    table = _KEYPOINT_FILES.get(json_path)
    if table is None:
        try:
            with open(json_path, encoding="utf-8") as f:
                raw = json.load(f)
        except (ValueError, UnicodeDecodeError) as e:  # truncated / not JSON / not UTF-8
            raise ValueError(f"keypoint file {json_path!r} is not valid JSON (truncated?): "
                             f"{type(e).__name__}: {e}") from None
        if isinstance(raw, dict) and isinstance(raw.get("frames"), dict):
            raw = raw["frames"]
        if not isinstance(raw, dict):
            raise ValueError(f"keypoint file {json_path!r}: expected an object frame -> joints")
        table = {}
        for rel, joints in raw.items():
            arr = np.asarray(joints, dtype=np.float32).reshape(-1)
            if arr.size != NUM_JOINTS * 3:
                raise ValueError(
                    f"keypoint file {json_path!r}: frame {rel!r} has {arr.size} values, expected {NUM_JOINTS * 3}"
                )
            table[rel.replace(os.sep, "/")] = arr.reshape(NUM_JOINTS, 3)
        _KEYPOINT_FILES[json_path] = table
    return table


def clip_keypoints(json_path: str, frame_paths: Sequence[str], params: ClipParams) -> torch.Tensor:
    """``(T, 17, 3)`` keypoints of the clip frames ``frame_paths``, in ``[0, 1]`` of the output."""
    table = _load_keypoint_file(json_path)
    root = os.path.dirname(os.path.abspath(json_path))
    raw = np.zeros((len(frame_paths), NUM_JOINTS, 3), dtype=np.float32)
    for t, p in enumerate(frame_paths):
        rel = os.path.relpath(os.path.abspath(p), root).replace(os.sep, "/")
        joints = table.get(rel)
        if joints is not None:
            raw[t] = joints
    return torch.from_numpy(transform_keypoints(raw, params))


def _tracklet_name(item: Item) -> str:
    return f"pid={item.pid} camid={item.camid} ({os.path.dirname(item.paths[0]) or item.paths[0]})"


def worker_rng() -> np.random.Generator:
    """A numpy generator seeded from torch's RNG (call it in ``__getitem__``)."""
    # torch's RNG is seeded per DataLoader worker; a numpy generator made in __init__ would
    # be copied into every worker and repeat the same draws there.
    return np.random.default_rng(int(torch.randint(0, 2**62, ()).item()))


def load_item(item: Item, indices: Sequence[int], transform, rng: np.random.Generator) -> dict:
    """Frames ``indices`` of a tracklet item through ``transform``: ``images`` (T, C, H, W),
    ``erased`` (T,), ``img_paths``, ``skipped_frames`` and ``keypoints`` (T, 17, 3) when the
    item's extras name a keypoint file."""
    paths = item.paths
    frames, used, skipped = load_clip(paths, indices, _tracklet_name(item))
    images, params = transform(frames, rng)
    out = {
        "images": images,  # (T, C, H, W)
        "erased": torch.from_numpy(params.erased),  # (T,)
        "img_paths": paths[0],
        "skipped_frames": skipped,
    }
    kp = item.extras.get("keypoints")
    if kp:
        out["keypoints"] = clip_keypoints(kp, [paths[j] for j in used], params)
    return out


class VideoTrainDataset(RelabelledItems, Dataset):
    """Random clips of train tracklets, pids / camids relabelled like the host's ``CommDataset``.

    Args:
        items: tracklet or image items (see the module docstring); not modified.
        transform: ``transform(frames, rng) -> (clip (T, C, H, W), ClipParams)``.
        sampler_fn: ``sampler_fn(n, T, rng) -> T indices`` (:mod:`.clip_sampler`).
        seq_len: ``T``.
        relabel: map pids / camids to ``0..N-1`` in sorted order (``pid_dict`` / ``cam_dict``).
    """

    def __init__(self, items: Sequence, transform: Callable, sampler_fn: Callable, seq_len: int, relabel: bool = True):
        if seq_len < 1:
            raise ValueError(f"seq_len must be >= 1, got {seq_len}")
        self.items: List[Item] = [as_tracklet(i) for i in items]
        self.transform = transform
        self.sampler_fn = sampler_fn
        self.seq_len = int(seq_len)
        self._set_labels(relabel)

    @property
    def img_items(self) -> List[Item]:
        """Host name of the item list (samplers read ``img_items``)."""
        return self.items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict:
        item = self.items[index]
        rng = worker_rng()
        indices = self.sampler_fn(len(item.paths), self.seq_len, rng)
        out = load_item(item, indices, self.transform, rng)
        out.update(self.labels(item))
        return out


class VideoTestDataset(Dataset):
    """One entry per dense clip (:func:`~fastreid_ext.data.clip_sampler.dense_clips`) of each
    tracklet; ``track_idx`` is the tracklet's index in ``items`` (``query + gallery``), pids /
    camids are raw. A tracklet never loads more than ``seq_len`` frames at a time.
    """

    def __init__(self, items: Sequence, transform: Callable, seq_len: int, max_clips: int = 0, pad: str = "cycle",
                 select: str = "spread"):
        self.items: List[Item] = [as_tracklet(i) for i in items]
        self.transform = transform
        self.seq_len = int(seq_len)
        self.max_clips = int(max_clips)
        self.pad = pad
        self.select = select
        self.clips: List[Tuple[int, List[int]]] = [
            (k, clip) for k, item in enumerate(self.items)
            for clip in dense_clips(len(item.paths), self.seq_len, self.max_clips, pad, select)
        ]
        self.track_idx = np.array([k for k, _ in self.clips], dtype=np.int64)  # (num_clips,)

    def frames_seen(self) -> np.ndarray:
        """``(num_tracklets,)`` distinct frames of each tracklet that its clips contain (the
        tracklet's length unless ``max_clips`` dropped clips)."""
        seen = [set() for _ in self.items]
        for k, clip in self.clips:
            seen[k].update(clip)
        return np.array([len(s) for s in seen], dtype=np.int64)

    def frame_counts(self) -> np.ndarray:
        """``(num_tracklets,)`` frames of each tracklet."""
        return np.array([len(item.paths) for item in self.items], dtype=np.int64)

    @property
    def num_tracklets(self) -> int:
        return len(self.items)

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, index: int) -> dict:
        k, indices = self.clips[index]
        item = self.items[k]
        out = load_item(item, indices, self.transform, None)
        out["targets"] = item.pid
        out["camids"] = item.camid
        out["track_idx"] = k
        return out


def collate_video_batch(batch: List[dict]) -> dict:
    """Stack items into the batch dict of ``docs/architecture.md`` ("Batches"):
    ``images`` (B, T, C, H, W) in the transform's dtype (uint8 train clips, float32 test clips), ``targets`` / ``camids`` / ``track_idx`` /
    ``skipped_frames`` (B,) int64, ``erased`` (B, T) bool, ``keypoints`` (B, T, 17, 3) (items
    without keypoints get zeros, i.e. ``v = 0``, when others have them), ``img_paths`` list."""
    T = batch[0]["images"].shape[0] if batch else 0
    out = collate_samples(batch, keypoints_shape=(T, NUM_JOINTS, 3))
    out["erased"] = torch.stack([b["erased"] for b in batch])
    out["skipped_frames"] = torch.tensor([b["skipped_frames"] for b in batch], dtype=torch.int64)
    return out


def collate_samples(batch: List[dict], keypoints_shape: Tuple[int, ...]) -> dict:
    """What every batch stacks (:func:`collate_video_batch`, ``image_dataset.collate_image_batch``):
    ``images``, ``targets`` / ``camids`` (B,) int64, ``img_paths`` list, ``track_idx`` (B,)
    int64 when the samples have it, ``keypoints`` when some sample has them (zeros of
    ``keypoints_shape``, i.e. ``v = 0``, for the others). An empty batch raises."""
    if not batch:
        raise ValueError("empty batch")
    out = {
        "images": stack_tensors([b["images"] for b in batch]),
        "targets": torch.tensor([b["targets"] for b in batch], dtype=torch.int64),
        "camids": torch.tensor([b["camids"] for b in batch], dtype=torch.int64),
        "img_paths": [b["img_paths"] for b in batch],
    }
    if "track_idx" in batch[0]:
        out["track_idx"] = torch.tensor([b["track_idx"] for b in batch], dtype=torch.int64)
    if any("keypoints" in b for b in batch):
        zero = torch.zeros(keypoints_shape)
        out["keypoints"] = stack_tensors([b.get("keypoints", zero) for b in batch])
    return out


def stack_tensors(tensors: List[torch.Tensor]) -> torch.Tensor:
    """``torch.stack`` through numpy: a single-threaded copy. ``torch.stack`` of a batch of
    clips in the main process (``num_workers == 0``) runs on the intra-op thread pool, which on
    a busy 2-core machine cost 30x more CPU (98 ms vs 3 ms for 16 x 8 x 3 x 128 x 64)."""
    arrays = [t.numpy() for t in tensors]
    out = torch.empty((len(arrays),) + arrays[0].shape, dtype=tensors[0].dtype)
    if torch.utils.data.get_worker_info() is not None:
        # in a DataLoader worker: write straight into shared memory, as torch's default_collate
        # does, instead of copying the batch there when it is sent to the main process
        out.share_memory_()
    np.stack(arrays, out=out.numpy())
    return out
