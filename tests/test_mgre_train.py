"""MGRe trains end to end on a tiny generated SyntheticMarket1501 with and without keypoints
(MGRe's location loss on / off), and the keypoint-aware real-dataset wrappers find or
demand keypoints.json."""
import logging
import os
import shutil

import pytest
import torch

import fastreid_ext  # noqa: F401  (compat shims before fastreid.data)
import mgre  # noqa: F401
from fastreid.data.datasets import DATASET_REGISTRY
from fastreid_ext.config import build_config
from fastreid_ext.engine import Trainer

CONFIG = os.path.join(os.path.dirname(__file__), "..", "projects", "MGRe", "configs", "synthetic_cpu.yml")


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    """<root>/synthetic/market1501/Market-1501-v15.09.15 written by the generator
    (SyntheticMarket1501; also the host Market1501 layout with root <root>/synthetic/market1501)."""
    from fastreid_ext.data.synthetic import generate

    root = tmp_path_factory.mktemp("mgre_root")
    out = root / "synthetic" / "market1501" / "Market-1501-v15.09.15"
    generate("market1501", str(out), ids=8, seed=0, frame_size=(64, 32), min_len=2, max_len=2, workers=1)
    return str(root)


def train(root, tmp_path, *opts):
    cfg = build_config(CONFIG, [
        "DATASETS.ROOT", root, "OUTPUT_DIR", str(tmp_path), "INPUT.SIZE_TRAIN", "[64, 32]",
        "INPUT.SIZE_TEST", "[64, 32]", "INPUT.PADDING.SIZE", "2", "SOLVER.IMS_PER_BATCH", "8",
        "DATALOADER.NUM_INSTANCE", "4", "DATALOADER.NUM_WORKERS", "0", "DATALOADER.NUM_WORKERS_TEST", "0",
        "SOLVER.MAX_EPOCH", "1", "SOLVER.WARMUP_ITERS", "1", "TEST.EVAL_PERIOD", "1", *opts])
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    log = logging.getLogger("fastreid.mgre.meta_arch")
    log.addHandler(handler)
    try:
        torch.manual_seed(0)
        trainer = Trainer(cfg)
        trainer.resume_or_load(resume=False)
        results = trainer.train()
    finally:
        log.removeHandler(handler)
    return trainer, results, [r.getMessage() for r in records]


def test_trains_with_keypoints(root, tmp_path):
    trainer, results, logs = train(root, tmp_path)
    names = set(trainer.storage.histories())
    for g in (1, 2, 3):
        assert {f"stage{g}_loss_cls", f"stage{g}_loss_triplet", f"stage{g}_loss_location"} <= names
    assert {"stage4_loss_cls", "stage4_loss_triplet"} <= names
    assert "stage4_loss_location" not in names
    assert any("location loss (Eq. 3" in m and "ON" in m for m in logs)
    assert 0.0 <= results["mAP"] <= 100.0


def test_trains_without_keypoints_and_says_so(root, tmp_path):
    trainer, results, logs = train(root, tmp_path, "MODEL.MGRE.USE_KEYPOINTS", "False")
    names = set(trainer.storage.histories())
    assert "stage1_loss_cls" in names and "stage4_loss_triplet" in names
    assert not any("location" in n for n in names)
    assert any("location loss OFF" in m for m in logs)
    assert 0.0 <= results["mAP"] <= 100.0


def test_without_jo_trains_and_evaluates_with_flip_test(root, tmp_path):
    """Table 7 "MGRe w/o JO": keypoint regions at train and test time; the test items carry the
    keypoints and the flip test mirrors them."""
    trainer, results, logs = train(root, tmp_path, "MODEL.MGRE.JOINT_OPTIMIZATION", "False",
                                   "TEST.FLIP.ENABLED", "True")
    assert not any("location" in n for n in trainer.storage.histories())
    assert any("w/o joint optimisation" in m for m in logs)
    assert 0.0 <= results["mAP"] <= 100.0


def test_keypoint_datasets_attach_or_demand_the_json(root, tmp_path):
    host_root = os.path.join(root, "synthetic", "market1501")  # the host Market1501 layout
    data_dir = os.path.join(host_root, "Market-1501-v15.09.15")
    ds = DATASET_REGISTRY.get("Market1501Keypoints")(root=host_root)
    assert ds.keypoints_path == os.path.join(data_dir, "keypoints.json")
    assert all(item[3]["keypoints"] == ds.keypoints_path for item in ds.train)
    # test items carry them too ("MGRe w/o JO" reads the regions off them at test time)
    assert all(item[3]["keypoints"] == ds.keypoints_path for item in list(ds.query) + list(ds.gallery))
    moved = str(tmp_path / "keypoints.json")
    shutil.move(os.path.join(data_dir, "keypoints.json"), moved)
    try:
        with pytest.raises(FileNotFoundError, match="tools/make_keypoints.py"):
            DATASET_REGISTRY.get("Market1501Keypoints")(root=host_root)
    finally:
        shutil.move(moved, os.path.join(data_dir, "keypoints.json"))
