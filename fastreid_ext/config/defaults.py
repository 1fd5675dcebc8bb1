"""Config keys ``fastreid_ext`` adds to the host's yacs defaults (``add_ext_config``).

Every key has a comment; the README lists them. Projects add theirs with
``add_<project>_config(cfg)``.
"""
from __future__ import annotations

import torch

from fastreid.config import CfgNode as CN
from fastreid.config import get_cfg as _host_get_cfg


def default_device() -> str:
    """``cuda`` when a GPU is visible, else ``cpu`` (the host hard-codes ``cuda``,
    ``fastreid/config/defaults.py:23``)."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def add_ext_config(cfg: CN) -> CN:
    """Add the plugin's keys to ``cfg`` in place (detectron2 convention) and return it.

    Safe to call twice.
    """
    if "VIDEO" in cfg.INPUT:
        return cfg
    _C = cfg
    _C.MODEL.DEVICE = default_device()
    # load a checkpoint whose tensors do not all fit the model (shape mismatches / missing
    # tensors skipped with a warning, the host's behaviour); off: such a checkpoint is an error
    _C.MODEL.PARTIAL_LOAD = False
    # DDP find_unused_parameters (an extra graph pass per step); also on when the meta-arch
    # declares ``ddp_find_unused_parameters = True``
    _C.MODEL.DDP_FIND_UNUSED_PARAMETERS = False

    # ---- temporal aggregation of the video baseline
    _C.MODEL.TEMPORAL = CN()
    # a name of AGGREGATION_REGISTRY: "avg", "attention" (the video-baseline paper / Gao & Nevatia),
    # or one a project registers
    _C.MODEL.TEMPORAL.AGG = "avg"
    _C.MODEL.TEMPORAL.ATT_DIM = 256        # hidden width of the temporal attention conv
    # conv init: "fan_out" (the host's weights_init_kaiming) | "fan_in" (the video-baseline public
    # code: kaiming_normal_(mode='fan_in'), tools/helplayer.py:12-15; set by configs/Video-Baseline)
    _C.MODEL.TEMPORAL.ATT_INIT = "fan_out"
    _C.MODEL.TEMPORAL.ATT_SCORE_ACT = "relu"  # score activation: "relu" (Gao & Nevatia, public code) | "none" (cannot die)

    # ---- losses added through the plugin's registry (MODEL.LOSSES.NAME picks them)
    _C.MODEL.LOSSES.TRI.DISTANCE = "host"  # "host" (euclidean / 2 - 2cos with NORM_FEAT) | "cosine" (1 - cos, public code)
    _C.MODEL.LOSSES.CENTER = CN()
    _C.MODEL.LOSSES.CENTER.SCALE = 0.0005  # weight of the center loss in the total
    _C.MODEL.LOSSES.CENTER.LR = 0.5        # its own SGD step for the centers
    _C.MODEL.LOSSES.CENTER.FEAT = "features"  # which head output it uses
    _C.MODEL.LOSSES.OSM = CN()
    _C.MODEL.LOSSES.OSM.SCALE = 1.0
    _C.MODEL.LOSSES.OSM.ALPHA = 2.0709     # negative margin
    _C.MODEL.LOSSES.OSM.SIGMA = 0.1986     # positive similarity bandwidth
    _C.MODEL.LOSSES.OSM.L = 0.4835         # balance of positive / negative terms
    _C.MODEL.LOSSES.OSM.CL_CENTERS = True  # class embeddings = center-loss centers ("CL centers")
    # DDP: pairwise losses (triplet, circle, CosFace, OSM) see every rank's batch, not P / W ids
    _C.MODEL.LOSSES.GATHER = True
    _C.MODEL.LOSSES.ATT = CN()
    _C.MODEL.LOSSES.ATT.SCALE = 1.0        # attention loss on erased frames (the video-baseline paper, Eq. 1)
    _C.MODEL.LOSSES.ATT.TARGET = "scores"  # "scores" (post-ReLU pre-softmax, public code; can die) | "weights" (softmax)
    _C.MODEL.LOSSES.ATT.REDUCTION = "frame_mean"  # "frame_mean" (Eq. 1, / B*T) | "clip_sum" (public code, T x Eq. 1)
    _add_data_config(_C)
    _add_test_config(_C)
    return cfg


def _add_data_config(_C: CN) -> None:
    """``INPUT.VIDEO``, ``INPUT.KEYPOINTS_MIN_MATCH``, ``DATASETS`` and ``DATALOADER`` keys."""
    # ---- video input
    _C.INPUT.VIDEO = CN()
    _C.INPUT.VIDEO.SEQ_LEN = 4             # T frames per training clip
    # "restricted_random" | "random" (the video-baseline public code) | "random_consecutive" | "evenly"
    _C.INPUT.VIDEO.SAMPLER = "restricted_random"
    # training clips of tracklets shorter than T: "cycle" (jiyanggao) | "repeat_last" (deep-person-reid,
    # the video-baseline public code's "random"); docs/scoring.md
    _C.INPUT.VIDEO.SHORT_PAD = "cycle"
    # crop / flip / INPUT.REA drawn once per "clip" (all frames alike) or per "frame" (public codes)
    _C.INPUT.VIDEO.AUG_GRANULARITY = "clip"
    _C.INPUT.VIDEO.REA_SPARE_ONE = False   # frame REA hit every frame of a clip: leave the last clean (a public code's rule)
    _C.INPUT.VIDEO.FRAME_ERASE = CN({"ENABLED": False})
    _C.INPUT.VIDEO.FRAME_ERASE.PROB = 0.5  # per-frame random erasing; returns which frames
    # train items with a matching, in-frame keypoint entry below this fraction stop training (0: off)
    _C.INPUT.KEYPOINTS_MIN_MATCH = 0.5

    # ---- datasets
    _C.DATASETS.SPLIT = 0                  # split index for 10-split datasets (iLIDS-VID, PRID, CUHK01)
    _C.DATASETS.PROTOCOL = "standard"      # MARS: "standard" | "official"; CUHK01: "p486" | "p100"
    _C.DATASETS.ROOT = ""                  # overrides $FASTREID_DATASETS when set

    _C.DATALOADER.NUM_WORKERS_TEST = 2     # the host hard-codes 4 (fastreid/data/build.py:124)
    _C.DATALOADER.EPOCH_LENGTH = "samples"  # P x K sampler epoch: "samples" (host) | "identities" (ids x K / batch, public code)


def _add_test_config(_C: CN) -> None:
    """``TEST`` keys, then ``SOLVER.AMP.DTYPE`` and ``SEED``."""
    # ---- test
    _C.TEST.VIDEO = CN()
    _C.TEST.VIDEO.SEQ_LEN = 4              # T frames per test clip (dense, non-overlapping)
    _C.TEST.VIDEO.MAX_CLIPS = 0            # 0: every clip, every frame (the papers' test); N > 0: at most N clips spread over the tracklet
    _C.TEST.VIDEO.CLIP_SELECT = "spread"   # which clips a MAX_CLIPS cap keeps: "spread" over the tracklet | "first" (public codes)
    _C.TEST.VIDEO.SHORT_PAD = "cycle"      # last test clip / short tracklets: "cycle" (jiyanggao dense) | "repeat_last"
    _C.TEST.VIDEO.FRAME_CHUNK = 0          # frames per backbone call at test time (0: all; bounds memory)
    # images: rank per-identity means of the query / gallery embeddings (Pathak, Fine-Grained Re-Identification, 4.3; not the
    # standard protocol, evaluation/average_per_id.py); AVERAGE_KEY "id" (paper) | "id_camera"
    _C.TEST.IMAGE = CN({"AVERAGE_PER_ID": False, "AVERAGE_KEY": "id"})
    _C.TEST.PROTOCOL = "auto"              # "auto" (from the dataset) | "cross_camera" | "mars_official" | "mars_official_noninterp" | "cuhk03_sgs" | "groupwise" | "fgpr" (docs/scoring.md)
    _C.TEST.RETRIEVAL = CN()
    _C.TEST.RETRIEVAL.BACKEND = "auto"     # exact kNN search: "auto" | "faiss" | "torch" (evaluation.retrieval)
    _C.TEST.RETRIEVAL.MEMORY_MB = 1024     # bound on any Q x G block materialised
    _C.TEST.RETRIEVAL.INDEX = ""           # approximate index: "" (none) | "ivf" | "hnsw" | a faiss factory string ("IVF4096,Flat", "IVF16384_HNSW32,PQ32x8,Refine(Flat)")
    _C.TEST.RETRIEVAL.APPROX = ""          # older name of INDEX (read when INDEX is "")
    _C.TEST.RETRIEVAL.NLIST = 1024
    _C.TEST.RETRIEVAL.NPROBE = 32
    _C.TEST.RETRIEVAL.HNSW_M = 32
    _C.TEST.RETRIEVAL.EF_SEARCH = 128
    _C.TEST.RETRIEVAL.EF_CONSTRUCTION = 80  # HNSW build breadth
    _C.TEST.RETRIEVAL.TRAIN_SIZE = 0       # training sample (0: max(40 * nlist, 50000) gallery rows for an IVF, else 50000)
    _C.TEST.RETRIEVAL.K_FACTOR = 0         # Refine(...) indexes: k * K_FACTOR candidates re-ranked (0: faiss's 1)
    _C.TEST.VIS = CN({"ENABLED": False})
    _C.TEST.VIS.NUM_QUERIES = 8
    _C.TEST.VIS.TOPK = 10

    _C.SOLVER.AMP.DTYPE = "float16"        # "float16" | "bfloat16" (GPU only; AMP is off on CPU)
    _C.SEED = -1                           # >= 0: deterministic seed (+ rank) for torch/numpy/random


def get_cfg() -> CN:
    """Host defaults plus the plugin's keys."""
    return add_ext_config(_host_get_cfg())
