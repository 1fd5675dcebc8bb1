"""Config keys of the MG-RAFA project, added with :func:`add_mgrafa_config`.

Table 2 rows as settings of ``MODEL.MGRAFA`` (with ``MODEL.HEADS.NAME: MGRAFAHead``):

=================  ===========  ==========  ===========
row                ATTENTION    NUM_GROUPS  GRANULARITY
=================  ===========  ==========  ===========
Baseline           avg          1           single
MG-AFA (N=4)       afa          4           multi
SG-RAFA (S=1)      rafa         1           single
SG-RAFA (S=4)      rafa         4           single
MG-RAFA (N=2)      rafa         2           multi
MG-RAFA (N=4)      rafa         4           multi
=================  ===========  ==========  ===========

Table 4 rows: ``ATTENTION nl_s`` (NL(S)), ``nl_st`` (NL(ST)), SG-RAFA = ``rafa`` with one group.
Table 5 rows (N = 4, ``GRANULARITY multi``): ``rga_sc`` (RGA-SC (MG)), ``se``, ``cbam``; their
single-granularity versions with ``NUM_GROUPS 1``.

Table 3 rows: ``REFERENCE`` = ``temporal_avg`` (ours, 16x8x1), ``spatial_pool`` (S-P, size
``REF_SPATIAL_SIZE`` per frame, all T frames), ``temporal_pool`` (T-P, ``REF_TEMPORAL_SIZE``
temporal bins) or ``all`` (ST, every node).
"""
from __future__ import annotations

from fastreid.config import CfgNode as CN
from fastreid_ext.config import register_validator

__all__ = ["add_mgrafa_config", "validate_mgrafa_config", "GRANULARITIES", "EVAL_FEATS"]

#: ``MODEL.MGRAFA.GRANULARITY`` values (section 3.3)
GRANULARITIES = ("multi", "single")
#: ``MODEL.MGRAFA.EVAL_FEAT`` values
EVAL_FEATS = ("before", "after")


def add_mgrafa_config(cfg: CN) -> CN:
    """Add ``MODEL.MGRAFA`` to ``cfg`` in place (detectron2 convention) and return it.

    Safe to call twice. ``cfg`` must already hold the plugin's keys (``fastreid_ext.get_cfg()``).
    Registers :func:`validate_mgrafa_config` (run by ``build_config``).
    """
    register_validator(validate_mgrafa_config)
    if "MGRAFA" in cfg.MODEL:
        return cfg
    _C = cfg
    _C.MODEL.MGRAFA = CN()
    # aggregation of the (B, T, C, H, W) frame maps: "avg" (the paper's Baseline, global
    # spatio-temporal average), "rafa" (Eq. 1-4), "afa" (MG-AFA: attention from appearance only),
    # "se" / "cbam" / "rga_sc" (Table 5: other attention modules under the same multi-granularity
    # design), "nl_s" / "nl_st" (Table 4: non-local within each frame / over all nodes, then the
    # spatio-temporal average; single group). Each value v is registered in the core's
    # temporal-aggregation registry as "mgrafa_v" (mgrafa.aggregation.registry_name)
    _C.MODEL.MGRAFA.ATTENTION = "rafa"
    # start of the rafa / afa attention: "uniform" (theta's last BN gamma 0, beta 1: uniform
    # softmax = the average baseline, gradient flowing), "near_uniform" (gamma 0.1, beta 1: within
    # ~10 % of the average, every attention layer learns from the first step) or "random" (BN
    # defaults gamma 1, beta 0)
    _C.MODEL.MGRAFA.ATT_INIT = "uniform"
    # learning-rate factor of the aggregation's parameters (rafa / afa: mu, nu, phi, psi, theta;
    # the SE / CBAM / RGA-SC / non-local blocks of the comparison rows alike), applied on top of
    # the host's SOLVER.HEADS_LR_FACTOR / BIAS_LR_FACTOR; the schedule scales it like every rate
    # (SOLVER.ETA_MIN_LR of the cosine schedule is not scaled); a resumed run keeps the rates
    # saved in its optimizer state. Not in the paper (README: with Adam the attention's contrast
    # grows by about the learning rate per step)
    _C.MODEL.MGRAFA.ATT_LR_FACTOR = 1.0
    # what the rafa / afa scores are computed from: "node" (Eq. (1)-(3), x_i itself) or
    # "temporal_residual" (ours: x_i minus the temporal mean at its position, so a pattern every
    # frame shares at a position cancels; the aggregation still sums x_i)
    _C.MODEL.MGRAFA.SCORE_INPUT = "node"
    # number of channel groups: N granularities ("multi") or S splits ("single")
    _C.MODEL.MGRAFA.NUM_GROUPS = 4
    # "multi": group m is spatially average-pooled by 2^(m-1) (section 3.3);
    # "single": every group keeps the full resolution (SG-RAFA(S))
    _C.MODEL.MGRAFA.GRANULARITY = "multi"
    # reduction ratio s of mu, nu, phi (C -> C/s) and psi (D -> D/s); not stated in the paper,
    # 8 as in RGA (same authors)
    _C.MODEL.MGRAFA.REDUCTION = 8
    # S-RFN strategy of Table 3: "temporal_avg" | "spatial_pool" | "temporal_pool" | "all"
    _C.MODEL.MGRAFA.REFERENCE = "temporal_avg"
    _C.MODEL.MGRAFA.REF_SPATIAL_SIZE = [8, 2]  # (h, w) per frame for "spatial_pool"
    _C.MODEL.MGRAFA.REF_TEMPORAL_SIZE = 2      # temporal bins for "temporal_pool"
    # frames per clip the "spatial_pool" / "temporal_pool" / "all" references are sized for
    # (their number of reference nodes D depends on T); 0 = INPUT.VIDEO.SEQ_LEN
    _C.MODEL.MGRAFA.NUM_FRAMES = 0
    # Eq. (7): ID + triplet losses on each group's v_g, averaged over groups (only when > 1 group)
    _C.MODEL.MGRAFA.GROUP_LOSS = True
    # embedding returned at test time: "before" = v (the paper matches v by l2 distance),
    # "after" = BN(v) (host BNNeck convention)
    _C.MODEL.MGRAFA.EVAL_FEAT = "before"
    return cfg


def validate_mgrafa_config(cfg: CN) -> None:
    """Refuse ``MODEL.MGRAFA`` values the aggregation / head cannot be built with (an unknown
    name: ``KeyError``; a bad number: ``ValueError``; one line naming the key); nothing to check
    in a config without ``MODEL.MGRAFA``. Run by ``build_config`` (registered by
    :func:`add_mgrafa_config`), by ``MGRAFANet.from_config`` and by the ``mgrafa_<attention>``
    aggregation builders (the video baseline's ``MODEL.TEMPORAL.AGG``)."""
    if "MGRAFA" not in cfg.MODEL:
        return
    from .aggregation import ATTENTIONS, SCORE_INPUTS
    from .nodes import REFERENCE_STRATEGIES
    from .rafa import ATTENTION_INITS

    m = cfg.MODEL.MGRAFA
    unknown = (
        (m.ATTENTION in ATTENTIONS, f"unknown MODEL.MGRAFA.ATTENTION {m.ATTENTION!r}; known: {ATTENTIONS}"),
        (m.ATT_INIT in ATTENTION_INITS, f"unknown MODEL.MGRAFA.ATT_INIT {m.ATT_INIT!r}; known: {ATTENTION_INITS}"),
        (m.SCORE_INPUT in SCORE_INPUTS, f"unknown MODEL.MGRAFA.SCORE_INPUT {m.SCORE_INPUT!r}; known: {SCORE_INPUTS}"),
        (m.REFERENCE in REFERENCE_STRATEGIES,
         f"unknown MODEL.MGRAFA.REFERENCE {m.REFERENCE!r}; known: {REFERENCE_STRATEGIES}"),
        (m.GRANULARITY in GRANULARITIES,
         f"unknown MODEL.MGRAFA.GRANULARITY {m.GRANULARITY!r}; known: {', '.join(GRANULARITIES)}"),
        (m.EVAL_FEAT in EVAL_FEATS, f"unknown MODEL.MGRAFA.EVAL_FEAT {m.EVAL_FEAT!r} (before | after)"),
    )
    for ok, message in unknown:
        if not ok:
            raise KeyError(message)
    if not m.ATT_LR_FACTOR > 0:
        raise ValueError(f"MODEL.MGRAFA.ATT_LR_FACTOR must be > 0, got {m.ATT_LR_FACTOR}")
    if m.REDUCTION < 1:
        raise ValueError(f"MODEL.MGRAFA.REDUCTION must be >= 1, got {m.REDUCTION}")
