"""A gallery split into N independent index shards, searched as one.

Each shard is an ordinary :class:`~fastreid_ext.deploy.gallery_index.GalleryIndex` folder, built
by its own process (or machine, on a shared filesystem): ``build_index.py --shard I/N`` keeps
the items whose name hashes to shard ``I`` (:func:`shard_of`, CRC-32 of the name modulo ``N``,
so ``--add`` of later items lands on the same shard as a rebuild would put them). A search asks
every shard for its top-``k`` (in threads: faiss releases the GIL) and merges them
(:func:`merge_topk`): for exact (flat) shards the merged list is the top-``k`` of the union,
the result of one index over all items; approximate shards keep their own recall (each trains
its own IVF cells / codebooks on its items).

Layout: shards are folders ``<dir>/shard-<I>-of-<N>`` (any folder names work when listed
explicitly); :meth:`ShardedGallery.load` takes a list of shard folders or one folder holding
``shard-*`` sub-folders.
"""
from __future__ import annotations

import glob
import os
import zlib
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import List, Optional, Sequence, Tuple

import numpy as np

from .features_file import FeaturesFile
from .gallery_index import GalleryIndex, SearchResult

__all__ = ["ShardedGallery", "shard_of", "shard_folder", "shard_features", "parse_shard", "merge_topk"]


def shard_of(name: str, num_shards: int) -> int:
    """The shard of item ``name``: CRC-32 of its UTF-8 bytes modulo ``num_shards`` (stable across
    processes and machines, unlike Python's salted ``hash``)."""
    return zlib.crc32(name.encode("utf-8")) % int(num_shards)


def shard_folder(root: str, i: int, n: int) -> str:
    """``<root>/shard-<i>-of-<n>`` (zero-padded so that folders sort in shard order)."""
    w = len(str(n - 1))
    return os.path.join(root, f"shard-{i:0{w}d}-of-{n}")


def parse_shard(text: str) -> Tuple[int, int]:
    """``"I/N"`` -> ``(I, N)`` with ``0 <= I < N``; anything else raises ``ValueError``."""
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise ValueError(f"--shard must be I/N (e.g. 0/4), got {text!r}") from None
    if not (n >= 1 and 0 <= i < n):
        raise ValueError(f"--shard {text!r}: need N >= 1 and 0 <= I < N")
    return i, n


def shard_features(feats: FeaturesFile, i: int, n: int) -> FeaturesFile:
    """The items of ``feats`` that belong to shard ``i`` of ``n`` (:func:`shard_of`)."""
    keep = [j for j, name in enumerate(feats.names) if shard_of(name, n) == i]
    return FeaturesFile(feats.embeddings[keep], [feats.names[j] for j in keep], feats.config_hash,
                        [feats.first_frames[j] for j in keep], feats.meta, [feats.sources[j] for j in keep])


def merge_topk(dists: Sequence[np.ndarray], ids: Sequence[np.ndarray], k: int) -> Tuple[np.ndarray, np.ndarray]:
    """Merge per-shard top-k lists: ``dists[s]`` / ``ids[s]`` ``(Q, k_s)``, ids already global
    (-1: no result). Returns ``(Q, k)`` distances and ids, ascending; equal distances keep shard
    order then rank order (a stable sort); missing results are ``(inf, -1)`` at the end."""
    d = np.concatenate([np.asarray(x, np.float64) for x in dists], axis=1)
    i = np.concatenate([np.asarray(x, np.int64) for x in ids], axis=1)
    d = np.where(i < 0, np.inf, d)
    order = np.argsort(d, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(d, order, 1), np.take_along_axis(i, order, 1)


class ShardedGallery:
    """N :class:`GalleryIndex` shards of one model's embeddings searched as one gallery; item
    ``j`` of shard ``s`` has global position ``offset[s] + j`` (shards in the given order)."""

    def __init__(self, shards: Sequence[GalleryIndex], paths: Sequence[str] = ()):
        if not shards:
            raise ValueError("a sharded gallery needs at least one shard")
        self.shards: List[GalleryIndex] = list(shards)
        self.paths = list(paths) or [f"shard {s}" for s in range(len(shards))]
        first = self.shards[0]
        for s, p in zip(self.shards[1:], self.paths[1:]):
            for attr in ("config_hash", "metric", "dim"):
                if getattr(s, attr) != getattr(first, attr):
                    raise ValueError(f"shard {p!r} has {attr} {getattr(s, attr)!r} but shard {self.paths[0]!r} has "
                                     f"{getattr(first, attr)!r}: shards must hold one model's embeddings")
        self.offsets = np.cumsum([0] + [len(s) for s in self.shards])
        self.names = [n for s in self.shards for n in s.names]
        self.first_frames = [f for s in self.shards for f in s.first_frames]
        if len(set(self.names)) != len(self.names):
            dup = [n for n, c in Counter(self.names).items() if c > 1]
            raise ValueError(f"{len(dup)} item name(s) are in more than one shard: {dup[:5]}; build the shards "
                             f"from disjoint items (build_index.py --shard I/N)")
        self.config_hash, self.metric, self.dim = first.config_hash, first.metric, first.dim

    @classmethod
    def load(cls, paths: Sequence[str], expected_hash: Optional[str] = None) -> "ShardedGallery":
        """Shards from folders: each path a gallery index folder, or a folder holding ``shard-*``
        index folders (all of them, in name order)."""
        folders = []
        for p in paths:
            if os.path.isfile(os.path.join(p, "meta.json")):
                folders.append(p)
                continue
            subs = sorted(d for d in glob.glob(os.path.join(p, "shard-*")) if os.path.isdir(d))
            if not subs:
                raise FileNotFoundError(f"{p!r} is neither a gallery index folder (no meta.json) nor a folder of "
                                        f"shard-* index folders")
            folders.extend(subs)
        return cls([GalleryIndex.load(f, expected_hash) for f in folders], folders)

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def describe(self) -> str:
        kinds = sorted({s.kind for s in self.shards})
        return (f"{len(self.shards)} shards ({', '.join(kinds)}; {self.metric}) of {len(self)} items, dim {self.dim}, "
                f"config hash {self.config_hash}")

    def search(self, query: np.ndarray, k: int = 10, use_gpu: Optional[bool] = None, threads: int = 0,
               **search_params) -> SearchResult:
        """Top-``k`` over all shards (:meth:`GalleryIndex.search` on each, merged by
        :func:`merge_topk`); ``threads``: shards searched at once (0: all). ``search_params``:
        ``nprobe``, ``ef_search``, ``k_factor`` for every shard."""
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        k = min(k, len(self))

        def one(s: int):
            res = self.shards[s].search(query, min(k, len(self.shards[s])), use_gpu=use_gpu, **search_params)
            ids = np.where(res.indices >= 0, res.indices + self.offsets[s], -1)
            return res.distances, ids

        workers = len(self.shards) if threads <= 0 else threads
        if workers == 1 or len(self.shards) == 1:
            parts = [one(s) for s in range(len(self.shards))]
        else:
            with ThreadPoolExecutor(max_workers=workers) as pool:
                parts = list(pool.map(one, range(len(self.shards))))
        dist, ind = merge_topk([p[0] for p in parts], [p[1] for p in parts], k)
        rows = [[(self.names[j], float(d)) for j, d in zip(r_i, r_d) if j >= 0] for r_i, r_d in zip(ind, dist)]
        return SearchResult(rows, dist.astype(np.float32), ind)
