"""The video baseline's and FGReID's learning rate decays where the public code's does.

The public code steps ``WarmupMultiStepLR(milestones=[40, 70])`` at the end of every epoch, so
epochs 40 and 70 (0-based) are the first ones trained at the lower rate. The host steps its
scheduler only after the warm-up, the first time at the end of the last warm-up epoch
(``fastreid/engine/hooks.py:263-267``), so the configs need ``STEPS [31, 61]``. The host's own
scheduler and hook are driven by ``projects/MGRAFA/tools/schedule_audit.py`` on each dataset's
real epoch (identities x K / batch)."""
import os
import runpy

import pytest

import fastreid_ext  # noqa: F401
from fastreid_ext.config import build_config

ROOT = os.path.join(os.path.dirname(__file__), "..")
AUDIT = runpy.run_path(os.path.join(ROOT, "projects", "MGRAFA", "tools", "schedule_audit.py"))

# config -> train identities of the real dataset
REAL = {
    "configs/Video-Baseline/mars.yml": 625,
    "configs/Video-Baseline/ilidsvid.yml": 150,
    "configs/Video-Baseline/prid2011.yml": 89,
    "projects/FGReID/configs/MARS/fgreid.yml": 625,
    "projects/FGReID/configs/iLIDSVID/fgreid.yml": 150,
    "projects/FGReID/configs/PRID2011/fgreid.yml": 89,
    "projects/FGReID/configs/MARS/stage1_video_baseline.yml": 625,
    "projects/FGReID/configs/MARS/fgreid_rerank.yml": 625,
    "projects/FGReID/configs/Market1501/fgreid.yml": 751,
    "projects/FGReID/configs/Market1501/fgreid_star.yml": 751,
    "projects/FGReID/configs/Market1501/fgreid_st.yml": 751,
    "projects/FGReID/configs/CUHK01/fgreid.yml": 485,          # p486: 486 test / 485 train ids
    "projects/FGReID/configs/CUHK01/fgreid_star.yml": 485,
    "projects/FGReID/configs/CUHK01/fgreid_p100.yml": 871,     # p100: 100 test / 871 train ids
    "projects/FGReID/configs/CUHK01/fgreid_star_p100.yml": 871,
    "projects/FGReID/configs/VeRi/fgreid.yml": 576,
    "projects/FGReID/configs/VeRi/fgreid_st.yml": 576,
    "projects/FGReID/configs/VeRi/stage1_vehicleid_baseline.yml": 13164,
}


@pytest.mark.parametrize("name", sorted(REAL))
def test_lr_decays_at_the_public_codes_epochs_40_and_70(name):
    cfg = build_config(os.path.join(ROOT, name), [])
    ipe = AUDIT["identities_epoch"](cfg, REAL[name])
    assert AUDIT["decay_epochs"](cfg, ipe) == [40, 70]
    assert cfg.SOLVER.WARMUP_ITERS == 10 * ipe  # the public code's 10 warm-up epochs
