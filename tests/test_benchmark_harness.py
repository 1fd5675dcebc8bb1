"""One synthetic layout -> dataset folder map (the generator's DATASET_DIRS), read where the
registered synthetic datasets look, and one train + test harness for the benchmarks."""
import os.path as osp

import fastreid_ext  # noqa: F401  (registrations)
from fastreid_ext.data.datasets.fgpr import SyntheticFGPR
from fastreid_ext.data.datasets.synthetic import (
    MARKET1501_SUBDIR,
    SyntheticCUHK01,
    SyntheticILIDSVID,
    SyntheticMarket1501,
    SyntheticMARS,
    SyntheticPRID2011,
)
from fastreid_ext.data.synthetic import DATASET_DIRS, LAYOUTS


def test_each_layout_is_generated_where_its_dataset_class_reads_it():
    classes = {"mars": SyntheticMARS, "ilidsvid": SyntheticILIDSVID, "prid2011": SyntheticPRID2011,
               "cuhk01": SyntheticCUHK01, "fgpr": SyntheticFGPR}
    want = {layout: osp.normpath(cls.dataset_dir) for layout, cls in classes.items()}
    want["market1501"] = osp.join(osp.normpath(SyntheticMarket1501.dataset_dir), MARKET1501_SUBDIR)
    assert DATASET_DIRS == want
    assert set(DATASET_DIRS) <= set(LAYOUTS)


def test_the_claims_benchmark_uses_the_benchmarks_harness():
    from benchmarks import common
    from benchmarks.claims import common as claims_common

    assert claims_common.LAYOUT_DIRS is common.LAYOUT_DIRS is DATASET_DIRS
    assert claims_common.train_and_test is common.train_and_test
