"""MGRe configs pin the paper's recipe (section 4.2) and their learning rate decays at epochs
120 / 150 / 180 / 210 of 240 on each dataset's real epoch under the host's scheduler (which
starts the step schedule only after the warm-up)."""
import os
import runpy

import pytest

import fastreid_ext  # noqa: F401
import mgre  # noqa: F401
from fastreid_ext.config import build_config

ROOT = os.path.join(os.path.dirname(__file__), "..")
CONFIGS = os.path.join(ROOT, "projects", "MGRe", "configs")
AUDIT = runpy.run_path(os.path.join(ROOT, "projects", "MGRAFA", "tools", "schedule_audit.py"))

# config -> (train identities, train items): the datasets' published train splits
REAL = {
    "market1501_mgre.yml": (751, 12936),
    "dukemtmc_mgre.yml": (702, 16522),
    "msmt17_mgre.yml": (1041, 32621),
    "cuhk03_labeled_mgre.yml": (767, 7368),
    "cuhk03_detected_mgre.yml": (767, 7365),
    "mars_mgre.yml": (625, 8298),
}


@pytest.mark.parametrize("name", sorted(REAL))
def test_lr_decays_where_the_paper_says_on_the_real_epoch(name):
    cfg = build_config(os.path.join(CONFIGS, name), [])
    ipe = AUDIT["identities_epoch"](cfg, *REAL[name])
    assert ipe == REAL[name][1] // cfg.SOLVER.IMS_PER_BATCH  # one pass over the images
    assert AUDIT["decay_epochs"](cfg, ipe) == [120, 150, 180, 210]
    assert cfg.SOLVER.WARMUP_ITERS == 10 * ipe
    lrs = AUDIT["epoch_learning_rates"](cfg, ipe)
    assert lrs[119] == pytest.approx(cfg.SOLVER.BASE_LR) and lrs[120] == pytest.approx(0.3 * cfg.SOLVER.BASE_LR)


@pytest.mark.parametrize("name", sorted(REAL))
def test_configs_pin_the_paper_recipe(name):
    cfg = build_config(os.path.join(CONFIGS, name), [])
    assert list(cfg.INPUT.SIZE_TRAIN) == [256, 128] and list(cfg.INPUT.SIZE_TEST) == [256, 128]
    assert cfg.SOLVER.OPT == "Adam" and cfg.SOLVER.BASE_LR == pytest.approx(3.5e-4)
    assert cfg.SOLVER.WARMUP_FACTOR == pytest.approx(0.01) and cfg.SOLVER.GAMMA == pytest.approx(0.3)
    assert cfg.SOLVER.MAX_EPOCH == 240
    assert cfg.MODEL.BACKBONE.DEPTH == "50x" and cfg.MODEL.BACKBONE.WITH_IBN
    m = cfg.MODEL.MGRE
    assert list(m.STAGES) == [1, 2, 3] and m.MODE == "multi_granularity" and m.JOINT_OPTIMIZATION
    assert m.LOC_MARGIN == pytest.approx(0.05) and list(m.FEAT_WEIGHTS) == pytest.approx([0.35, 0.5, 0.7, 0.8])
    assert m.EMBED_DIM * (len(m.STAGES) + 1) == 2048
    assert m.LOC_PARAM == "bounded" and m.FE_MODULE == "bottleneck"  # our documented choices
    assert cfg.MODEL.LOSSES.CE.EPSILON > 0  # soft labels
    assert cfg.INPUT.FLIP.ENABLED and cfg.INPUT.REA.ENABLED
