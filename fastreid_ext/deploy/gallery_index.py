"""A persistent gallery index: a faiss index + the names / first frames of its items + the
config hash of the model whose embeddings it holds.

On disk (a folder)::

    <dir>/index-<sha>.faiss  the CPU faiss index (faiss.serialize_index), named by its content hash
    <dir>/meta.json          {"format", "kind", "metric", "dim", "params", "config_hash", "recall",
                              "index_file", "index_sha256", "names", "first_frames", "sources"}
    <dir>.lock               the folder's lock (``flock``)

:meth:`GalleryIndex.save` writes the new index file under a new name first, then replaces
``meta.json`` (one ``os.replace``: the commit point), then deletes the index files no longer
named; a crash at any point leaves ``meta.json`` naming a complete index file that matches its
names. :meth:`GalleryIndex.load` checks the index file's SHA-256 (a truncated or altered file
is a clear error naming it, not a faiss traceback). Writers hold the folder's lock exclusively
(:meth:`GalleryIndex.add_to_folder` for the whole load-add-save cycle, so two concurrent
``build_index --add`` both land), readers hold it shared. A folder written before
(``index.faiss``, no hash) is still read. The index is built with
:func:`fastreid_ext.evaluation.faiss_search.build_index`: ``kind`` is a shorthand (``flat``:
exact, ``ivf``: IVF-Flat, ``hnsw``: HNSW-Flat) or any faiss factory string (``"IVF4096,Flat"``,
``"IVF16384_HNSW32,PQ32x8,Refine(Flat)"``); an approximate index's recall@10 against exact
search, measured at build time on a sample of its items, is stored in ``meta.json``
(``recall``) and printed by :meth:`GalleryIndex.describe`. It is searched with the same distance
definition as the evaluator (cosine: ``1 - <q, g>`` of unit vectors; euclidean: ``|q - g|``).
Search runs on the GPU(s) when the installed faiss has GPUs and supports the structure (a copy
of the CPU index, sharded over several GPUs; HNSW stays on CPU), on the CPU otherwise; the
persisted index is always the CPU one. Several index folders (shards) are searched as one by
:class:`fastreid_ext.deploy.sharded_index.ShardedGallery`.

Incremental :meth:`GalleryIndex.add` appends items (an IVF index keeps the coarse quantizer it
was trained with at build time). An item whose name is already indexed is skipped and counted
when it is the same input (same source signature / first frame / embedding); a *different*
input under an indexed name raises :class:`NameConflict` unless ``on_existing="skip"``
(``build_index --add --skip-existing``) keeps the indexed one.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from fastreid_ext.evaluation import approximate_search, faiss_search, validation
from fastreid_ext.utils.safe_io import atomic_write, file_lock

from .features_file import FeaturesFile, check_hash

__all__ = ["INDEX_FORMAT", "INDEX_KINDS", "GalleryIndex", "NameConflict", "SearchResult"]

logger = logging.getLogger(__name__)

INDEX_FORMAT = "fastreid_ext.gallery_index/1"
INDEX_KINDS = faiss_search.APPROX_KINDS  # shorthands; any faiss factory string is accepted too
_INDEX_FILE = "index.faiss"  # the name used before index files were named by their hash
_META_FILE = "meta.json"
_DEFAULT_PARAMS = dict(nlist=1024, nprobe=32, hnsw_m=32, ef_construction=80, ef_search=128, k_factor=0,
                       train_size=0, seed=0)


def _check_kind(kind) -> None:
    if not isinstance(kind, str) or not kind.strip():
        raise ValueError(f"index kind must be one of {INDEX_KINDS} or a faiss factory string, got {kind!r}")


def _faiss():
    faiss = faiss_search.import_faiss()
    if faiss is None:
        raise ImportError("the gallery index needs faiss (pip install faiss-cpu, or faiss-gpu)")
    return faiss


class NameConflict(ValueError):
    """Items to add carry names already in the index but come from other inputs."""


class SearchResult(list):
    """Per query: a list of ``(gallery name, distance)`` pairs, best first; also
    ``distances`` ``(Q, k)`` and ``indices`` ``(Q, k)`` (positions in the index)."""

    def __init__(self, rows, distances: np.ndarray, indices: np.ndarray):
        super().__init__(rows)
        self.distances = distances
        self.indices = indices


class GalleryIndex:
    """Build with :meth:`build`, reload with :meth:`load`, extend with :meth:`add`, query with
    :meth:`search`, persist with :meth:`save`."""

    def __init__(self, index, kind: str, metric: str, dim: int, config_hash: str,
                 names: Sequence[str] = (), first_frames: Sequence[str] = (), params: Optional[Dict[str, Any]] = None,
                 sources: Sequence[str] = (), recall: Optional[Dict[str, Any]] = None):
        _check_kind(kind)
        if metric not in validation.METRICS:
            raise ValueError(f"unknown metric {metric!r}; expected one of {validation.METRICS}")
        self.index = index  # the CPU faiss index
        self.kind = kind
        self.metric = metric
        self.dim = int(dim)
        self.config_hash = config_hash
        self.names: List[str] = list(names)
        self.first_frames: List[str] = list(first_frames) or [""] * len(self.names)
        self.sources: List[str] = list(sources) or [""] * len(self.names)
        if len(self.first_frames) != len(self.names) or len(self.sources) != len(self.names):
            raise ValueError(f"{len(self.names)} names but {len(self.first_frames)} first frames and "
                             f"{len(self.sources)} sources")
        self.params = dict(_DEFAULT_PARAMS, **(params or {}))
        self.recall = recall  # {"k", "sample", "recall", "items"} measured at build time; None: exact
        self._name_set = set(self.names)
        self._search_index = None  # GPU copy, made on first search
        if index.ntotal != len(self.names):
            raise ValueError(f"index holds {index.ntotal} vectors but {len(self.names)} names")

    # ------------------------------------------------------------------ building
    @classmethod
    def build(cls, feats: FeaturesFile, kind: str = "flat", metric: Optional[str] = None, **params) -> "GalleryIndex":
        """Index every item of ``feats``. ``kind``: a shorthand or a faiss factory string.
        ``params``: ``nlist`` (``ivf``), ``hnsw_m`` (``hnsw``), ``train_size``, ``seed`` (training
        sample), ``ef_construction`` (HNSW build beam), the search-time defaults ``nprobe``,
        ``ef_search``, ``k_factor``, and ``recall_sample`` (gallery items whose recall@10 against
        exact search is measured and stored; 0: none); unknown names raise."""
        _check_kind(kind)
        recall_sample = int(params.pop("recall_sample", 1000))
        unknown = sorted(set(params) - set(_DEFAULT_PARAMS))
        if unknown:
            raise TypeError(f"unknown index parameters {unknown}; known: {sorted(_DEFAULT_PARAMS)}")
        if len(feats) == 0:
            raise ValueError("cannot build an index from an empty features file")
        metric = metric or feats.meta.get("metric", "cosine")
        p = dict(_DEFAULT_PARAMS, **params)
        if kind == "ivf" and p["nlist"] > len(feats):
            raise ValueError(f"IVF needs at least nlist={p['nlist']} gallery items to train its "
                             f"cells, got {len(feats)}; lower --nlist")
        index = faiss_search.build_index(feats.embeddings, kind=kind, metric=metric, use_gpu=False, **p)
        recall = None
        if kind != "flat" and recall_sample > 0:
            recall = approximate_search.index_recall(index, feats.embeddings, metric, k=10, sample=recall_sample,
                                               seed=p["seed"])
        logger.info("built a %s index (%s) of %d items, dim %d%s", kind, metric, len(feats), feats.dim,
                    _recall_text(recall))
        return cls(index, kind, metric, feats.dim, feats.config_hash, feats.names, feats.first_frames, p,
                   feats.sources, recall)

    def _same_input(self, pos: int, feats: FeaturesFile, i: int) -> bool:
        """Is item ``i`` of ``feats`` the input already indexed at position ``pos``? By source
        signature when both are known, else by first frame, else by the stored vector."""
        if self.sources[pos] and feats.sources[i]:
            return self.sources[pos] == feats.sources[i]
        if self.first_frames[pos] and feats.first_frames[i]:
            return os.path.abspath(self.first_frames[pos]) == os.path.abspath(feats.first_frames[i])
        if not faiss_search.is_exact_storage(self.kind):  # compressed codes: no exact vector to compare
            return True
        try:
            stored = self.index.reconstruct(int(pos))
        except Exception:  # an index without reconstruction (IVF without direct map): trust the name
            return True
        new = faiss_search.to_faiss_array(torch.from_numpy(feats.embeddings[i:i + 1]), self.metric)[0]
        return bool(np.allclose(stored, new, atol=1e-4))

    def add(self, feats: FeaturesFile, on_existing: str = "error") -> int:
        """Append the items of ``feats`` not yet indexed (by name); returns how many were added.
        ``feats`` must come from the same model (config hash), have the index's dimension and
        finite values. Items already indexed from the same input are skipped and counted; a
        different input under an indexed name raises :class:`NameConflict` (``on_existing=
        "error"``) or keeps the indexed item (``"skip"``). Nothing is added when it raises."""
        if on_existing not in ("error", "skip"):
            raise ValueError(f"on_existing must be 'error' or 'skip', got {on_existing!r}")
        check_hash(feats.config_hash, self.config_hash, "the features to add", f"the index ({self.describe()})")
        self._check_dim(feats.dim, "features to add")
        bad_rows = np.flatnonzero(~np.isfinite(feats.embeddings).all(axis=1))
        if bad_rows.size:
            raise ValueError(f"the features to add have non-finite values (NaN / inf) in {bad_rows.size} row(s), "
                             f"items {[feats.names[i] for i in bad_rows[:5]]}{' ...' if bad_rows.size > 5 else ''}; "
                             f"nothing was added")
        pos = {n: j for j, n in enumerate(self.names)}
        keep, same, conflicts = [], 0, []
        for i, n in enumerate(feats.names):
            if n not in pos:
                keep.append(i)
            elif self._same_input(pos[n], feats, i):
                same += 1
            else:
                conflicts.append(n)
        if conflicts and on_existing == "error":
            raise NameConflict(
                f"{len(conflicts)} item(s) to add have names already in the index but come from other "
                f"inputs (another folder, or files changed since): {conflicts[:5]}"
                f"{' ...' if len(conflicts) > 5 else ''}; nothing was added. Rename them, build a new index, "
                f"or pass --skip-existing to keep the indexed items.")
        if same:
            logger.info("%d of %d items are already in the index and were skipped", same, len(feats))
        if conflicts:
            logger.warning("%d item(s) with names already in the index but other inputs were skipped "
                           "(--skip-existing): %s", len(conflicts), conflicts[:5])
        if not keep:
            return 0
        x = feats.embeddings[keep]
        self.index.add(faiss_search.to_faiss_array(torch.from_numpy(x), self.metric))
        for i in keep:
            self.names.append(feats.names[i])
            self.first_frames.append(feats.first_frames[i])
            self.sources.append(feats.sources[i])
            self._name_set.add(feats.names[i])
        self._search_index = None
        return len(keep)

    @classmethod
    def add_to_folder(cls, folder: str, features: Sequence[FeaturesFile],
                      on_existing: str = "error") -> Tuple["GalleryIndex", int]:
        """Load the index in ``folder``, add ``features``, save it, all under the folder's lock
        (concurrent callers run one after the other; none loses the other's items). Nothing is
        written when any of them raises. Returns ``(index, items added)``."""
        with file_lock(folder):
            index = cls.load(folder)
            added = sum(index.add(f, on_existing=on_existing) for f in features)
            if added:
                index.save(folder)
            return index, added

    # ------------------------------------------------------------------ search
    def __len__(self) -> int:
        return len(self.names)

    def _check_dim(self, dim: int, what: str) -> None:
        if dim != self.dim:
            raise ValueError(f"{what} have dimension {dim}, but the index holds {self.dim}-dimensional "
                             f"embeddings (made by the model with config hash {self.config_hash})")

    def _searcher(self, use_gpu: Optional[bool]):
        ngpus = faiss_search.faiss_num_gpus()
        want = ngpus > 0 if use_gpu is None else use_gpu
        spec = faiss_search.index_spec(self.kind, self.params["nlist"], self.params["hnsw_m"])
        if not want or "HNSW" in spec or ngpus == 0:
            return self.index
        if self._search_index is None:
            try:
                self._search_index = faiss_search.faiss_to_gpu(self.index, ngpus)
            except RuntimeError as e:  # pragma: no cover - GPU only: a structure faiss-GPU lacks
                logger.warning("faiss cannot search %r on the GPU (%s); searching on the CPU", self.kind,
                               str(e).strip().splitlines()[0])
                self._search_index = self.index
        return self._search_index

    def search(self, query: np.ndarray, k: int = 10, use_gpu: Optional[bool] = None,
               nprobe: Optional[int] = None, ef_search: Optional[int] = None,
               k_factor: Optional[int] = None) -> SearchResult:
        """Top-``k`` gallery items of each query row ``(Q, D)`` (fewer when the index is
        smaller). ``use_gpu=None``: GPU when faiss has GPUs. ``nprobe`` / ``ef_search`` /
        ``k_factor``: search-time parameters (default: the index's; one the index has not
        raises). Wrong dimensions and non-finite queries raise ``ValueError``."""
        q = np.asarray(query, dtype=np.float32)
        if q.ndim == 1:
            q = q[None]
        if q.ndim != 2:
            raise ValueError(f"query must be (Q, D), got shape {q.shape}")
        self._check_dim(q.shape[1], "query features")
        if len(self) == 0:
            raise ValueError("the index is empty")
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        k = min(k, len(self))
        qt, _ = validation.validate_features(torch.from_numpy(q), torch.zeros(1, self.dim))
        ivf = faiss_search.ivf_of(self.index)  # also inside Refine(...) / pre-transforms
        probes = nprobe if nprobe is not None else (int(ivf.nprobe) if ivf is not None else 0)
        if k > faiss_search.GPU_MAX_K or probes > faiss_search.GPU_MAX_K:
            index = self.index  # faiss GPU indexes refuse k / nprobe > GPU_MAX_K: the CPU index
        else:
            index = self._searcher(use_gpu)
        self._set_runtime(nprobe, ef_search, k_factor)
        scores, ind = index.search(faiss_search.to_faiss_array(qt, self.metric), k)
        dist = faiss_search.faiss_scores_to_distance(scores, self.metric, self.index).astype(np.float32)
        rows = [[(self.names[j], float(d)) for j, d in zip(r_i, r_d) if j >= 0] for r_i, r_d in zip(ind, dist)]
        return SearchResult(rows, dist, ind)

    def _set_runtime(self, nprobe: Optional[int], ef_search: Optional[int], k_factor: Optional[int]) -> None:
        """The index's defaults (where they apply), then the parameters asked (strict)."""
        faiss = _faiss()
        p = self.params
        faiss_search.set_search_params(self.index, strict=False, nprobe=p["nprobe"], ef_search=p["ef_search"],
                                       k_factor=p.get("k_factor", 0))
        faiss_search.set_search_params(self.index, nprobe=nprobe, ef_search=ef_search, k_factor=k_factor)
        ivf = faiss_search.ivf_of(self.index)
        if ivf is not None and self._search_index is not None and self._search_index is not self.index:
            # errors raised: a GPU copy left at another nprobe would be silent
            faiss.GpuParameterSpace().set_index_parameter(self._search_index, "nprobe", ivf.nprobe)

    # ------------------------------------------------------------------ persistence
    def save(self, folder: str) -> str:
        """Write the index file and ``meta.json`` into ``folder`` (created), as one commit (see
        the module docstring), under the folder's lock."""
        faiss = _faiss()
        os.makedirs(folder, exist_ok=True)
        data = faiss.serialize_index(self.index).tobytes()  # numpy uint8 buffer -> bytes
        digest = hashlib.sha256(data).hexdigest()
        index_file = f"index-{digest[:16]}.faiss"
        meta = {"format": INDEX_FORMAT, "kind": self.kind, "metric": self.metric, "dim": self.dim,
                "config_hash": self.config_hash, "params": self.params, "count": len(self), "recall": self.recall,
                "index_file": index_file, "index_sha256": digest,
                "names": self.names, "first_frames": self.first_frames, "sources": self.sources}
        with file_lock(folder):
            atomic_write(os.path.join(folder, index_file), lambda f: f.write(data))
            atomic_write(os.path.join(folder, _META_FILE), lambda f: json.dump(meta, f), mode="w")  # commit
            for name in os.listdir(folder):  # index files of earlier saves
                if name != index_file and name.endswith(".faiss") and name.startswith("index"):
                    os.remove(os.path.join(folder, name))
        return folder

    @classmethod
    def load(cls, folder: str, expected_hash: Optional[str] = None) -> "GalleryIndex":
        """Read an index folder written by :meth:`save`; with ``expected_hash`` refuse one made by
        another model (``ConfigHashMismatch``)."""
        faiss = _faiss()
        mpath = os.path.join(folder, _META_FILE)
        if not os.path.isfile(mpath):
            raise FileNotFoundError(f"{folder!r} is not a gallery index folder: {mpath!r} is missing")
        with file_lock(folder, shared=True):
            try:
                with open(mpath) as f:
                    meta = json.load(f)
            except ValueError as e:
                raise ValueError(f"{mpath!r} is damaged (not JSON): {e}") from None
            if meta.get("format") != INDEX_FORMAT:
                raise ValueError(f"{mpath!r} has format {meta.get('format')!r}, expected {INDEX_FORMAT!r}")
            ipath = os.path.join(folder, meta.get("index_file", _INDEX_FILE))
            if not os.path.isfile(ipath):
                raise FileNotFoundError(f"{folder!r} is not a gallery index folder: {ipath!r} is missing")
            with open(ipath, "rb") as f:
                data = f.read()
        want = meta.get("index_sha256")
        if want is not None and hashlib.sha256(data).hexdigest() != want:
            raise ValueError(f"index file {ipath!r} is damaged (truncated or modified: its SHA-256 differs from "
                             f"the one in {mpath!r}); rebuild the index with build_index.py")
        try:
            index = faiss.deserialize_index(np.frombuffer(data, dtype=np.uint8))
        except Exception as e:  # faiss RuntimeError with a C++ trace
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ValueError(f"index file {ipath!r} cannot be read by faiss (truncated or not an index): "
                             f"{first}") from None
        if expected_hash is not None:
            check_hash(meta["config_hash"], expected_hash, f"gallery index {folder!r}")
        gi = cls(index, meta["kind"], meta["metric"], meta["dim"], meta["config_hash"],
                 meta["names"], meta.get("first_frames", []), meta.get("params"), meta.get("sources", []),
                 meta.get("recall"))
        return gi

    def describe(self) -> str:
        return (f"{self.kind} index ({self.metric}) of {len(self)} items, dim {self.dim}, "
                f"config hash {self.config_hash}{_recall_text(self.recall)}")


def _recall_text(recall: Optional[Dict[str, Any]]) -> str:
    if not recall:
        return ""
    return (f", recall@{recall['k']} {recall['recall']:.4f} vs exact ({recall['sample']} sampled items, "
            f"measured at {recall['items']} items)")

