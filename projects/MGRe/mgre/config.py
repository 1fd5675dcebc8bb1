"""Config keys of the MGRe project, added with :func:`add_mgre_config`.

Ablations as settings of ``MODEL.MGRE``:

=====================================  =====================  ==========  ==================
row                                    MODE                   STAGES      JOINT_OPTIMIZATION
=====================================  =====================  ==========  ==================
Table 4 Baseline (+ stage-4 FE block)  multi_granularity      []          True
Table 4 Baseline+1 / +2 / +3 / +2+3    multi_granularity      [1] ...     True
MGRe (Baseline+1+2+3)                  multi_granularity      [1, 2, 3]   True
Table 5 Single-grained Features        single_grained_features [1, 2, 3]  True
Table 5 Single-grained Regions         single_grained_regions [1, 2, 3]   (no location)
Table 7 Baseline + JO                  baseline_jo            [1, 2, 3]   True
Table 7 MGRe w/o JO                    multi_granularity      [1, 2, 3]   False
=====================================  =====================  ==========  ==================
"""
from __future__ import annotations

from fastreid.config import CfgNode as CN
from fastreid_ext.config import register_validator

__all__ = ["add_mgre_config", "validate_mgre_config", "MGRE_MODES", "FE_MODULES"]

#: ``MODEL.MGRE.MODE`` values (Table 5)
MGRE_MODES = ("multi_granularity", "single_grained_features", "single_grained_regions", "baseline_jo")

#: ``MODEL.MGRE.FE_MODULE`` values: the feature-extraction module of a granularity
FE_MODULES = ("bottleneck", "stage")


def add_mgre_config(cfg: CN) -> CN:
    """Add ``MODEL.MGRE`` to ``cfg`` in place (detectron2 convention) and return it.

    Safe to call twice. ``cfg`` must already hold the plugin's keys (``fastreid_ext.get_cfg()``).
    Registers :func:`validate_mgre_config` (run by ``build_config``).
    """
    register_validator(validate_mgre_config)
    if "MGRE" in cfg.MODEL:
        return cfg
    _C = cfg
    _C.MODEL.MGRE = CN()
    # residual blocks followed by location + sampling + feature-extraction modules (Table 4);
    # stage 4 (whole image) is always used
    _C.MODEL.MGRE.STAGES = [1, 2, 3]
    # "multi_granularity" (the paper), "single_grained_features" (every module on the stage-4
    # map, Table 5), "single_grained_regions" (whole stage maps, no location / sampling) or
    # "baseline_jo" (Table 7 "Baseline + JO": location modules + location loss on stages 1-3 of
    # the baseline, no sampling / FE; the embedding is the stage-4 vector only)
    _C.MODEL.MGRE.MODE = "multi_granularity"
    # False: "MGRe w/o JO" (Table 7): regions are the boxes of the pose pseudo labels (needs
    # keypoints at train AND test time); no location modules, no location loss
    _C.MODEL.MGRE.JOINT_OPTIMIZATION = True
    # location loss Eq. (3) from keypoint pseudo labels; False: trained without it (logged).
    # True needs `keypoints` in the batches (keypoints.json next to the dataset, written by the
    # synthetic generator or tools/make_keypoints.py)
    _C.MODEL.MGRE.USE_KEYPOINTS = True
    _C.MODEL.MGRE.LOC_MARGIN = 0.05        # boundary margin of Eq. (3)
    # extra factor on L^loc inside Eq. (9) (1.0 = the paper's Eq. (9)); raise it when the ReID
    # losses' gradients through the sampling drag the regions off the body (README, benchmark)
    _C.MODEL.MGRE.LOC_WEIGHT = 1.0
    # reading of Eq. (1)'s outputs: "bounded" (sizes <= the map, the whole box inside the map:
    # regions cannot leave the map) or "paper" (C + tanh, exp: unbounded; README)
    _C.MODEL.MGRE.LOC_PARAM = "bounded"
    # std of the location Linear's initial weights (0: exactly the priors, but then its conv
    # gets no gradient at the first steps)
    _C.MODEL.MGRE.LOC_INIT_STD = 0.001
    # what sampled points outside the map read: "border" (nearest border pixel) or "zeros"
    _C.MODEL.MGRE.LOC_PADDING = "border"
    # factor on the ReID losses' gradient reaching the location modules through the sampled
    # boxes (1.0: plain joint optimisation; the location loss' gradient is never scaled). The
    # ReID gradients there are 10-5000x the location loss's; 0.01 keeps the regions on the
    # keypoint boxes while the ReID losses still shape them (README, evidence)
    _C.MODEL.MGRE.LOC_REID_GRAD = 0.01
    _C.MODEL.MGRE.LOC_HIDDEN = 128         # conv channels of the location module (not stated)
    _C.MODEL.MGRE.LOC_POOL = [4, 2]        # its max-pooling output size (not stated)
    # stage-4 maps upsampled (bilinear) + 1x1 conv, added to the stage-1 / stage-2 maps
    _C.MODEL.MGRE.SEMANTIC_GUIDANCE = True
    # feature-extraction module of each granularity: "bottleneck" (one bottleneck residual
    # block) or "stage" (as many bottlenecks as the backbone's stage of that granularity: the
    # paper calls whole ResNet stages "residual blocks")
    _C.MODEL.MGRE.FE_MODULE = "bottleneck"
    _C.MODEL.MGRE.EMBED_DIM = 512          # per-stage vector (Fig. 3); 4 x 512 = 2048
    # lambda^F of Eq. (6), stages 1..4 (section 4.4 grid search on Market1501)
    _C.MODEL.MGRE.FEAT_WEIGHTS = [0.35, 0.5, 0.7, 0.8]
    # lambda of Eq. (9): weight of the stage 1-3 losses (tuned on validation, not stated)
    _C.MODEL.MGRE.LAMBDA = 1.0
    # input size Table 1's sampled sizes refer to; sampled sizes scale with INPUT.SIZE_TRAIN
    _C.MODEL.MGRE.REF_INPUT_SIZE = [256, 128]
    # test embedding: "after" = Eq. (6) on the L2-normalised BN features (the paper),
    # "before" = Eq. (6) on the L2-normalised pre-BN features
    _C.MODEL.MGRE.EVAL_FEAT = "after"
    return cfg


def validate_mgre_config(cfg: CN) -> None:
    """Refuse (``ValueError``, one line naming the key) ``MODEL.MGRE`` values the model cannot
    be built with; nothing to check in a config without ``MODEL.MGRE``. Run by ``build_config``
    (registered by :func:`add_mgre_config`) and by ``MGRe.from_config``."""
    if "MGRE" not in cfg.MODEL:
        return
    from .location import LOCATION_PARAMETRIZATIONS

    m = cfg.MODEL.MGRE
    stages, mode = [int(s) for s in m.STAGES], m.MODE
    checks = (
        (sorted(set(stages)) == sorted(stages) and all(s in (1, 2, 3) for s in stages),
         f"MODEL.MGRE.STAGES must be distinct values among 1, 2, 3, got {stages}"),
        (mode in MGRE_MODES, f"unknown MODEL.MGRE.MODE {mode!r}; known: {', '.join(MGRE_MODES)}"),
        (m.LOC_PARAM in LOCATION_PARAMETRIZATIONS, f"unknown MODEL.MGRE.LOC_PARAM {m.LOC_PARAM!r}; "
                                                   f"known: {', '.join(LOCATION_PARAMETRIZATIONS)}"),
        (m.LOC_PADDING in ("zeros", "border"),
         f"MODEL.MGRE.LOC_PADDING must be 'zeros' or 'border', got {m.LOC_PADDING!r}"),
        (m.FE_MODULE in FE_MODULES, f"unknown MODEL.MGRE.FE_MODULE {m.FE_MODULE!r}; known: {', '.join(FE_MODULES)}"),
        (0.0 <= float(m.LOC_REID_GRAD) <= 1.0, f"MODEL.MGRE.LOC_REID_GRAD must be in [0, 1], got {m.LOC_REID_GRAD}"),
        (not (mode == "baseline_jo" and not m.JOINT_OPTIMIZATION),
         "MODEL.MGRE.MODE baseline_jo is the joint optimisation of Table 7; it needs "
         "MODEL.MGRE.JOINT_OPTIMIZATION True"),
        (not (mode == "baseline_jo" and not m.USE_KEYPOINTS and stages),
         "MODEL.MGRE.MODE baseline_jo trains its location modules with the location loss only (no "
         "region feature reads them); with MODEL.MGRE.USE_KEYPOINTS False they would feed no loss. "
         "Set USE_KEYPOINTS True, or STAGES [] for the plain baseline"),
        (m.EVAL_FEAT in ("before", "after"), f"MODEL.MGRE.EVAL_FEAT must be 'before' or 'after', got {m.EVAL_FEAT!r}"),
        (len(m.FEAT_WEIGHTS) == 4,
         f"MODEL.MGRE.FEAT_WEIGHTS needs 4 values (stages 1-4), got {list(m.FEAT_WEIGHTS)}"),
    )
    for ok, message in checks:
        if not ok:
            raise ValueError(message)
