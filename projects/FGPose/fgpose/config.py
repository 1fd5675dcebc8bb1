"""Config keys of the FGPose project (Yin, Wu, Zheng, "Fine-Grained Person Re-identification",
IJCV 2020), added with :func:`add_fgpose_config`.

Streams: ``global`` (global appearance), ``motion`` (OFF-style motion), ``ma`` (motion-attentive
local dynamic pose, Eq. (1)-(3)), ``js`` (joint-specific local dynamic pose, FG-FN + FG-ULN).

The four training steps of section 5.1 (``configs/fgpr_step{1,2,3,4}.yml``):

====  ==============================  ============================  =========================
step  STREAMS                         TRAIN_STREAMS                 starts from
====  ==============================  ============================  =========================
1     global, js                      global, js                    ImageNet (FGPR) / scratch
2     global, motion, js              motion                        step 1
3     global, motion, ma, js          ma                            step 2
4     global, motion, ma, js          global, motion, ma, js        step 3
====  ==============================  ============================  =========================

Ablations (all on the step-4 model unless said otherwise):

==========================================  ==================================================
row                                         switch
==========================================  ==================================================
Table 3 global appearance stream            TEST_STREAMS [global]
Table 3 motion stream                       TEST_STREAMS [motion]
Table 3 local dynamic pose stream           TEST_STREAMS [ma, js]
Table 3 / 4 full model                      TEST_STREAMS [] (= STREAMS)
Table 4 without motion-attentive feature    STREAMS [global, motion, js] (steps 3-4 without ma)
Table 4 without joint-specific feature      STREAMS [global, motion, ma] (steps 1-4 without js)
Table 5 k added attentions (0..5)           ATTENTION_LEVELS [1..k] ([] for k = 0)
Table 6 attention of level j only           ATTENTION_LEVELS [j]
Table 7 coarse-to-fine                      ATTENTION_ORDER coarse_to_fine
Table 8 CNN-guided attentions               ATTENTION_NET cnn
Table 8 appearance-guided attentions        ATTENTION_SOURCE appearance
Table 9 alpha                               ALPHA
Table 10 loss weights w1, w2                W1, W2
Table 11 distance weights a1, a2            DIST_WEIGHTS (per TEST_STREAMS entry)
==========================================  ==================================================
"""
from __future__ import annotations

from typing import List, Sequence, Tuple

from fastreid.config import CfgNode as CN
from fastreid_ext.config import exclude_from_embedding_hash, register_validator

__all__ = ["add_fgpose_config", "validate_fgpose_config", "stream_lists", "STREAMS", "ATTENTION_ORDERS",
           "ATTENTION_NETS", "ATTENTION_SOURCES", "MOTION_BACKBONES"]

#: stream names, in the order of the test embedding
STREAMS = ("global", "motion", "ma", "js")
ATTENTION_ORDERS = ("fine_to_coarse", "coarse_to_fine")
ATTENTION_NETS = ("rnn", "cnn")
ATTENTION_SOURCES = ("motion", "appearance")
MOTION_BACKBONES = ("separate", "shared")

# training-only keys: the embedding of an input does not depend on them (deployment config hash)
exclude_from_embedding_hash("MODEL.FGPOSE.TRAIN_STREAMS", "MODEL.FGPOSE.W1", "MODEL.FGPOSE.W2",
                            "MODEL.FGPOSE.CE_EPSILON")


def add_fgpose_config(cfg: CN) -> CN:
    """Add ``MODEL.FGPOSE`` to ``cfg`` in place (detectron2 convention) and return it.

    Safe to call twice. ``cfg`` must already hold the plugin's keys (``fastreid_ext.get_cfg()``).
    Registers :func:`validate_fgpose_config` (run by ``build_config``).
    """
    register_validator(validate_fgpose_config)
    if "FGPOSE" in cfg.MODEL:
        return cfg
    _C = cfg
    _C.MODEL.FGPOSE = CN()
    # streams built (and their order in the test embedding); section 5.1 step configs set it
    _C.MODEL.FGPOSE.STREAMS = ["global", "motion", "ma", "js"]
    # streams whose losses are used and whose parameters train; the others are frozen
    # (requires_grad False, BatchNorm in eval mode). [] = all of STREAMS
    _C.MODEL.FGPOSE.TRAIN_STREAMS = []
    # streams in the test embedding (Table 3 rows); [] = all of STREAMS
    _C.MODEL.FGPOSE.TEST_STREAMS = []
    # segment length T (the paper: 10 frames) and the motion stream's delay Delta t (5): a clip
    # holds SEGMENT_LEN + DELTA_T consecutive frames (INPUT.VIDEO.SEQ_LEN and TEST.VIDEO.SEQ_LEN)
    _C.MODEL.FGPOSE.SEGMENT_LEN = 10
    _C.MODEL.FGPOSE.DELTA_T = 5
    # motion stream: "separate" (its own backbone, built like the global one: section 4.1) or
    # "shared" (OFF units on the global stream's maps: section 5.1 step 2's reading)
    _C.MODEL.FGPOSE.MOTION_BACKBONE = "separate"
    _C.MODEL.FGPOSE.OFF_REDUCTION = 4        # OFF unit: 1x1 conv to C / OFF_REDUCTION channels (min 8)
    # motion-attentive stream (Eq. 1-3)
    _C.MODEL.FGPOSE.ALPHA = 0.2              # Eq. (2)
    _C.MODEL.FGPOSE.ATTENTION_LEVELS = [1, 2, 3, 4, 5]  # masked levels (1 = stem ... 5 = layer4)
    _C.MODEL.FGPOSE.ATTENTION_ORDER = "fine_to_coarse"
    _C.MODEL.FGPOSE.ATTENTION_NET = "rnn"    # "rnn" (ConvLSTM over levels) | "cnn" (Table 8)
    _C.MODEL.FGPOSE.ATTENTION_SOURCE = "motion"  # "motion" | "appearance" (Table 8)
    _C.MODEL.FGPOSE.RNN_HIDDEN = 64          # ConvLSTM hidden channels (not stated)
    # joint-specific stream
    _C.MODEL.FGPOSE.PART_SIZE = 224          # part images are PART_SIZE x PART_SIZE (the paper: 224)
    _C.MODEL.FGPOSE.FN_WIDTH = 32            # FG-FN channels: W, 2W, 4W, 8W, 8W (5 conv layers)
    _C.MODEL.FGPOSE.JS_DIM = 512             # FG-ULN output (frame-level joint-specific feature)
    _C.MODEL.FGPOSE.PART_MARGIN = 0.04       # part box margin, fraction of the frame height
    # Eq. (5): loss = global + W1 (JS + MA) + W2 motion
    _C.MODEL.FGPOSE.W1 = 1.0
    _C.MODEL.FGPOSE.W2 = 1.0
    _C.MODEL.FGPOSE.CE_EPSILON = 0.0         # label smoothing (0: the paper's softmax loss)
    # test: each stream's BN feature L2-normalised (True) before Eq. (4)'s summed distances
    _C.MODEL.FGPOSE.EVAL_NORM = True
    _C.MODEL.FGPOSE.DIST_WEIGHTS = []        # one per test stream (Eq. 6's a1, a2); [] = all 1
    # build_fgpose_tiny_backbone (CPU runs): BasicBlock ResNet, one block per stage, widths
    # TINY_WIDTH x (1, 2, 4, 8)
    _C.MODEL.FGPOSE.TINY_WIDTH = 16
    return cfg


def stream_lists(streams: Sequence[str], train_streams: Sequence[str] = (),
                 test_streams: Sequence[str] = ()) -> Tuple[List[str], List[str], List[str]]:
    """``MODEL.FGPOSE.STREAMS`` / ``TRAIN_STREAMS`` / ``TEST_STREAMS`` in :data:`STREAMS` order,
    an empty TRAIN / TEST_STREAMS read as all of STREAMS."""
    built = [s for s in STREAMS if s in streams]
    return (built, [s for s in STREAMS if s in (list(train_streams) or built)],
            [s for s in STREAMS if s in (list(test_streams) or built)])


def _stream_errors(m: CN) -> List[str]:
    """Messages for bad ``STREAMS`` / ``TRAIN_STREAMS`` / ``TEST_STREAMS`` / ``DIST_WEIGHTS``."""
    for name in ("STREAMS", "TRAIN_STREAMS", "TEST_STREAMS"):
        values = [str(s) for s in m[name]]
        if any(s not in STREAMS for s in values) or len(set(values)) != len(values):
            return [f"MODEL.FGPOSE.{name}: unknown or repeated streams {values}; known: {STREAMS}"]
    if not m.STREAMS:
        return ["MODEL.FGPOSE.STREAMS is empty"]
    streams, train, test = stream_lists(m.STREAMS, m.TRAIN_STREAMS, m.TEST_STREAMS)
    for name, values in (("TRAIN_STREAMS", train), ("TEST_STREAMS", test)):
        if any(s not in streams for s in values):
            return [f"MODEL.FGPOSE.{name} {values} must be a subset of STREAMS {streams}"]
    if m.DIST_WEIGHTS and len(m.DIST_WEIGHTS) != len(test):
        return [f"MODEL.FGPOSE.DIST_WEIGHTS needs one weight per test stream {test}, got {list(m.DIST_WEIGHTS)}"]
    return []


def _switch_errors(m: CN) -> List[str]:
    """Messages for bad ``MOTION_BACKBONE`` / ``ATTENTION_*`` / ``SEGMENT_LEN`` / ``DELTA_T``."""
    order, net, source = m.ATTENTION_ORDER, m.ATTENTION_NET, m.ATTENTION_SOURCE
    checks = (
        (m.MOTION_BACKBONE in MOTION_BACKBONES,
         f"unknown MODEL.FGPOSE.MOTION_BACKBONE {m.MOTION_BACKBONE!r}; known: {MOTION_BACKBONES}"),
        (order in ATTENTION_ORDERS and net in ATTENTION_NETS and source in ATTENTION_SOURCES,
         f"MODEL.FGPOSE attention switches: ORDER in {ATTENTION_ORDERS}, NET in {ATTENTION_NETS}, "
         f"SOURCE in {ATTENTION_SOURCES}; got {order!r}, {net!r}, {source!r}"),
        (not ("ma" in m.STREAMS and source == "motion" and "motion" not in m.STREAMS),
         "the motion-attentive stream ('ma') with ATTENTION_SOURCE motion needs the 'motion' stream"),
        (int(m.SEGMENT_LEN) >= 1 and int(m.DELTA_T) >= 1,
         f"SEGMENT_LEN and DELTA_T must be >= 1, got {m.SEGMENT_LEN}, {m.DELTA_T}"),
    )
    return [message for ok, message in checks if not ok]


def _clip_length_errors(cfg: CN) -> List[str]:
    """An FGPose model reads clips of ``SEGMENT_LEN + DELTA_T`` consecutive frames: the
    loaders' ``INPUT.VIDEO.SEQ_LEN`` and ``TEST.VIDEO.SEQ_LEN`` must be that (other
    meta-architectures do not read ``MODEL.FGPOSE``)."""
    if cfg.MODEL.META_ARCHITECTURE != "FGPose":
        return []
    need = cfg.MODEL.FGPOSE.SEGMENT_LEN + cfg.MODEL.FGPOSE.DELTA_T
    return [f"{key}.VIDEO.SEQ_LEN must be MODEL.FGPOSE.SEGMENT_LEN + DELTA_T = {need} (segment t and segment "
            f"t + delta t in one clip of consecutive frames), got {cfg[key].VIDEO.SEQ_LEN}"
            for key in ("INPUT", "TEST") if int(cfg[key].VIDEO.SEQ_LEN) != need]


def validate_fgpose_config(cfg: CN) -> None:
    """Refuse (``ValueError``, one line naming the key) ``MODEL.FGPOSE`` values the model cannot
    be built with (and, for an FGPose model, clip lengths other than ``SEGMENT_LEN + DELTA_T``);
    nothing to check in a config without ``MODEL.FGPOSE``. Run by ``build_config`` (registered
    by :func:`add_fgpose_config`) and by ``FGPose.from_config``."""
    if "FGPOSE" not in cfg.MODEL:
        return
    errors = _stream_errors(cfg.MODEL.FGPOSE) + _switch_errors(cfg.MODEL.FGPOSE) + _clip_length_errors(cfg)
    if errors:
        raise ValueError(errors[0])
