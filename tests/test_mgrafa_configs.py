"""MG-RAFA configs pin what the paper states (section 4.2: T = 8, 256x128, P x K, l2 matching)
and their learning rate decays where the config says, on the real dataset's epoch, under the
host's scheduler (which starts the step schedule only after the warm-up)."""
import os
import runpy

import pytest

import fastreid_ext  # noqa: F401
from fastreid_ext.config import build_config

ROOT = os.path.join(os.path.dirname(__file__), "..")
CONFIGS = os.path.join(ROOT, "projects", "MGRAFA", "configs")
AUDIT = runpy.run_path(os.path.join(ROOT, "projects", "MGRAFA", "tools", "schedule_audit.py"))

# config -> (train identities of the dataset, P)
REAL = {
    "mars_mgrafa.yml": (625, 16),
    "mars_baseline.yml": (625, 16),
    "ilidsvid_mgrafa.yml": (150, 8),
    "prid2011_mgrafa.yml": (89, 8),
}


def load(name):
    return build_config(os.path.join(CONFIGS, name), [])


@pytest.mark.parametrize("name", sorted(REAL))
def test_configs_pin_the_paper_setting(name):
    cfg = load(name)
    assert cfg.TEST.METRIC == "euclidean"  # "l2 distance" matching of v
    assert cfg.MODEL.MGRAFA.EVAL_FEAT == "before"  # v itself
    assert cfg.INPUT.VIDEO.SEQ_LEN == 8 and cfg.TEST.VIDEO.SEQ_LEN == 8
    assert cfg.INPUT.VIDEO.SAMPLER == "restricted_random"  # T chunks, one random frame each
    assert list(cfg.INPUT.SIZE_TRAIN) == [256, 128] and list(cfg.INPUT.SIZE_TEST) == [256, 128]
    assert cfg.DATALOADER.NUM_INSTANCE == 4  # Z = 4
    assert cfg.SOLVER.IMS_PER_BATCH // cfg.DATALOADER.NUM_INSTANCE == REAL[name][1]  # P
    assert cfg.SOLVER.OPT == "Adam"
    assert cfg.INPUT.FLIP.ENABLED and cfg.INPUT.PADDING.ENABLED and cfg.INPUT.REA.PROB == 0.5
    assert cfg.MODEL.BACKBONE.LAST_STRIDE == 1


@pytest.mark.parametrize("name", sorted(REAL))
def test_lr_decays_at_epochs_40_and_80_on_the_real_epoch(name):
    cfg = load(name)
    ipe = AUDIT["identities_epoch"](cfg, REAL[name][0])
    assert AUDIT["decay_epochs"](cfg, ipe) == [40, 80]
    lrs = AUDIT["epoch_learning_rates"](cfg, ipe)
    assert lrs[20] == pytest.approx(cfg.SOLVER.BASE_LR)  # warm-up over by then
    assert cfg.SOLVER.WARMUP_ITERS == 10 * ipe  # 10 epochs of this dataset


def test_the_audit_reproduces_the_swallowed_decay():
    """The old setting (500 warm-up iterations, STEPS [40, 80]) on 9- and 5-iteration epochs:
    one decay near epoch 96, and none at all (the issue's numbers)."""
    cfg = load("ilidsvid_mgrafa.yml")
    cfg.defrost()
    cfg.SOLVER.WARMUP_ITERS, cfg.SOLVER.STEPS = 500, [40, 80]
    assert AUDIT["decay_epochs"](cfg, 9) == [95]
    assert AUDIT["decay_epochs"](cfg, 5) == []


@pytest.mark.parametrize("row,value,groups", [("NL(S)", "nl_s", 1), ("NL(ST)", "nl_st", 1),
                                             ("RGA-SC (MG)", "rga_sc", 4)])
def test_comparison_rows_are_config_switches(row, value, groups):
    from fastreid.modeling.heads import REID_HEADS_REGISTRY

    cfg = build_config(os.path.join(CONFIGS, "synthetic_cpu.yml"), ["MODEL.MGRAFA.ATTENTION", value])
    cfg.defrost()
    cfg.MODEL.HEADS.NUM_CLASSES = 4
    head = REID_HEADS_REGISTRY.get("MGRAFAHead")(cfg, feat_shape=(64, 6, 3))
    assert head.aggregation.attention == value and head.aggregation.num_groups == groups, row
