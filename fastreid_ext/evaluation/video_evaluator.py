"""``VideoClipEvaluator``: the host ``DatasetEvaluator`` for clip-level (video) and image ReID.

The test loader yields clips; each clip carries ``track_idx``, the index of its tracklet in
``query + gallery``. The evaluator keeps per-tracklet running *sums* of the clip embeddings
(memory ``num_tracklets x D``, not ``num_clips x D``), at most ``TEST.VIDEO.MAX_CLIPS`` clips
per tracklet (per process), and at ``evaluate()``:

1. gathers the sums and counts of every process (``fastreid.utils.comm.gather``) on the main
   one (other processes return ``{}``, like the host's ``ReidEvaluator``);
2. averages the clips of each tracklet;
3. optional alpha-weighted query expansion (``TEST.AQE``) of those raw means, as the host
   expands the raw embeddings (``fastreid/evaluation/reid_evaluation.py:87-92``), then
   L2-normalises when ``TEST.METRIC == "cosine"``, then optional k-reciprocal re-ranking
   (``TEST.RERANK``), both memory-bounded by ``TEST.RETRIEVAL.MEMORY_MB``;
4. the metrics under ``protocol`` straight from the features in memory-bounded blocks
   (:func:`.metrics_from_features.evaluate_features`), or, when re-ranking or pictures need the
   whole ``(Q, G)`` matrix, from that matrix (:func:`.distance.pairwise_distance`) with
   :func:`.rank.evaluate_rank`;
5. returns the host's result dict (percentages): ``Rank-1/5/10/20``, ``mAP``, ``mINP``,
   ``metric = (mAP + Rank-1) / 2`` (host ``reid_evaluation.py``), plus
   ``num_skipped_queries``; with ``TEST.RETRIEVAL.INDEX`` the recall@10 of the approximate
   index against the exact search is reported next to them; with ``TEST.ROC`` the host's
   ``TPR@FPR=1e-04/1e-03/1e-02`` (:mod:`.roc`). ``host_keys=True`` (image datasets) gives
   exactly the host ``ReidEvaluator``'s keys: ``Rank-1/5/10``, ``mAP``, ``mINP``, ``metric``
   (+ the ROC keys; + the plugin's approximate-search recall when ``TEST.RETRIEVAL.INDEX`` asks);
6. optional rank-list PNGs (``TEST.VIS``) into ``output_dir``.

Images are the same thing with one clip per item (``track_idx`` = the item's index).

Protocol ``fgpr`` and a model's per-part distances take another path
(:func:`.two_direction.evaluate_tracklets`) without steps 3, 6, ROC and approximate search;
asking for those there raises ``ValueError`` early (:func:`check_two_direction_options`).
"""
from __future__ import annotations

import copy
import logging
import os
from collections import OrderedDict
from typing import Optional, Sequence

import numpy as np
import torch

from fastreid.evaluation.evaluator import DatasetEvaluator
from fastreid.utils import comm

from .approximate_search import ApproximateSearch, retrieval_index
from .distance import pairwise_distance
from .embedding import l2_normalized, tracklet_means, uses_l2
from .metrics_from_features import evaluate_features
from .query_expansion import average_query_expansion
from .rank import evaluate_rank
from .rerank import k_reciprocal_rerank
from .retrieval import search
from .validation import validate_features

__all__ = ["VideoClipEvaluator", "check_two_direction_options"]

logger = logging.getLogger(__name__)

RANKS = (1, 5, 10, 20)
#: bound on one message of the evaluation's gather (float32 rows of the tracklet sums)
GATHER_CHUNK_BYTES = 64 << 20


def check_two_direction_options(cfg, protocol: str, distance_parts=None) -> None:
    """Raise ``ValueError`` when ``cfg`` asks for an evaluation option that protocol ``fgpr``
    or a model's per-part distances (``distance_parts``) would not apply.

    That evaluation (:func:`.two_direction.evaluate_tracklets`) computes its own whole
    ``(Q, G)`` distance matrix (summed per-part Euclidean distances, two directions per group)
    and has no query expansion (``TEST.AQE.ENABLED``), re-ranking (``TEST.RERANK.ENABLED``),
    ROC (``TEST.ROC.ENABLED``), approximate search (``TEST.RETRIEVAL.INDEX``) nor rank-list
    pictures (``TEST.VIS.ENABLED``); summed per-part distances are Euclidean, so
    ``distance_parts`` also needs ``TEST.METRIC euclidean``. No-op for any other protocol
    without ``distance_parts``.
    """
    if not distance_parts and protocol != "fgpr":
        return
    why = " and ".join(w for w, on in (("TEST.PROTOCOL 'fgpr'", protocol == "fgpr"),
                                       (f"the model's per-part distances (distance_parts={tuple(distance_parts or ())})",
                                        bool(distance_parts))) if on)
    t = cfg.TEST
    unsupported = [f"{key}={value!r}" for key, value in (
        ("TEST.AQE.ENABLED", t.AQE.ENABLED), ("TEST.RERANK.ENABLED", t.RERANK.ENABLED),
        ("TEST.ROC.ENABLED", t.ROC.ENABLED), ("TEST.RETRIEVAL.INDEX", t.RETRIEVAL.INDEX),
        ("TEST.RETRIEVAL.APPROX", t.RETRIEVAL.APPROX),
        ("TEST.VIS.ENABLED", t.VIS.ENABLED)) if value]
    errors = []
    if unsupported:
        errors.append(f"{', '.join(unsupported)}: not supported with {why}; that evaluation "
                      "(evaluation/two_direction.py) applies no query expansion, re-ranking, ROC, "
                      "approximate search or rank-list pictures. Turn them off (False / '').")
    if distance_parts and t.METRIC != "euclidean":
        errors.append(f"TEST.METRIC={t.METRIC!r}: the model's per-part distances "
                      f"(distance_parts={tuple(distance_parts)}) are summed Euclidean distances; "
                      "set TEST.METRIC euclidean.")
    if errors:
        raise ValueError("bad test settings for this evaluation:\n  " + "\n  ".join(errors))


class VideoClipEvaluator(DatasetEvaluator):
    """Args:
        cfg: the config (``TEST.METRIC``, ``TEST.AQE``, ``TEST.RERANK``, ``TEST.RETRIEVAL``,
            ``TEST.VIDEO.MAX_CLIPS``, ``TEST.VIS``, ``MODEL.DEVICE``).
        num_query: the first ``num_query`` tracklets are queries, the rest the gallery.
        num_tracklets: ``len(query) + len(gallery)``.
        pids, camids: ``(num_tracklets,)`` ints.
        groups: ``(num_tracklets,)`` group labels for the ``groupwise`` protocol.
        protocol: passed to :func:`.rank.evaluate_rank`.
        output_dir: where rank-list PNGs go (``TEST.VIS.ENABLED``).
        items: the dataset items ``(frame_paths, pid, camid[, extras])`` in the same order
            (needed only for the pictures).
        host_keys: return exactly the host ``ReidEvaluator``'s result keys (image datasets).

    Protocol ``fgpr`` (FGPR's two cases, gallery / probe swapped, all-group and per-group) and
    a model's ``distance_parts`` (set by ``Trainer``: per-part embedding sizes, the
    distance then being the sum of the parts' Euclidean distances) are evaluated by
    :func:`.two_direction.evaluate_tracklets` on the whole ``(Q, G)`` matrix, which applies
    none of ``TEST.AQE``, ``TEST.RERANK``, ``TEST.ROC``, ``TEST.RETRIEVAL.INDEX``,
    ``TEST.VIS``: those (and ``TEST.METRIC cosine`` with ``distance_parts``) raise
    ``ValueError`` when the evaluator is built (``fgpr``) or ``distance_parts`` is set
    (:func:`check_two_direction_options`).
    """

    distance_weights = None  # one weight per part (default 1)
    scoring = None  # how this evaluator scores (.scoring.describe_scoring), set by the trainer

    def __init__(
        self,
        cfg,
        num_query: int,
        num_tracklets: int,
        pids: Sequence[int],
        camids: Sequence[int],
        groups: Optional[Sequence] = None,
        protocol: str = "cross_camera",
        output_dir: Optional[str] = None,
        items: Optional[Sequence] = None,
        host_keys: bool = False,
    ):
        self.cfg = cfg
        self._host_keys = bool(host_keys)
        self._num_query = int(num_query)
        self._num_tracklets = int(num_tracklets)
        self._pids = np.asarray(pids)
        self._camids = np.asarray(camids)
        self._groups = None if groups is None else np.asarray(groups)
        for name, arr in (("pids", self._pids), ("camids", self._camids), ("groups", self._groups)):
            if arr is not None and arr.shape != (self._num_tracklets,):
                raise ValueError(f"{name} must have shape ({self._num_tracklets},), got {arr.shape}")
        if not 0 < self._num_query < self._num_tracklets:
            raise ValueError(
                f"Need at least one query and one gallery tracklet: num_query={num_query}, "
                f"num_tracklets={num_tracklets}"
            )
        if protocol in ("groupwise", "fgpr") and self._groups is None:
            raise ValueError(f"protocol {protocol!r} needs groups")
        if items is not None and len(items) != self._num_tracklets:
            raise ValueError(f"items has {len(items)} entries, expected {self._num_tracklets}")
        check_two_direction_options(cfg, protocol)
        self._protocol = protocol
        self._distance_parts = None
        self._output_dir = output_dir
        self._items = items
        self._max_clips = int(cfg.TEST.VIDEO.MAX_CLIPS)
        self.reset()

    @property
    def distance_parts(self):
        """e.g. ``(D_global, D_motion, ...)``: the distance is the sum of the parts' Euclidean
        distances; ``None`` (default): the plain ``TEST.METRIC`` distance. Setting it checks the
        config (:func:`check_two_direction_options`)."""
        return self._distance_parts

    @distance_parts.setter
    def distance_parts(self, parts) -> None:
        check_two_direction_options(self.cfg, self._protocol, parts)
        self._distance_parts = parts

    # ------------------------------------------------------------------ accumulation
    def reset(self) -> None:
        self._sums: Optional[torch.Tensor] = None  # (num_tracklets, D) float64
        self._counts = torch.zeros(self._num_tracklets, dtype=torch.long)
        self._dropped = 0
        self._merged = None  # (sums, counts, dropped) of every process, once gathered

    def process(self, inputs, outputs) -> None:
        """``inputs["track_idx"]``: ``(B,)``; ``outputs``: ``(B, D)`` clip embeddings."""
        if "track_idx" not in inputs:
            raise KeyError("VideoClipEvaluator needs inputs['track_idx'] (the tracklet of each clip)")
        idx = torch.as_tensor(inputs["track_idx"]).to("cpu", torch.long).view(-1)
        feats = outputs.detach().to("cpu", torch.float64)
        if feats.dim() != 2 or feats.shape[0] != idx.numel():
            raise ValueError(f"outputs must be (B, D) with B = {idx.numel()}, got {tuple(feats.shape)}")
        if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= self._num_tracklets):
            raise ValueError(f"track_idx out of range [0, {self._num_tracklets}): {idx.tolist()}")
        if self._sums is None:
            self._sums = torch.zeros(self._num_tracklets, feats.shape[1], dtype=torch.float64)
        # clips beyond MAX_CLIPS of their tracklet (in arrival order) are dropped
        keep = torch.ones(idx.numel(), dtype=torch.bool)
        if self._max_clips > 0:
            for j, t in enumerate(idx.tolist()):
                if self._counts[t] >= self._max_clips:
                    keep[j] = False
                else:
                    self._counts[t] += 1
            self._dropped += int((~keep).sum())
        else:
            self._counts.index_add_(0, idx, torch.ones_like(idx))
        self._sums.index_add_(0, idx[keep], feats[keep])

    # ------------------------------------------------------------------ evaluation
    def _gathered(self):
        if comm.get_world_size() > 1:
            return self._gather_to_main()
        if self._sums is None:
            raise RuntimeError("VideoClipEvaluator received no clip; was process() called?")
        return self._sums, self._counts, self._dropped

    def _gather_to_main(self):
        """Every process's sums added into the main one's, in chunks of at most
        ``GATHER_CHUNK_BYTES``: each process sends the float32 rows of the tracklets it saw
        (not a dense float64 ``N x D`` per process); the main process adds them into its own
        float64 sums in place. Returns ``(sums, counts, dropped)`` on the main process, ``None``
        on the others."""
        if self._merged is not None:  # already gathered since the last reset(): every process knows
            return self._merged if comm.is_main_process() else None
        comm.synchronize()
        meta = comm.gather((self._counts, self._dropped), dst=0)
        dims = comm.all_gather(0 if self._sums is None else self._sums.shape[1])
        dim = max(dims)
        if dim == 0:
            if comm.is_main_process():
                raise RuntimeError("VideoClipEvaluator received no clip on any process")
            return None
        main = comm.is_main_process()
        if main and self._sums is None:
            self._sums = torch.zeros(self._num_tracklets, dim, dtype=torch.float64)
        elif main and self._sums.is_inference():  # made under inference_mode by process()
            self._sums = self._sums.clone()
        rows = max(1, GATHER_CHUNK_BYTES // (4 * dim))
        for start in range(0, self._num_tracklets, rows):
            payload = None
            if not main and self._sums is not None:
                seen = torch.nonzero(self._counts[start:start + rows] > 0).view(-1)
                payload = (seen + start, self._sums[start:start + rows][seen].float())
            parts = comm.gather(payload, dst=0)
            if main:
                for part in parts[1:]:
                    if part is not None and part[0].numel():
                        self._sums.index_add_(0, part[0], part[1].double())
        self._merged = (self._sums, sum(m[0] for m in meta), sum(m[1] for m in meta)) if main else ()
        return self._merged if main else None

    def tracklet_features(self) -> Optional[torch.Tensor]:
        """``(num_tracklets, D)`` float32 mean clip embedding per tracklet, L2-normalised for the
        cosine metric (:mod:`.embedding`); ``None`` on non-main processes. The means before the
        normalisation are kept in ``self._raw_features`` (what AQE expands)."""
        got = self._gathered()
        if got is None:
            return None
        sums, counts, dropped = got
        if dropped:
            logger.info("Dropped %d clips beyond TEST.VIDEO.MAX_CLIPS=%d", dropped, self._max_clips)
        self._raw_features = tracklet_means(sums, counts)
        return l2_normalized(self._raw_features, uses_l2(self.cfg.TEST.METRIC))

    def evaluate(self):
        feats = self.tracklet_features()
        if feats is None:
            return {}
        if self.distance_parts or self._protocol == "fgpr":
            from .two_direction import evaluate_tracklets

            check_two_direction_options(self.cfg, self._protocol, self.distance_parts)  # cfg may have changed
            return evaluate_tracklets(feats, self._num_query, self._pids, self._camids, self._groups,
                                      self._protocol, self.cfg.TEST.METRIC, self.distance_parts,
                                      self.distance_weights)
        cfg = self.cfg
        metric = cfg.TEST.METRIC
        memory_mb = cfg.TEST.RETRIEVAL.MEMORY_MB
        device = cfg.MODEL.DEVICE if torch.cuda.is_available() else "cpu"
        Q = self._num_query
        qf, gf = validate_features(feats[:Q], feats[Q:])
        if cfg.TEST.AQE.ENABLED:
            logger.info("Test with AQE")
            # the raw means are expanded (the host's order), then normalised for the cosine metric
            raw = self._raw_features
            qf, gf = average_query_expansion(
                raw[:Q], raw[Q:], cfg.TEST.AQE.QE_TIME, cfg.TEST.AQE.QE_K, cfg.TEST.AQE.ALPHA, memory_mb, device
            )
            qf, gf = l2_normalized(qf, uses_l2(metric)), l2_normalized(gf, uses_l2(metric))
        q_pids, g_pids = self._pids[:Q], self._pids[Q:]
        q_camids, g_camids = self._camids[:Q], self._camids[Q:]
        q_groups = g_groups = None
        if self._groups is not None:
            q_groups, g_groups = self._groups[:Q], self._groups[Q:]
        rank_kwargs = dict(max_rank=50, protocol=self._protocol, q_groups=q_groups, g_groups=g_groups)
        # Only re-ranking, ROC and the rank-list pictures need the whole Q x G matrix; otherwise
        # the metrics come straight from the features in memory-bounded blocks.
        distmat = None
        if cfg.TEST.RERANK.ENABLED or cfg.TEST.VIS.ENABLED or cfg.TEST.ROC.ENABLED:
            if cfg.TEST.RERANK.ENABLED:
                logger.info("Test with k-reciprocal re-ranking")
                dist = k_reciprocal_rerank(
                    qf, gf, cfg.TEST.RERANK.K1, cfg.TEST.RERANK.K2, cfg.TEST.RERANK.LAMBDA, metric, memory_mb, device
                )
            else:
                dist = pairwise_distance(qf, gf, metric, memory_mb, device)
            distmat = dist.numpy().astype(np.float32, copy=False)
            res = evaluate_rank(distmat, q_pids, g_pids, q_camids, g_camids, **rank_kwargs)
        else:
            res = evaluate_features(qf, gf, q_pids, g_pids, q_camids, g_camids, metric=metric,
                                    memory_mb=memory_mb, device=device, **rank_kwargs)
        # groupwise: unweighted means over the groups (RankResult's definition)
        cmc, mAP, mINP = np.asarray(res.cmc), res.mAP, res.mINP
        num_skipped = int(res.num_skipped)
        results = OrderedDict()
        for r in RANKS:
            results[f"Rank-{r}"] = float(cmc[min(r, len(cmc)) - 1]) * 100
        results["mAP"] = mAP * 100
        results["mINP"] = mINP * 100
        results["metric"] = (mAP + float(cmc[0])) / 2 * 100  # host reid_evaluation.py
        if self._host_keys:  # the host's ReidEvaluator keys (reid_evaluation.py:109-114)
            del results["Rank-20"]
        else:
            results["num_skipped_queries"] = num_skipped
        if cfg.TEST.ROC.ENABLED:
            from .roc import roc_metrics

            results.update(roc_metrics(distmat, q_pids, g_pids, q_camids, g_camids))
        if num_skipped:
            logger.info("%d of %d queries have no valid gallery match and were skipped", num_skipped, Q)

        approx = retrieval_index(cfg)
        if approx:
            k = min(10, gf.shape[0])
            ann = ApproximateSearch.from_config(cfg, gf, metric, device=device)
            # recall against the exact search of the same (plain metric) distance
            exact = search(qf, gf, k, metric=metric, backend=cfg.TEST.RETRIEVAL.BACKEND, memory_mb=memory_mb,
                           device=device)[1]
            results[f"{approx}_recall@{k}"] = ann.recall_at_k(qf, k, sample=0, exact_indices=exact) * 100

        if cfg.TEST.VIS.ENABLED:
            self._draw(distmat, q_pids, g_pids, q_camids, g_camids)
        return copy.deepcopy(results)

    def _draw(self, distmat, q_pids, g_pids, q_camids, g_camids) -> None:
        if self._items is None or self._output_dir is None:
            logger.warning("TEST.VIS.ENABLED needs the evaluator's items and output_dir; no pictures drawn")
            return
        from .visualize import draw_rank_lists

        Q = self._num_query
        frames = [list(it[0]) if isinstance(it[0], (list, tuple)) else [it[0]] for it in self._items]
        out_dir = os.path.join(self._output_dir, "rank_lists")
        paths = draw_rank_lists(
            distmat, frames[:Q], frames[Q:], q_pids, g_pids, q_camids, g_camids, out_dir,
            num_queries=self.cfg.TEST.VIS.NUM_QUERIES, topk=self.cfg.TEST.VIS.TOPK,
            exclude_same_camera=self._protocol in ("cross_camera", "mars_official", "mars_official_noninterp"),
        )
        logger.info("Wrote %d rank-list pictures to %s", len(paths), out_dir)
