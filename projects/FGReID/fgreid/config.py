"""Config keys of the FGReID project (``add_fgreid_config``)."""
from __future__ import annotations

from fastreid.config import CfgNode as CN
from fastreid_ext.config import exclude_from_embedding_hash, register_moved_key, register_validator

__all__ = ["add_fgreid_config", "validate_fgreid_config", "INITS"]

#: ``MODEL.FGREID.INIT``: how the non-backbone layers start
INITS = ("host", "public")

# the CNN_MARS checkpoint only sets the starting weights: the trained weights file decides the
# embedding, so a deployment hash must not change with it
exclude_from_embedding_hash("MODEL.FGREID.MARS_WEIGHTS")
# TEST.ST.* (the old spelling of FGREID.ST.*, in older configs and run folders) is read as FGREID.ST.*
register_moved_key("TEST.ST", "FGREID.ST")


def add_fgreid_config(cfg: CN) -> CN:
    """Add ``MODEL.FGREID``, ``FGREID.ST`` and the FGReID loss nodes to ``cfg`` in place and
    return it.

    Needs the plugin keys (``fastreid_ext.add_ext_config``) first; safe to call twice.
    Defaults are the paper's MARS model (the FGReID paper, section 3) with the loss weights of the
    authors' released code. Registers :func:`validate_fgreid_config` (run by ``build_config``).
    """
    register_validator(validate_fgreid_config)
    if "FGREID" in cfg.MODEL:
        return cfg
    _C = cfg
    _C.MODEL.FGREID = CN()
    _C.MODEL.FGREID.REDUCED_DIM = 1024     # c*: output of both 1x1 reductions (f* = 2 c*)
    _C.MODEL.FGREID.NL_REDUCTION = 4       # c_bar = c* / NL_REDUCTION in the non-local block
    _C.MODEL.FGREID.MIN_SCOPE = "clip"     # Eq. 2 min over: "clip" (paper) | "batch" (authors' code)
    # non-backbone init: "host" (fan-out reductions, classifier std 0.001) | "public" (the authors'
    # code: fan-in reductions, PyTorch-default theta / g / classifier); Base-FGReID.yml: public
    _C.MODEL.FGREID.INIT = "host"
    # ---- Table 8 ablation switches
    _C.MODEL.FGREID.S_CHANNEL = True       # False: uniform channel weights 1/c* ("w/o S_channel")
    _C.MODEL.FGREID.NON_LOCAL = True       # False: A2 = A1 ("w/o non-local block")
    _C.MODEL.FGREID.SHARED_QK = True       # False: separate key conv ("KQV")
    _C.MODEL.FGREID.GFM = True             # False: no global branch / Y1 ("w/o GFM")
    _C.MODEL.FGREID.CONTEXT = True         # False: no context branch / Y2 ("only GFM")
    _C.MODEL.FGREID.FGM = True             # False: A_maps = 1, plain spatial average ("w/o FGM")
    _C.MODEL.FGREID.SHARED_BACKBONE = False  # True: one ResNet for both branches ("Baseline-1R")
    # ---- CNN_MARS initialisation (CNN_ImageNet uses MODEL.BACKBONE.PRETRAIN / PRETRAIN_PATH)
    _C.MODEL.FGREID.MARS_WEIGHTS = ""      # checkpoint of a MARS-trained model; "" = random init ("Baseline")
    _C.MODEL.FGREID.MARS_PREFIX = "backbone."  # key prefix of the backbone in that checkpoint
    # FGReID* (Tables 5-6): start from a whole FGReID model trained on MARS (all weights but the
    # class-dependent classifier and loss parameters); "" = off (plain FGReID)
    _C.MODEL.FGREID.PRETRAINED_MODEL = ""

    # ---- spatial-temporal statistics (st-ReID) for the "+ ST" rows (Tables 5, 7): read only by
    # projects/FGReID/tools/eval_st.py (ENABLED: the config is an "+ ST" row; training ignores them)
    _C.FGREID = CN()
    _C.FGREID.ST = CN({"ENABLED": False})
    _C.FGREID.ST.INTERVAL = 100.0          # frames per histogram bin
    _C.FGREID.ST.MAX_HIST = 5000           # bins
    _C.FGREID.ST.SIGMA = 50.0              # Gaussian smoothing over bins (then re-normalised, public order)
    # Market1501: add the per-sequence frame offsets (public generate_seq_market.py); False: raw frames
    _C.FGREID.ST.SEQ_OFFSETS = True
    _C.FGREID.ST.ALPHA = 5.0               # joint score: 1/(1+e^(-a s)) * 1/(1+lam e^(-a p_st))
    _C.FGREID.ST.LAMBDA = 2.0

    # ---- FGReID losses (Eq. 11-12); each is switched on by its name in MODEL.LOSSES.NAME
    _C.MODEL.LOSSES.VAR = CN()
    _C.MODEL.LOSSES.VAR.SCALE = 6.818e-4   # W^var (authors' released value)
    _C.MODEL.LOSSES.VAR.NORM = "paper"     # "paper" (Eq. 11: sum over ids) | "code" (mean over ids, unbiased: W^var's)
    _C.MODEL.LOSSES.KL = CN()
    _C.MODEL.LOSSES.KL.SCALE = 1.0         # W^KL
    _C.MODEL.LOSSES.KL.MARGIN = 0.005      # m_cs
    _C.MODEL.LOSSES.SR = CN()
    _C.MODEL.LOSSES.SR.SCALE = 1.0         # W^sr
    _C.MODEL.LOSSES.SR.MARGIN_RANK = 2.0   # m_r
    _C.MODEL.LOSSES.SR.MARGIN_LIMIT = 1.0  # m_s
    return cfg


def validate_fgreid_config(cfg: CN) -> None:
    """Refuse (``ValueError``, one line naming the key) ``MODEL.FGREID`` / ``MODEL.LOSSES.VAR``
    values the model cannot be built with; nothing to check in a config without
    ``MODEL.FGREID``. Run by ``build_config`` (registered by :func:`add_fgreid_config`) and by
    ``FGReID.from_config``."""
    if "FGREID" not in cfg.MODEL:
        return
    from .layers import MIN_SCOPES
    from .losses.functional import VARIANCE_NORMS

    f, norm = cfg.MODEL.FGREID, cfg.MODEL.LOSSES.VAR.NORM
    checks = (
        (f.INIT in INITS, f"MODEL.FGREID.INIT must be one of {INITS}, got {f.INIT!r}"),
        (f.MIN_SCOPE in MIN_SCOPES, f"MODEL.FGREID.MIN_SCOPE must be one of {MIN_SCOPES}, got {f.MIN_SCOPE!r}"),
        (f.GFM or f.CONTEXT, "MODEL.FGREID: GFM and CONTEXT cannot both be off"),
        (f.GFM or f.FGM, "MODEL.FGREID: with GFM off the ImageNet branch only feeds the FGM, "
                         "so FGM cannot be off too"),
        (norm in VARIANCE_NORMS, f"unknown MODEL.LOSSES.VAR.NORM {norm!r}; known: {', '.join(VARIANCE_NORMS)}"),
    )
    for ok, message in checks:
        if not ok:
            raise ValueError(message)
