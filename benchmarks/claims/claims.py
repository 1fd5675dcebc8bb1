"""The pre-registered claims: one synthetic experiment per method, written before any run.

Each :class:`Claim` fixes, before its first run, what is claimed (``statement``), the data that
isolates the mechanism (``data``: generator arguments and knobs), the rows trained with the
same budget (``rows``), the comparisons that must all come out positive (``compare``: pairs
``(method row, reference row)`` on the test mAP) and any extra check (``checks``). The verdict
rule is the same for all (see :data:`HOLDS_RULE`); nothing here is tuned after seeing results.

Rows name their config as ``(project, file)``: ``project`` is a project's entry-point name
(found through the plugin's project registry, ``fastreid_ext.config.project_entry_points``) or
``None`` for the core's ``configs/`` folder.
"""
from __future__ import annotations

import dataclasses
from typing import Dict, Optional, Tuple

__all__ = ["Row", "Claim", "CLAIMS", "HOLDS_RULE", "BACKBONE_TOKEN", "get_claim"]

HOLDS_RULE = ("holds only if, for every comparison (method row minus reference row, test mAP, "
              "paired by seed), the difference is > 0 in every seed (at least 3 seeds), and every "
              "extra check passes in every seed; otherwise 'does not hold'")


@dataclasses.dataclass(frozen=True)
class Row:
    """One trained variant: a config file plus overrides (the claim's budget is added on top)."""

    name: str
    project: Optional[str]  # entry-point name of the project owning ``config``; None: core configs/
    config: str  # path relative to the project's (or the core's) configs/ folder
    opts: Tuple[str, ...] = ()
    label: str = ""


@dataclasses.dataclass(frozen=True)
class Claim:
    name: str
    method: str
    statement: str
    requires: Tuple[str, ...]  # project entry-point names that must be installed
    data: Dict  # layout + generator arguments (knobs included); dataset name used in configs
    dataset: str  # the registered dataset name trained and tested on
    rows: Tuple[Row, ...]
    compare: Tuple[Tuple[str, str], ...]  # (method row, reference row): mAP difference > 0
    checks: Tuple[str, ...] = ()  # extra per-seed checks (see runner.EXTRA_CHECKS)
    protocol: str = "auto"  # TEST.PROTOCOL
    image: bool = False  # image (1-frame) data set: SEQ_LEN 1
    readme: str = ""  # the project README whose rows link here
    backbone: str = "shared"  # "shared": the pre-trained ResNet-18; "own": the method's own backbone and clip recipe
    epoch_factor: int = 1  # epochs = budget epochs x this, for every row of the claim (small data sets)


#: in a row's opts, replaced by the path of the shared pre-trained backbone file
BACKBONE_TOKEN = "{backbone}"

_AVG_LOSSES = '("CrossEntropyLoss", "CenterLoss", "OSMLoss")'

#: the MG-RAFA claims' data: half of the frames partially occluded, every frame misaligned
_MGRAFA_DATA = dict(layout="mars", ids=64, cameras=3, frame_size=(64, 32), min_len=8, max_len=16,
                    occlusion=0.0, part_occlusion=0.5, misalign=0.05)
#: the MG-RAFA claims' rows: Table 2's Baseline, SG-RAFA (S=1) and MG-RAFA (N=4)
_MGRAFA_ROWS = (
    Row("avg", "mgrafa", "synthetic_cpu_baseline.yml", (), "average pooling"),
    Row("sg_rafa", "mgrafa", "synthetic_cpu.yml",
        ("MODEL.MGRAFA.ATTENTION", "rafa", "MODEL.MGRAFA.NUM_GROUPS", "1",
         "MODEL.MGRAFA.GRANULARITY", "single"), "SG-RAFA (S=1)"),
    Row("mg_rafa", "mgrafa", "synthetic_cpu.yml",
        ("MODEL.MGRAFA.ATTENTION", "rafa", "MODEL.MGRAFA.NUM_GROUPS", "4",
         "MODEL.MGRAFA.GRANULARITY", "multi"), "MG-RAFA (N=4)"),
)


def _mgrafa_claim(name: str, method: str, data: Dict, statement: str,
                  rows: Tuple[Row, ...] = _MGRAFA_ROWS, check: str = "occluded_nodes_below_uniform") -> Claim:
    """An MG-RAFA claim: MG-RAFA (N=4) against average pooling and SG-RAFA (S=1) on SyntheticMARS,
    plus one occluded-node check on the ``mg_rafa`` row."""
    return Claim(name=name, method=method, statement=statement, requires=("mgrafa",), data=data,
                 dataset="SyntheticMARS", rows=rows, compare=(("mg_rafa", "avg"), ("mg_rafa", "sg_rafa")),
                 checks=(check,), readme="projects/MGRAFA/README.md")


CLAIMS: Tuple[Claim, ...] = (
    Claim(
        name="video_baseline",
        method="the video baseline (Fantastic Techniques: temporal attention + attention loss)",
        statement=("On test tracklets where 40% of the frames are corrupted (a random-value block "
                   "over 60-90% of the frame), temporal attention trained with the attention loss "
                   "on erased frames beats average pooling (test mAP), and its mean attention "
                   "weight on the corrupted test frames is below 1/T."),
        requires=(),
        data=dict(layout="mars", ids=64, cameras=3, frame_size=(64, 32), min_len=8, max_len=16,
                  occlusion=0.0, corrupt=0.4),
        dataset="SyntheticMARS",
        rows=(
            Row("avg", None, "Video-Baseline/synthetic_cpu.yml",
                ("MODEL.TEMPORAL.AGG", "avg", "MODEL.LOSSES.NAME", _AVG_LOSSES), "average pooling"),
            Row("attention", None, "Video-Baseline/synthetic_cpu.yml",
                ("MODEL.TEMPORAL.AGG", "attention"), "temporal attention + attention loss"),
        ),
        compare=(("attention", "avg"),),
        checks=("corrupted_attention_below_uniform",),
        readme="README.md",
    ),
    Claim(
        name="fgreid",
        method="FGReID",
        statement=("With identities drawn in 2 shared uniforms (they differ only in small "
                   "details: hair, shoes, bag, badge, body shape, gait), FGReID beats the video "
                   "baseline within a uniform group (group-wise test mAP: queries and gallery "
                   "restricted to one uniform group, averaged over groups)."),
        requires=("fgreid",),
        data=dict(layout="mars", ids=64, cameras=3, frame_size=(64, 32), min_len=8, max_len=16,
                  groups=2, distractors=0.0, junk=0.0),  # group-wise needs a group for every item
        dataset="SyntheticMARS",
        rows=(
            Row("video_baseline", "fgreid", "Synthetic/stage1_video_baseline.yml", (), "video baseline"),
            # both of FGReID's ResNets (CNN_ImageNet, CNN_MARS) start from the shared pre-trained
            # backbone, as the baseline's one ResNet does ("same start as the baseline")
            Row("fgreid", "fgreid", "Synthetic/fgreid.yml",
                ("MODEL.FGREID.MARS_WEIGHTS", BACKBONE_TOKEN, "MODEL.FGREID.MARS_PREFIX", '""'), "FGReID"),
        ),
        compare=(("fgreid", "video_baseline"),),
        protocol="groupwise",
        readme="projects/FGReID/README.md",
    ),
    _mgrafa_claim(
        "mgrafa", "MG-RAFA", _MGRAFA_DATA,
        statement=("With half of the frames partially occluded (an occluder over 25-50% of one "
                   "side) and every frame misaligned (position / scale jitter, std 5% of the "
                   "frame), MG-RAFA (N=4) beats average pooling and SG-RAFA (S=1) in test mAP, "
                   "and its mean node weight on the occluded test nodes (finest granularity) is "
                   "below uniform."),
    ),
    _mgrafa_claim(
        "mgrafa_clothes", "MG-RAFA, occluders that look like clothes",
        dict(_MGRAFA_DATA, occluder_clothes=1.0),
        statement=("Registered in session 3 after the `mgrafa` claim's grey occluders were found "
                   "to leave the attention uniform, before any run on this data: with half of the "
                   "frames partially occluded by a passer-by's clothes (two saturated garment "
                   "colours over 25-50% of one side, `occluder_clothes=1`) and every frame "
                   "misaligned (std 5% of the frame), MG-RAFA (N=4) beats average pooling and "
                   "SG-RAFA (S=1) in test mAP, and its mean node weight on the occluded test "
                   "nodes (finest granularity) is below uniform."),
    ),
    _mgrafa_claim(
        "mgrafa_residual", "MG-RAFA, scores from the temporal residual (ours)",
        dict(_MGRAFA_DATA, occluder_clothes=1.0),
        statement=("Registered in session 4, before any run of this claim, after two exploratory "
                   "1,450-iteration runs on a 300-identity clothes-occluder set (one seed): with "
                   "scores from the nodes (Eq. (3)) the spatial granularities stayed uniform, with "
                   "scores from the temporal residual (`SCORE_INPUT temporal_residual`: each node "
                   "minus the temporal mean at its position) the occluded G-2 nodes got 0.90 of "
                   "uniform. On the `mgrafa_clothes` data and budget, with both attention rows "
                   "scored from the temporal residual, MG-RAFA (N=4) beats average pooling and "
                   "SG-RAFA (S=1) in test mAP, and its mean node weight on the occluded test nodes "
                   "at G-2 (the 2x1 granularity at 64x32) is below uniform."),
        rows=(_MGRAFA_ROWS[0],) + tuple(
            dataclasses.replace(r, opts=r.opts + ("MODEL.MGRAFA.SCORE_INPUT", "temporal_residual"))
            for r in _MGRAFA_ROWS[1:]),
        check="occluded_g2_nodes_below_uniform",
    ),
    Claim(
        name="mgre",
        method="MGRe",
        statement=("With pose and scale variation (per-tracklet yaw offset U(-pi, pi) x 0.5, "
                   "person scale exp(U(-0.4, 0.4)) and placement), MGRe beats its baseline "
                   "(ResNet + GAP + BNNeck) and its 'w/o location loss' row in test mAP; the "
                   "regions' IoU with the keypoint boxes is reported from the diagnostics."),
        requires=("mgre",),
        data=dict(layout="market1501", ids=64, cameras=4, frame_size=(64, 32), min_len=3, max_len=6,
                  scale_var=0.4, pose_var=0.5),
        dataset="SyntheticMarket1501",
        rows=(
            Row("baseline", "mgre", "synthetic_cpu_baseline.yml", (), "baseline"),
            Row("mgre_no_loc", "mgre", "synthetic_cpu.yml", ("MODEL.MGRE.USE_KEYPOINTS", "False"),
                "MGRe w/o location loss"),
            Row("mgre", "mgre", "synthetic_cpu.yml", (), "MGRe"),
        ),
        compare=(("mgre", "baseline"), ("mgre", "mgre_no_loc")),
        image=True,
        readme="projects/MGRe/README.md",
    ),
    Claim(
        name="fgpose",
        method="FG dynamic pose (FGPose)",
        statement=("With identities in the same clothes and body shape within a group "
                   "(appearance per_group: only the gait differs), FGPose (all streams) beats its "
                   "global appearance stream alone in group-wise test mAP (both from scratch with "
                   "FGPose's own tiny backbones and clip recipe)."),
        requires=("fgpose",),
        data=dict(layout="fgpr", ids=30, frame_size=(64, 32), min_len=16, max_len=24,
                  appearance="per_group"),
        dataset="SyntheticFGPR",
        rows=(
            Row("baseline", "fgpose", "synthetic_cpu.yml",
                ("MODEL.FGPOSE.STREAMS", '["global"]', "MODEL.FGPOSE.TRAIN_STREAMS", '["global"]'),
                "global appearance stream only"),
            Row("fgpose", "fgpose", "synthetic_cpu.yml", (), "FGPose (all streams)"),
        ),
        compare=(("fgpose", "baseline"),),
        protocol="groupwise",
        backbone="own",  # FGPose's tiny multi-stream backbones: the shared ResNet-18 does not fit
        epoch_factor=10,  # 44 training tracklets: 2 iterations per epoch
        readme="",
    ),
)


def get_claim(name: str) -> Claim:
    for c in CLAIMS:
        if c.name == name:
            return c
    raise KeyError(f"unknown claim {name!r}; known: {', '.join(c.name for c in CLAIMS)}")
