"""The pre-registered claims: one synthetic experiment per paper test, fixed before its first run.

Each :class:`Claim` fixes what is claimed (``statement``), the data that isolates the mechanism
(``data``: generator arguments and knobs), the rows trained (``rows``), the comparisons with
their smallest effect of interest (:class:`Comparison`: the paper's own gain, table and row
cited), the seeds, the budget (``epochs``) and the row whose learning curve is measured
(``curve_row``). The verdict rule is :data:`benchmarks.claims.stats.VERDICT_RULE`; nothing here
is tuned after a claim's first run under this design (a claim added later says so in its
``registered`` field).

Rows name their config as ``(project, file)``: ``project`` is a project's entry-point name (the
plugin's project registry) or ``None`` for the core's ``configs/`` folder. A row with
``init_from`` starts from another row's final checkpoint of the same seed (staged schedules):
the runner passes that checkpoint's path as the row's ``init_key`` setting.
"""
from __future__ import annotations

import dataclasses
from typing import Dict, Optional, Tuple

__all__ = ["Row", "Comparison", "Claim", "CLAIMS", "BACKBONE_TOKEN", "get_claim", "expected_test_size",
           "QUICK"]


@dataclasses.dataclass(frozen=True)
class Row:
    """One trained variant: a config file plus overrides (the claim's budget is added on top)."""

    name: str
    project: Optional[str]  # entry-point name of the project owning ``config``; None: core configs/
    config: str  # path relative to the project's (or the core's) configs/ folder
    opts: Tuple[str, ...] = ()
    label: str = ""
    init_from: Optional[str] = None  # row whose final checkpoint (same seed) this row starts from
    init_key: str = "MODEL.WEIGHTS"  # the setting that receives that checkpoint's path
    epochs: Optional[int] = None  # None: the claim's epochs
    stage: bool = False  # trained only to start other rows (not compared)
    source: str = "paper"  # where the row's recipe comes from: "paper" / "public code" / "ours"


@dataclasses.dataclass(frozen=True)
class Comparison:
    """``method - reference`` on the test mAP, paired by seed, with the paper's own gain."""

    method: str
    reference: str
    sesoi: Optional[float]  # smallest effect of interest (mAP points); None: the paper claims no size
    source: str  # where the SESOI comes from (paper, table, rows, numbers)


@dataclasses.dataclass(frozen=True)
class Claim:
    name: str
    method: str
    statement: str
    requires: Tuple[str, ...]  # project entry-point names that must be installed
    data: Dict  # layout + generator arguments (knobs included)
    dataset: str  # the registered dataset name trained and tested on
    rows: Tuple[Row, ...]
    comparisons: Tuple[Comparison, ...]
    seeds: int  # seeds 0..seeds-1 of the full design
    epochs: int  # budget per row (rows may set their own, staged schedules)
    curve_row: str  # the reference row whose test mAP is measured at CURVE_POINTS points of its budget
    checks: Tuple[str, ...] = ()  # mechanism measures (benchmarks.claims.checks), reported, not in the verdict
    protocol: str = "auto"  # TEST.PROTOCOL
    image: bool = False  # image (1-frame) data set: SEQ_LEN 1
    size: Tuple[int, int] = (64, 32)  # input (H, W)
    seq_len: int = 4  # frames per clip (train and test); "own"-backbone claims keep their config's
    readme: str = ""  # the project README whose rows link here
    backbone: str = "shared"  # "shared": the pre-trained ResNet-18; "own": the method's own backbone
    registered: str = "before its first run under this design"

    def row(self, name: str) -> Row:
        for r in self.rows:
            if r.name == name:
                return r
        raise KeyError(f"claim {self.name!r} has no row {name!r}")

    def row_epochs(self, row: Row) -> int:
        return row.epochs if row.epochs is not None else self.epochs


#: in a row's opts, replaced by the path of the shared pre-trained backbone file
BACKBONE_TOKEN = "{backbone}"
#: test-mAP points of the reference row's learning curve (evaluated every epochs // CURVE_POINTS epochs)
CURVE_POINTS = 5
#: the ``--quick`` smoke test: every claim on a small set, a few epochs, 2 seeds (not evidence)
QUICK = dict(ids=24, fgpr_ids=18, epochs=3, seeds=2)

#: MARS-layout test sets: 9 cameras and 440 ids give about 220 test ids and 665 queries (expected_test_size)
_MARS = dict(layout="mars", ids=440, cameras=9, min_len=8, max_len=16, distractors=0.0, junk=0.0)


def expected_test_size(data: Dict) -> Dict[str, float]:
    """Expected test ids, query / gallery / test items and training items of a synthetic layout
    from the generator's plan (``fastreid_ext/data/synthetic/layouts.py``): MARS and
    Market-1501: half of the ids are test ids, each seen in k ~ U{2..C} cameras (MARS: 1.3
    tracklets per camera; Market-1501: one image run of U{min_len..max_len} images per camera),
    queries from U{1..k-1} of them (k for 10 % of the ids); FGPR: the real protocol's 100 of 358
    test ids per split, one tracklet per camera, two directions. The exact counts are in the
    generated set's ``.synthetic_done.json``."""
    layout, ids = data["layout"], int(data["ids"])
    if layout == "fgpr":
        test = round(ids * 100 / 358)
        return {"test_ids": test, "queries": 2 * test, "gallery": 2 * test, "test_items": 2 * test,
                "train_items": 2 * (ids - test)}
    c = int(data.get("cameras", 6))
    test, train = ids - ids // 2, ids // 2
    ek = (2 + c) / 2.0
    per_cam = 1.3 if layout == "mars" else (int(data["min_len"]) + int(data["max_len"])) / 2.0
    queries = test * (0.9 * ek / 2.0 + 0.1 * ek)
    items = test * ek * per_cam
    return {"test_ids": test, "queries": round(queries), "gallery": round(items - queries),
            "test_items": round(items), "train_items": round(train * ek * per_cam)}


def _video_baseline() -> Claim:
    loss = "MODEL.LOSSES.NAME"
    full = '("CrossEntropyLoss", "CenterLoss", "OSMLoss", "AttentionLoss")'
    cfg = "Video-Baseline/synthetic_cpu.yml"
    return Claim(
        name="video_baseline",
        method="the video baseline (Fantastic Techniques: temporal attention, OSM + CL centers, attention loss)",
        statement=("On test tracklets with 40 % of the frames corrupted (a random-value block over 60-90 % "
                   "of the frame), the attention loss on erased training frames raises the test mAP of "
                   "the temporal-attention model trained with OSM + CL centers (Table 1 of the paper: "
                   "'B-BOT + Attention and CL loss' against 'B-BOT + OSM + CL Centers'); temporal "
                   "attention with every loss beats average pooling; the CL centers' effect is reported."),
        requires=(),
        data=dict(_MARS, frame_size=(64, 32), occlusion=0.0, corrupt=0.4),
        dataset="SyntheticMARS",
        rows=(
            Row("avg", None, cfg, ("MODEL.TEMPORAL.AGG", "avg", loss, '("CrossEntropyLoss", "CenterLoss", "OSMLoss")'),
                "average pooling (CE + center + OSM-CL)", source="ours"),
            Row("attention", None, cfg, ("MODEL.TEMPORAL.AGG", "attention", loss, full),
                "attention + OSM-CL + attention loss"),
            Row("attention_no_attloss", None, cfg,
                ("MODEL.TEMPORAL.AGG", "attention", loss, '("CrossEntropyLoss", "CenterLoss", "OSMLoss")'),
                "attention + OSM-CL, no attention loss"),
            Row("attention_no_cl", None, cfg,
                ("MODEL.TEMPORAL.AGG", "attention", loss, full, "MODEL.LOSSES.OSM.CL_CENTERS", "False"),
                "attention + OSM (classifier weights) + attention loss"),
        ),
        comparisons=(
            Comparison("attention", "attention_no_attloss", 1.7,
                       "Fantastic Techniques Table 1 (MARS mAP): B-BOT + Attention and CL loss 82.9 - "
                       "B-BOT + OSM + CL Centers 81.2 = +1.7"),
            Comparison("attention", "avg", None,
                       "no size claimed: the paper starts from Gao & Nevatia's temporal attention and "
                       "reports no average-pooling row (Table 1)"),
            Comparison("attention", "attention_no_cl", None,
                       "no gain claimed for CL centers on mAP: Table 1 B-BOT + OSM 82.4, + CL Centers 81.2"),
        ),
        seeds=4, epochs=10, curve_row="attention_no_attloss",
        checks=("corrupted_attention_below_uniform",),
        readme="docs/video-baseline.md",
    )


def _fgreid() -> Claim:
    data = dict(_MARS, frame_size=(64, 32), groups=2)  # group-wise needs a group for every item
    stage1 = Row("stage1", "fgreid", "Synthetic/stage1_video_baseline.yml", (),
                 "stage 1: video baseline", stage=True)
    return Claim(
        name="fgreid",
        method="FGReID",
        statement=("With identities drawn in 2 shared uniforms (they differ in small details: hair, "
                   "shoes, bag, badge, body shape, gait), FGReID with CNN_MARS started from a stage-1 "
                   "video baseline beats that baseline continued for the same iterations on the same "
                   "data, in group-wise test mAP (queries and gallery within one uniform group)."),
        requires=("fgreid",),
        data=data,
        dataset="SyntheticMARS",
        rows=(
            stage1,
            Row("video_baseline", "fgreid", "Synthetic/stage1_video_baseline.yml", (),
                "video baseline, continued from stage 1", init_from="stage1"),
            Row("fgreid", "fgreid", "Synthetic/fgreid.yml", (), "FGReID (CNN_MARS from stage 1)",
                init_from="stage1", init_key="MODEL.FGREID.MARS_WEIGHTS"),
        ),
        comparisons=(
            Comparison("fgreid", "video_baseline", 3.3,
                       "FGReID Table 2 (MARS mAP) FGReID 86.2 - Fantastic Techniques Table 1 "
                       "B-BOT + Attention and CL loss 82.9 = +3.3"),
        ),
        seeds=4, epochs=10, curve_row="video_baseline",
        protocol="groupwise",
        readme="projects/FGReID/README.md",
    )


def _mgrafa(name: str, method: str, statement: str, extra_opts: Tuple[str, ...] = (),
            registered: str = "before its first run under this design") -> Claim:
    """MG-RAFA's Table 2 rows at 128x64 (16x8 / 8x4 / 4x2 / 2x1 granularities) with the same
    losses in every row (ID + triplet on the aggregated feature; Eq. (7)'s per-group losses off:
    an ablation row with them does not fit the 4 h limit at this input size)."""
    cfg = "synthetic_cpu.yml"
    att = ("MODEL.MGRAFA.ATTENTION", "rafa", "MODEL.MGRAFA.GROUP_LOSS", "False") + extra_opts
    return Claim(
        name=name, method=method, statement=statement, requires=("mgrafa",),
        data=dict(_MARS, frame_size=(128, 64), occlusion=0.0, part_occlusion=0.5, misalign=0.05,
                  occluder_clothes=1.0),
        dataset="SyntheticMARS",
        rows=(
            Row("avg", "mgrafa", "synthetic_cpu_baseline.yml", (), "Baseline (average pooling)"),
            Row("sg_rafa", "mgrafa", cfg, att + ("MODEL.MGRAFA.NUM_GROUPS", "1", "MODEL.MGRAFA.GRANULARITY",
                                                 "single"), "SG-RAFA (S=1)"),
            Row("mg_rafa", "mgrafa", cfg, att + ("MODEL.MGRAFA.NUM_GROUPS", "4", "MODEL.MGRAFA.GRANULARITY",
                                                 "multi"), "MG-RAFA (N=4)"),
        ),
        comparisons=(
            Comparison("mg_rafa", "avg", 3.8, "MG-RAFA Table 2 (MARS mAP): MG-RAFA (N=4) 85.9 - Baseline 82.1 = +3.8"),
            Comparison("mg_rafa", "sg_rafa", 0.8, "MG-RAFA Table 2 (MARS mAP): MG-RAFA (N=4) 85.9 - SG-RAFA (S=1) 85.1 = +0.8"),
        ),
        seeds=2, epochs=5, curve_row="avg", size=(128, 64),
        checks=("occluded_nodes_below_uniform",),
        readme="projects/MGRAFA/README.md", registered=registered,
    )


def _mgre() -> Claim:
    paper = ("MODEL.MGRE.LOC_REID_GRAD", "1.0", "MODEL.MGRE.LOC_PARAM", "paper")
    return Claim(
        name="mgre",
        method="MGRe",
        statement=("With pose and scale variation (per-tracklet yaw offset U(-pi, pi) x 0.5, person "
                   "scale exp(U(-0.4, 0.4)) and placement), MGRe with the paper's recipe beats its "
                   "baseline (ResNet + GAP + BNNeck) and 'MGRe w/o JO' (regions from the keypoint "
                   "boxes, no location modules) in test mAP (Table 7)."),
        requires=("mgre",),
        data=dict(layout="market1501", ids=600, cameras=6, frame_size=(64, 32), min_len=3, max_len=6,
                  scale_var=0.4, pose_var=0.5, distractors=0.0, junk=0.0),
        dataset="SyntheticMarket1501",
        rows=(
            Row("baseline", "mgre", "synthetic_cpu_baseline.yml", (), "Baseline"),
            Row("mgre_no_jo", "mgre", "synthetic_cpu.yml", ("MODEL.MGRE.JOINT_OPTIMIZATION", "False"),
                "MGRe w/o JO"),
            Row("mgre", "mgre", "synthetic_cpu.yml", paper, "MGRe (paper recipe)"),
            Row("mgre_ours", "mgre", "synthetic_cpu.yml", (), "MGRe, LOC_REID_GRAD 0.01 + bounded boxes (ours)",
                source="ours"),
        ),
        comparisons=(
            Comparison("mgre", "baseline", 4.3, "MGRe Table 7 (Market1501 mAP): MGRe 90.1 - Baseline 85.8 = +4.3"),
            Comparison("mgre", "mgre_no_jo", 0.6, "MGRe Table 7 (Market1501 mAP): MGRe 90.1 - MGRe w/o JO 89.5 = +0.6"),
            Comparison("mgre_ours", "baseline", None, "ours: no paper number"),
        ),
        seeds=4, epochs=6, curve_row="baseline", image=True,
        readme="projects/MGRe/README.md",
    )


def _fgpose(name: str, data: Dict, dataset: str, protocol: str, sesoi: float, source: str,
            statement: str, steps: Tuple[int, int, int, int], seeds: int) -> Claim:
    """Section 5.1's staged schedule (steps 1-4, each from the previous step's checkpoint) against
    the global appearance stream trained for the schedule's total epochs (ours: equal budget);
    T = 8 segments (delta t = 4: clips of 12 frames), 128x64 frames, FGPose's own tiny backbones."""
    seg = ("MODEL.FGPOSE.SEGMENT_LEN", "8", "MODEL.FGPOSE.DELTA_T", "4", "INPUT.VIDEO.SEQ_LEN", "12",
           "TEST.VIDEO.SEQ_LEN", "12")
    return Claim(
        name=name, method="FG dynamic pose (FGPose)", statement=statement, requires=("fgpose",),
        data=data, dataset=dataset,
        rows=(
            Row("step1", "fgpose", "synthetic_cpu_step1.yml", seg, "step 1: global + joint-specific", epochs=steps[0],
                stage=True),
            Row("step2", "fgpose", "synthetic_cpu_step2.yml", seg, "step 2: motion", init_from="step1",
                epochs=steps[1], stage=True),
            Row("step3", "fgpose", "synthetic_cpu_step3.yml", seg, "step 3: motion-attentive", init_from="step2",
                epochs=steps[2], stage=True),
            Row("fgpose", "fgpose", "synthetic_cpu_step4.yml", seg, "FGPose (step 4: all streams)",
                init_from="step3", epochs=steps[3]),
            Row("global", "fgpose", "synthetic_cpu.yml",
                seg + ("MODEL.FGPOSE.STREAMS", '["global"]', "MODEL.FGPOSE.TRAIN_STREAMS", '["global"]'),
                "global appearance stream only (the schedule's total epochs)", epochs=sum(steps), source="ours"),
        ),
        comparisons=(Comparison("fgpose", "global", sesoi, source),),
        seeds=seeds, epochs=sum(steps), curve_row="global", protocol=protocol, size=(128, 64), backbone="own",
        readme="projects/FGPose/README.md",
    )


CLAIMS: Tuple[Claim, ...] = (
    _video_baseline(),
    _fgreid(),
    _mgrafa(
        "mgrafa", "MG-RAFA",
        statement=("With half of the frames partially occluded by a passer-by's clothes (two saturated "
                   "garment colours over 25-50 % of one side) and every frame misaligned (std 5 % of the "
                   "frame), at 128x64 input (granularities 16x8 / 8x4 / 4x2 / 2x1), MG-RAFA (N=4) beats "
                   "average pooling and SG-RAFA (S=1) in test mAP, every row with the same losses.")),
    _mgrafa(
        "mgrafa_residual", "MG-RAFA, scores from the temporal residual (ours)",
        statement=("As `mgrafa`, with the attention rows scored from the temporal residual "
                   "(`SCORE_INPUT temporal_residual`, ours): MG-RAFA (N=4) beats average pooling and "
                   "SG-RAFA (S=1) in test mAP."),
        extra_opts=("MODEL.MGRAFA.SCORE_INPUT", "temporal_residual"),
        registered="before its first run under this design (the score input is ours, not the paper's)"),
    _mgre(),
    _fgpose(
        "fgpose", dict(layout="fgpr", ids=358, frame_size=(128, 64), min_len=24, max_len=40, appearance="per_group"),
        "SyntheticFGPR", "fgpr", 18.6,
        "FGPose Table 3 (FGPR all groups mAP): Full model 88.4 - Global appearance stream 69.8 = +18.6",
        statement=("On the FGPR layout at its full 358 identities (100 test ids per split, two-direction "
                   "protocol), identities in the same clothes and body shape within a group (only the "
                   "gait differs), FGPose trained with section 5.1's staged schedule beats its global "
                   "appearance stream in test mAP."),
        steps=(16, 8, 8, 8), seeds=6),  # the paper: 50 epochs each step
    _fgpose(
        "fgpose_mars", dict(_MARS, frame_size=(128, 64), min_len=24, max_len=40), "SyntheticMARS", "auto", 6.6,
        "FGPose Table 13 (MARS mAP): Full model 66.9 - Global appearance stream 60.3 = +6.6",
        statement=("On the MARS layout (about 220 test ids, 665 queries), FGPose trained with section "
                   "5.1's staged schedule beats its global appearance stream in test mAP."),
        steps=(8, 4, 4, 4), seeds=6),
)


def get_claim(name: str) -> Claim:
    for c in CLAIMS:
        if c.name == name:
            return c
    raise KeyError(f"unknown claim {name!r}; known: {', '.join(c.name for c in CLAIMS)}")
