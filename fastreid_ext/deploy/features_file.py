"""Features files: embeddings + item names + the hash of the model that made them.

A features file is a plain ``.npz`` (``numpy.savez``, no pickles) holding:

- ``embeddings``: float32 ``(N, D)`` (one per item; L2-normalised when the metric is cosine,
  exactly as the evaluator's tracklet features);
- ``names``: unicode ``(N,)`` item names (unique);
- ``first_frames``: unicode ``(N,)`` path of each item's first frame (for pictures);
- ``config_hash``: the :func:`config_hash` of the model / input settings (a 0-d string);
- ``meta``: a 0-d JSON string (``metric``, ``dim``, the hashed settings, the weights file,
  ``failed``: items that could not be read, by name);
- ``sources`` (optional): unicode ``(N,)`` :func:`source_signature` of each item's frames
  (absolute paths, sizes, modification times), so that a resumed extraction or an index
  ``--add`` can tell a renamed or changed input from the one already embedded.

Writes are atomic (temporary file + ``os.replace``, ordinary permissions, see
:mod:`fastreid_ext.utils.safe_io`), so an interrupted extraction leaves either the previous
complete file or the new one: the resumable extractor relies on that.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from fastreid_ext.config.hash_exclusions import embedding_hash_exclusions
from fastreid_ext.utils.safe_io import atomic_write

__all__ = [
    "FEATURES_FORMAT",
    "ConfigHashMismatch",
    "FeaturesFile",
    "embedding_settings",
    "config_hash",
    "file_sha256",
    "source_signature",
    "save_features",
    "load_features",
    "check_hash",
]

FEATURES_FORMAT = "fastreid_ext.features/1"

# MODEL keys that do not change the embedding of an input (training-only or bookkeeping).
_MODEL_KEYS_IGNORED = ("DEVICE", "WEIGHTS", "PARTIAL_LOAD", "LOSSES", "FREEZE_LAYERS", "QUEUE_SIZE",
                       "DDP_FIND_UNUSED_PARAMETERS")
_BACKBONE_KEYS_IGNORED = ("PRETRAIN", "PRETRAIN_PATH")
_HEADS_KEYS_IGNORED = ("NUM_CLASSES", "SCALE", "MARGIN", "CLS_LAYER")


class ConfigHashMismatch(ValueError):
    """Features (or an index) made by another model / input setting than the one in use."""


def _plain(node: Any) -> Any:
    """A yacs ``CfgNode`` (or value) as plain JSON-able Python (tuples become lists)."""
    if isinstance(node, dict):
        return {str(k): _plain(v) for k, v in sorted(node.items())}
    if isinstance(node, (list, tuple)):
        return [_plain(v) for v in node]
    return node


def _pop_dotted(node: Dict[str, Any], parts: List[str]) -> None:
    """Remove ``node[parts[0]][parts[1]]...`` when present."""
    for part in parts[:-1]:
        node = node.get(part)
        if not isinstance(node, dict):
            return
    node.pop(parts[-1], None)


def embedding_settings(cfg) -> Dict[str, Any]:
    """The config parts that decide the embedding of an input: ``MODEL`` (without training /
    bookkeeping keys such as ``DEVICE``, ``WEIGHTS``, ``LOSSES``, ``HEADS.NUM_CLASSES``),
    ``INPUT.SIZE_TEST``, ``TEST.VIDEO`` (clip length, clips per tracklet), ``TEST.FLIP`` and
    ``TEST.METRIC`` (which decides the L2 normalisation)."""
    model = _plain(cfg.MODEL)
    for k in _MODEL_KEYS_IGNORED:
        model.pop(k, None)
    for k in _BACKBONE_KEYS_IGNORED:
        model.get("BACKBONE", {}).pop(k, None)
    for k in _HEADS_KEYS_IGNORED:
        model.get("HEADS", {}).pop(k, None)
    # keys the projects declared (e.g. a training stage's starting weights: the weights file
    # decides the embedding), see fastreid_ext.config.hash_exclusions
    for key in embedding_hash_exclusions():
        _pop_dotted(model, key.split(".")[1:])
    return {
        "MODEL": model,
        "INPUT.SIZE_TEST": _plain(cfg.INPUT.SIZE_TEST),
        # FRAME_CHUNK only splits the backbone calls (memory), not the embedding
        "TEST.VIDEO": {k: v for k, v in _plain(cfg.TEST.VIDEO).items() if k != "FRAME_CHUNK"},
        "TEST.FLIP.ENABLED": bool(cfg.TEST.FLIP.ENABLED),
        "TEST.METRIC": cfg.TEST.METRIC,
    }


def file_sha256(path: str, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's content (read in 1 MiB chunks)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def config_hash(cfg, weights: Optional[str] = None) -> str:
    """16-hex-digit SHA-256 of :func:`embedding_settings` (canonical JSON) and, when given, the
    weights file's content hash. Stable across processes, key order and devices."""
    payload = {"settings": embedding_settings(cfg)}
    if weights:
        payload["weights_sha256"] = file_sha256(weights)
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def source_signature(frames: Sequence[str]) -> str:
    """16-hex-digit SHA-256 of an item's frames as found on disk: absolute path, size and
    modification time (ns) of each, in order (a missing frame counts as such). Another folder
    with the same item names, or a frame rewritten since, gives another signature."""
    h = hashlib.sha256()
    for p in frames:
        ap = os.path.abspath(p)
        try:
            st = os.stat(ap)
            h.update(f"{ap}\0{st.st_size}\0{st.st_mtime_ns}\n".encode("utf-8", "surrogateescape"))
        except OSError:
            h.update(f"{ap}\0missing\n".encode("utf-8", "surrogateescape"))
    return h.hexdigest()[:16]


def check_hash(found: str, expected: str, what: str, against: str = "the model / config in use") -> None:
    """Raise :class:`ConfigHashMismatch` naming both hashes when they differ: ``what`` (hash
    ``found``) does not match ``against`` (hash ``expected``), e.g. the query model against a
    gallery index."""
    if found != expected:
        raise ConfigHashMismatch(
            f"{what} has config hash {found}, but {against} has config hash {expected}: the "
            f"embeddings come from different models (weights or config keys MODEL.*, INPUT.SIZE_TEST, "
            f"TEST.VIDEO, TEST.FLIP, TEST.METRIC differ) and cannot be compared. Use the same "
            f"--config-file and --weights for both."
        )


@dataclass
class FeaturesFile:
    """Embeddings ``(N, D)`` of named items and the hash of the model that made them."""

    embeddings: np.ndarray
    names: List[str]
    config_hash: str
    first_frames: List[str] = field(default_factory=list)
    meta: Dict[str, Any] = field(default_factory=dict)
    sources: List[str] = field(default_factory=list)  # source_signature per item ("" = unknown)

    def __post_init__(self):
        emb = np.asarray(self.embeddings, dtype=np.float32)
        if emb.ndim != 2:
            raise ValueError(f"embeddings must be (N, D), got shape {emb.shape}")
        self.embeddings = emb
        self.names = [str(n) for n in self.names]
        if len(self.names) != emb.shape[0]:
            raise ValueError(f"{len(self.names)} names for {emb.shape[0]} embeddings")
        if len(set(self.names)) != len(self.names):
            dup = sorted({n for n in self.names if self.names.count(n) > 1})[:5]
            raise ValueError(f"duplicate item names in features: {dup}")
        if not self.first_frames:
            self.first_frames = [""] * len(self.names)
        self.first_frames = [str(p) for p in self.first_frames]
        if len(self.first_frames) != len(self.names):
            raise ValueError(f"{len(self.first_frames)} first_frames for {len(self.names)} names")
        self.sources = [str(x) for x in self.sources] or [""] * len(self.names)
        if len(self.sources) != len(self.names):
            raise ValueError(f"{len(self.sources)} sources for {len(self.names)} names")

    @property
    def dim(self) -> int:
        return int(self.embeddings.shape[1])

    def __len__(self) -> int:
        return len(self.names)


def _str_array(values: Sequence[str]) -> np.ndarray:
    return np.array(list(values), dtype=np.str_) if len(values) else np.zeros((0,), dtype="<U1")


def save_features(path: str, feats: FeaturesFile) -> str:
    """Write ``feats`` to ``path`` (``.npz`` appended when missing) atomically; returns the path."""
    if not path.endswith(".npz"):
        path = path + ".npz"
    meta = dict(feats.meta)
    meta.update(format=FEATURES_FORMAT, dim=feats.dim, count=len(feats))
    arrays = dict(
        embeddings=np.ascontiguousarray(feats.embeddings, dtype=np.float32),
        names=_str_array(feats.names),
        first_frames=_str_array(feats.first_frames),
        config_hash=np.array(feats.config_hash),
        meta=np.array(json.dumps(meta, sort_keys=True)),
    )
    if any(feats.sources):
        arrays["sources"] = _str_array(feats.sources)
    atomic_write(path, lambda f: np.savez(f, **arrays))
    return path


def load_features(path: str, expected_hash: Optional[str] = None) -> FeaturesFile:
    """Read a features file; with ``expected_hash``, refuse (``ConfigHashMismatch``) one made by
    another model. A missing or malformed file raises with its name."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"features file {path!r} does not exist")
    try:
        with np.load(path, allow_pickle=False) as z:
            missing = [k for k in ("embeddings", "names", "config_hash", "meta") if k not in z.files]
            if missing:
                raise ValueError(f"{path!r} is not a features file: missing {missing}")
            emb = z["embeddings"]
            names = z["names"].tolist()
            first = z["first_frames"].tolist() if "first_frames" in z.files else []
            sources = z["sources"].tolist() if "sources" in z.files else []
            chash = str(z["config_hash"])
            meta = json.loads(str(z["meta"]))
    except Exception as e:  # OSError, zipfile.BadZipFile, pickled data, JSON errors: not our file
        msg = str(e) if path in str(e) else f"cannot read features file {path!r}: {e}"
        raise ValueError(msg) from None
    if meta.get("format") != FEATURES_FORMAT:
        raise ValueError(f"{path!r} has format {meta.get('format')!r}, expected {FEATURES_FORMAT!r}")
    feats = FeaturesFile(emb, names, chash, first, meta, sources)
    if expected_hash is not None:
        check_hash(chash, expected_hash, f"features file {path!r}")
    return feats
