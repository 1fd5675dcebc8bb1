"""Images / tracklets on disk -> embeddings, exactly as the evaluator computes them.

Each item is cut into the evaluator's dense test clips
(:func:`~fastreid_ext.data.clip_sampler.dense_clips` with ``TEST.VIDEO.SEQ_LEN`` /
``TEST.VIDEO.MAX_CLIPS``), each clip goes through the test transform
(:func:`~fastreid_ext.data.transforms.build_clip_transforms`), and the clips become an item's
embedding by the evaluation's own path (:mod:`fastreid_ext.evaluation.embedding`: the model in
eval mode, flip-averaged with ``TEST.FLIP``, clip embeddings averaged in float64,
L2-normalised for the cosine metric).

Bad input: an item none of whose frames can be read is skipped, logged by name and listed in
the result (``failed``) and in the file's ``meta["failed"]``; unreadable frames of an otherwise
readable tracklet are replaced by a neighbouring frame (:mod:`fastreid_ext.data.frame_io`) and
counted (``skipped_frames``).

Resumable: :meth:`FeatureExtractor.extract` writes the output file every ``flush_every``
finished items (and when interrupted, even by ``KeyboardInterrupt``); a new run on the same
output loads it, refuses it when its config hash differs, and embeds only the missing items.
An item counts as done only when its name *and* its source signature (absolute frame paths,
sizes, modification times: :func:`~.features_file.source_signature`) match; an item from
another folder with the same name, or whose frames changed, is embedded again (counted and
logged). One extraction at a time writes an output file (a second one gets a clear error).
"""
from __future__ import annotations

import logging
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from fastreid_ext.data.frame_io import FrameReadError
from fastreid_ext.data.transforms import build_clip_transforms
from fastreid_ext.data.video_dataset import VideoTestDataset, collate_video_batch
from fastreid_ext.evaluation.embedding import (
    clip_embeddings,
    l2_normalized,
    model_inputs,
    tracklet_means,
    uses_l2,
)
from fastreid_ext.utils.safe_io import file_lock

from .features_file import (
    FeaturesFile,
    config_hash,
    embedding_settings,
    load_features,
    save_features,
    source_signature,
)
from .inputs import InputItem, input_record

__all__ = ["ExtractionResult", "FeatureExtractor", "build_extraction_model"]

logger = logging.getLogger(__name__)


class _SafeClipDataset(VideoTestDataset):
    """Dense test clips of the items; a clip of an unreadable item becomes a failure marker
    instead of an exception, so one bad item does not stop the run."""

    def __getitem__(self, index: int) -> dict:
        try:
            return super().__getitem__(index)
        except FrameReadError:
            k = self.clips[index][0]
            paths = self.items[k][0]
            what = f"cannot read image {paths[0]}" if len(paths) == 1 else \
                f"none of its {len(paths)} frames can be read (first: {paths[0]})"
            return {"failed": k, "error": what}


def _collate(batch: List[dict]) -> dict:
    good = [b for b in batch if "failed" not in b]
    out = collate_video_batch(good) if good else {}
    out["failures"] = [(b["failed"], b["error"]) for b in batch if "failed" in b]
    return out


@dataclass
class ExtractionResult:
    """What one :meth:`FeatureExtractor.extract` call did."""

    path: str
    features: FeaturesFile
    num_new: int  # items embedded by this call
    num_resumed: int  # items found already done in the output file
    num_stale: int = 0  # items of the output file re-embedded because their source changed
    failed: List[Tuple[str, str]] = field(default_factory=list)  # (name, reason)
    skipped_frames: int = 0  # frame reads replaced by a neighbouring frame
    clips_computed: int = 0


def build_extraction_model(cfg, weights: str) -> nn.Module:
    """The model of ``cfg`` with ``weights`` loaded, in eval mode
    (:func:`fastreid_ext.engine.build_inference_model`).

    A missing weights file raises ``FileNotFoundError`` (the host's checkpointer would only log
    and keep random weights)."""
    from fastreid_ext.engine import build_inference_model

    if not weights or not os.path.isfile(weights):
        raise FileNotFoundError(f"weights file {weights!r} does not exist")
    return build_inference_model(cfg, weights)[0]


def data_parallel_runner(model: nn.Module, device: torch.device) -> nn.Module:
    """``model`` itself, or ``nn.DataParallel`` over every visible GPU when it is on a GPU and
    there are several. The model's own GPU comes first in ``device_ids`` and is the output
    device: ``DataParallel``'s defaults (``device_ids[0] = 0``) refuse a model on ``cuda:k``."""
    n = torch.cuda.device_count() if device.type == "cuda" else 0
    if n <= 1:
        return model
    own = device.index if device.index is not None else torch.cuda.current_device()
    ids = [own] + [i for i in range(n) if i != own]
    return nn.DataParallel(model, device_ids=ids, output_device=own)


class FeatureExtractor:
    """Embeds :class:`~fastreid_ext.deploy.inputs.InputItem` s with a trained model.

    Args:
        cfg: the full config (``build_config``).
        model: the meta-architecture, weights loaded (eval forward: batch dict -> ``(B, D)``).
        chash: the :func:`~fastreid_ext.deploy.features_file.config_hash` written to files.
        weights: the weights path (recorded in the files' metadata).
    """

    def __init__(self, cfg, model: nn.Module, chash: str, weights: str = ""):
        self.cfg = cfg
        self.model = model.eval()
        self.config_hash = chash
        self.weights = weights
        self.metric = cfg.TEST.METRIC
        self.device = next(iter(model.parameters())).device
        self._runner: nn.Module = data_parallel_runner(model, self.device)

    @classmethod
    def from_files(cls, config_file: str, weights: str, opts: Sequence[str] = ()) -> "FeatureExtractor":
        """Config file + ``KEY VALUE`` overrides + weights file -> extractor."""
        from fastreid_ext.config import build_config
        from fastreid_ext.engine import build_inference_model

        if not weights or not os.path.isfile(weights):
            raise FileNotFoundError(f"weights file {weights!r} does not exist")
        model, cfg = build_inference_model(build_config(config_file, opts), weights)
        chash = config_hash(cfg, weights)  # the classifier's size and the weights' path are not hashed
        return cls(cfg, model, chash, os.path.abspath(weights))

    # ------------------------------------------------------------------ core loop
    def _loader(self, items: Sequence[InputItem], batch_size: int, num_workers: int) -> DataLoader:
        ds = _SafeClipDataset(
            [(it.frames, 0, 0) for it in items], build_clip_transforms(self.cfg, is_train=False),
            self.cfg.TEST.VIDEO.SEQ_LEN, self.cfg.TEST.VIDEO.MAX_CLIPS, self.cfg.TEST.VIDEO.SHORT_PAD,
            self.cfg.TEST.VIDEO.CLIP_SELECT,
        )
        return DataLoader(ds, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                          collate_fn=_collate, pin_memory=self.device.type == "cuda",
                          persistent_workers=False)

    @torch.inference_mode()
    def _forward(self, images: torch.Tensor) -> torch.Tensor:
        """``(B, T, C, H, W)`` clips -> ``(B, D)`` float64 CPU embeddings (flip-averaged when
        ``TEST.FLIP.ENABLED``, as the evaluator)."""
        out = clip_embeddings(self._runner, model_inputs({"images": images}, self.device,
                                                         flip=self.cfg.TEST.FLIP.ENABLED))
        if out.dim() != 2 or out.shape[0] != images.shape[0]:
            raise ValueError(f"the model's eval forward must return (B, D), got {tuple(out.shape)}")
        return out.detach().to("cpu", torch.float64)

    def _finish(self, sums: torch.Tensor, count: int) -> np.ndarray:
        """One item's ``(D,)`` embedding from its float64 clip sum and clip count."""
        feat = tracklet_means(sums.unsqueeze(0), torch.tensor([count]))[0]
        return l2_normalized(feat, uses_l2(self.metric)).numpy()

    def iter_embeddings(self, items: Sequence[InputItem], batch_size: Optional[int] = None,
                        num_workers: Optional[int] = None, progress: bool = False, stats: Optional[dict] = None):
        """Yield ``(item_index, embedding (D,) or None, error or None)`` as each item finishes,
        in item order. ``stats`` (a dict) receives ``clips`` and ``skipped_frames`` counts."""
        stats = stats if stats is not None else {}
        stats.setdefault("clips", 0)
        stats.setdefault("skipped_frames", 0)
        if not items:
            return
        bs = batch_size or self.cfg.TEST.IMS_PER_BATCH
        nw = self.cfg.DATALOADER.NUM_WORKERS_TEST if num_workers is None else num_workers
        loader = self._loader(items, bs, nw)
        ds: _SafeClipDataset = loader.dataset
        expected = np.bincount(ds.track_idx, minlength=len(items))  # clips per item
        seen = np.zeros(len(items), dtype=np.int64)
        sums: Dict[int, torch.Tensor] = {}
        errors: Dict[int, str] = {}
        next_out = 0
        bar = tqdm(total=len(items), disable=not progress, desc="extract", unit="item", dynamic_ncols=True)
        try:
            for batch in loader:
                for k, err in batch["failures"]:
                    errors.setdefault(k, err)
                    seen[k] += 1
                if "images" in batch:
                    emb = self._forward(batch["images"])  # (B, D)
                    stats["clips"] += emb.shape[0]
                    stats["skipped_frames"] += int(batch["skipped_frames"].sum())
                    for j, k in enumerate(batch["track_idx"].tolist()):
                        sums[k] = sums[k] + emb[j] if k in sums else emb[j].clone()
                        seen[k] += 1
                while next_out < len(items) and seen[next_out] == expected[next_out]:
                    k = next_out
                    next_out += 1
                    bar.update(1)
                    if k in errors:
                        yield k, None, errors.pop(k)
                        sums.pop(k, None)
                    else:
                        yield k, self._finish(sums.pop(k), int(expected[k])), None
        finally:
            bar.close()

    # ------------------------------------------------------------------ in memory
    def embed_images(self, images: Sequence, normalize: bool = True) -> np.ndarray:
        """One embedding per image: ``(N, D)`` float32. Images are file paths, RGB ``uint8``
        ``(H, W, 3)`` arrays, PIL images or tensors (:mod:`.in_memory`); each is embedded as a
        1-frame tracklet, exactly as :meth:`embed` embeds an image file. ``normalize``: L2-normalised
        rows (the cosine metric's features; the evaluator of a ``euclidean`` config uses them raw)."""
        from .in_memory import as_frame

        if not isinstance(images, (list, tuple)):
            raise ValueError(f"embed_images takes a list of images, got a {type(images).__name__} "
                             f"(wrap one image in a list)")
        return self._embed_frames([[as_frame(x)] for x in images], normalize)

    def embed_tracklets(self, tracklets: Sequence, normalize: bool = True) -> np.ndarray:
        """One embedding per tracklet: ``(N, D)`` float32. A tracklet is a list of images, a folder
        of frames, a ``(T, H, W, 3)`` array or a ``(T, 3, H, W)`` tensor (:mod:`.in_memory`);
        the model's test-time settings apply (dense clips of ``TEST.VIDEO.SEQ_LEN`` frames, at
        most ``TEST.VIDEO.MAX_CLIPS``, ``INPUT.SIZE_TEST``, ``TEST.FLIP``, clip embeddings averaged)."""
        from .in_memory import as_tracklet

        if not isinstance(tracklets, (list, tuple)):
            raise ValueError(f"embed_tracklets takes a list of tracklets, got a {type(tracklets).__name__}")
        return self._embed_frames([as_tracklet(t) for t in tracklets], normalize)

    def _embed_frames(self, tracklets: List[List[np.ndarray]], normalize: bool) -> np.ndarray:
        """The evaluator's dense clips of each tracklet (decoded frames), batched through
        :meth:`_forward`; clip embeddings averaged in float64 per tracklet."""
        from fastreid_ext.data.clip_sampler import dense_clips

        transform = build_clip_transforms(self.cfg, is_train=False)
        T, max_clips = self.cfg.TEST.VIDEO.SEQ_LEN, self.cfg.TEST.VIDEO.MAX_CLIPS
        clips = [(k, idx) for k, frames in enumerate(tracklets) for idx in dense_clips(len(frames), T, max_clips)]
        sums = torch.zeros(len(tracklets), 0, dtype=torch.float64)
        counts = torch.zeros(len(tracklets), dtype=torch.long)
        bs = max(1, int(self.cfg.TEST.IMS_PER_BATCH))
        for start in range(0, len(clips), bs):
            chunk = clips[start:start + bs]
            images = torch.stack([transform([tracklets[k][j] for j in idx])[0] for k, idx in chunk])
            emb = self._forward(images)  # (B, D) float64
            if sums.shape[1] == 0:
                sums = torch.zeros(len(tracklets), emb.shape[1], dtype=torch.float64)
            owners = torch.tensor([k for k, _ in chunk])
            sums.index_add_(0, owners, emb)
            counts.index_add_(0, owners, torch.ones(len(chunk), dtype=torch.long))
        return l2_normalized(tracklet_means(sums, counts), normalize).numpy()

    # ------------------------------------------------------------------ public API
    def _meta(self) -> dict:
        return {"metric": self.metric, "weights": self.weights,
                "settings": embedding_settings(self.cfg)}

    def embed(self, items: Sequence[InputItem], progress: bool = False) -> Tuple[FeaturesFile, List[Tuple[str, str]]]:
        """Embed ``items`` in memory: ``(features of the readable items, [(name, reason)] of the
        unreadable ones)``."""
        emb, names, first, failed = [], [], [], []
        for k, vec, err in self.iter_embeddings(items, progress=progress):
            if vec is None:
                logger.warning("skipping unreadable item %r: %s", items[k].name, err)
                failed.append((items[k].name, err))
            else:
                emb.append(vec)
                names.append(items[k].name)
                first.append(items[k].frames[0])
        dim = emb[0].shape[0] if emb else 0
        feats = FeaturesFile(np.stack(emb) if emb else np.zeros((0, dim), np.float32), names,
                             self.config_hash, first, self._meta())
        return feats, failed

    def extract(self, items: Sequence[InputItem], output: str, resume: bool = True,
                flush_every: int = 256, flush_seconds: float = 60.0,
                progress: Optional[bool] = None, batch_size: Optional[int] = None,
                num_workers: Optional[int] = None, input_spec: Optional[str] = None) -> ExtractionResult:
        """Embed ``items`` into the features file ``output`` (``.npz``).

        With ``resume`` and an existing ``output``: the file must carry this extractor's
        config hash (``ConfigHashMismatch`` otherwise) and only the items not in it with the
        same source signature are embedded (items that failed before, or whose frames are
        other files or changed since, are embedded again). The file is rewritten atomically
        every ``flush_every`` finished items or ``flush_seconds`` seconds, at the end, and when
        the run is interrupted. The output's lock is held throughout: a second extraction into
        the same file raises :class:`~fastreid_ext.utils.safe_io.LockBusy`.

        The file records its input (``meta["input"]``, :func:`~.inputs.input_record` of ``items``
        and ``input_spec``, the list file / folder given); resuming a file made from another
        input (another root folder or list file, or holding items this input lacks) raises
        ``ValueError`` instead of mixing the two. An ``output`` that is a folder raises
        ``ValueError``. A run that embeds nothing (interrupted before its first item, or no
        item readable) writes no file.
        """
        if os.path.isdir(output) or os.path.isdir(output + ".npz"):
            raise ValueError(f"--output {output!r} is a folder; name the features file, e.g. "
                             f"{os.path.join(output, 'features.npz')!r}")
        if not output.endswith(".npz"):
            output += ".npz"
        with file_lock(output, blocking=False, what=f"features file {output}"):
            return self._extract_locked(items, output, resume, flush_every, flush_seconds, progress,
                                        batch_size, num_workers, input_record(items, input_spec))

    @staticmethod
    def _check_same_input(old: FeaturesFile, output: str, record: dict, names: set) -> None:
        """Refuse to resume ``old`` (the file in ``output``) with another input than its own."""
        was = old.meta.get("input") or {}
        other = [n for n in old.names if n not in names]
        moved = was and (was.get("root") != record["root"] or was.get("list", "") != record["list"])
        if moved or other:
            where = (f"input {was.get('list') or was.get('root')!r}" if was else "another input")
            raise ValueError(
                f"features file {output!r} holds the features of {where} ({len(old)} items"
                f"{f', e.g. {other[0]!r} not in this input' if other else ''}), not of this run's input "
                f"{record['list'] or record['root']!r}: resuming would mix them. Use another --output, or "
                f"--no-resume to replace it")

    def _extract_locked(self, items, output, resume, flush_every, flush_seconds, progress, batch_size,
                        num_workers, record) -> ExtractionResult:
        progress = sys.stderr.isatty() if progress is None else progress
        emb: List[np.ndarray] = []
        names: List[str] = []
        first: List[str] = []
        sources: List[str] = []
        signature = {it.name: source_signature(it.frames) for it in items}
        num_stale = 0
        if resume and os.path.exists(output):
            old = load_features(output, expected_hash=self.config_hash)
            self._check_same_input(old, output, record, set(signature))
            stale = [n for n, src in zip(old.names, old.sources) if n in signature and src != signature[n]]
            keep = [i for i, n in enumerate(old.names) if not (n in signature and old.sources[i] != signature[n])]
            emb = [old.embeddings[i] for i in keep]
            names = [old.names[i] for i in keep]
            first = [old.first_frames[i] for i in keep]
            sources = [old.sources[i] for i in keep]
            num_stale = len(stale)
            logger.info("resuming %s: %d items already extracted", output, len(names))
            if stale:
                logger.warning("%d item(s) of %s were made from other files (another folder with the same "
                               "names, or frames changed since) and are extracted again: %s%s", len(stale),
                               output, stale[:5], " ..." if len(stale) > 5 else "")
        elif os.path.exists(output):
            logger.info("overwriting %s (resume off)", output)
        done = set(names)
        num_resumed = sum(1 for it in items if it.name in done)
        todo = [it for it in items if it.name not in done]
        failed: List[Tuple[str, str]] = []
        stats: dict = {}

        def flush() -> None:
            meta = self._meta()
            meta["failed"] = [n for n, _ in failed]
            meta["input"] = record
            dim = emb[0].shape[0] if emb else 0
            arr = np.stack(emb) if emb else np.zeros((0, dim), np.float32)
            save_features(output, FeaturesFile(arr, names, self.config_hash, first, meta, sources))

        logger.info("extracting %d items (%d already done) into %s", len(todo), num_resumed, output)
        pending, last = 0, time.monotonic()
        try:
            for k, vec, err in self.iter_embeddings(todo, batch_size, num_workers, progress, stats):
                it = todo[k]
                if vec is None:
                    logger.warning("skipping unreadable item %r: %s", it.name, err)
                    failed.append((it.name, err))
                    continue
                emb.append(vec)
                names.append(it.name)
                first.append(it.frames[0])
                sources.append(signature[it.name])
                pending += 1
                if pending >= flush_every or time.monotonic() - last >= flush_seconds:
                    flush()
                    pending, last = 0, time.monotonic()
        finally:
            # also on KeyboardInterrupt / errors: keep what was finished; no file without an item
            if emb and (pending or not os.path.exists(output) or failed or num_stale):
                flush()
        if not emb:
            raise ValueError(f"no item of the input could be embedded ({len(failed)} unreadable: "
                             f"{', '.join(n for n, _ in failed[:5])}{' ...' if len(failed) > 5 else ''}); "
                             f"{output!r} not written")
        if failed:
            logger.warning("%d of %d items could not be read and were skipped: %s", len(failed), len(todo),
                           ", ".join(n for n, _ in failed[:10]) + (" ..." if len(failed) > 10 else ""))
        if stats.get("skipped_frames"):
            logger.warning("%d unreadable frames were replaced by a neighbouring frame", stats["skipped_frames"])
        feats = load_features(output, expected_hash=self.config_hash)
        return ExtractionResult(output, feats, len(todo) - len(failed), num_resumed, num_stale, failed,
                                stats.get("skipped_frames", 0), stats.get("clips", 0))
