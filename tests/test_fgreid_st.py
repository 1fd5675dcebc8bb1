"""FGReID's spatial-temporal statistics (st-ReID): hand-worked histograms, probabilities and
joint scores."""
import numpy as np
import pytest

from fgreid.st_reid import (
    joint_distance,
    parse_frame,
    smooth_distribution,
    st_distribution,
    st_probability,
)


def test_parse_frame_market_and_veri():
    assert parse_frame("a/b/0002_c3s1_000451_03.jpg") == (3, 451)
    assert parse_frame("-1_c1s2_001021_00.jpg") == (1, 1021)
    assert parse_frame("0001_c014_00016450_0.jpg") == (14, 16450)
    with pytest.raises(ValueError, match="camera and frame"):
        parse_frame("0001001.png")


def test_distribution_hand_value():
    # id A: cam 1 at frames 100 and 300 (mean 200), cam 2 at 750 -> cam 2 later by 550: bin 5
    # id B: cam 1 at 1000, cam 3 at 880 -> cam 1 later by 120: bin 1
    # id C: cam 2 at 10, cam 1 at 580 -> cam 1 later by 570: bin 5
    cams = [1, 1, 2, 1, 3, 2, 1]
    pids = ["A", "A", "A", "B", "B", "C", "C"]
    frames = [100, 300, 750, 1000, 880, 10, 580]
    d = st_distribution(cams, pids, frames, num_cams=3, interval=100, max_hist=10)
    want = np.zeros((3, 3, 10))
    want[1, 0, 5] = 1.0          # (later cam 2, earlier cam 1): one gap, bin 5
    want[0, 2, 1] = 1.0          # (cam 1 after cam 3)
    want[0, 1, 5] = 1.0          # (cam 1 after cam 2)
    np.testing.assert_allclose(d, want)
    p = st_probability(d, q_cams=[2, 1], q_frames=[900, 0], g_cams=[1, 2], g_frames=[400, 520], interval=100)
    # q0 (cam 2, 900) vs g0 (cam 1, 400): q later by 500 -> d[1, 0, 5] = 1; vs g1 same camera -> d[1, 1, 3] = 0
    # q1 (cam 1, 0) vs g0 (cam 1): 0; vs g1 (cam 2, 520): g later by 520 -> d[1, 0, 5] = 1
    np.testing.assert_allclose(p, [[1.0, 0.0], [0.0, 1.0]])


def test_smoothing_is_a_gaussian_over_bins_and_joint_distance_orders_by_both():
    d = np.zeros((1, 1, 41))
    d[0, 0, 20] = 1.0
    s = smooth_distribution(d, sigma=2.0)[0, 0]
    x = np.arange(41) - 20
    want = np.where(np.abs(x) <= 6, np.exp(-x ** 2 / 8) / (2 * np.sqrt(2 * np.pi)), 0.0)  # truncated at 3 sigma
    np.testing.assert_allclose(s, want, atol=1e-12)
    sim = np.array([[0.8, 0.8, 0.2]])
    p = np.array([[0.5, 0.0, 0.5]])
    dist = joint_distance(sim, p, alpha=5.0, lam=2.0)
    want = -(1 / (1 + np.exp(-5 * sim))) * (1 / (1 + 2 * np.exp(-5 * p)))
    np.testing.assert_allclose(dist, want)
    assert dist[0, 0] < dist[0, 1] and dist[0, 0] < dist[0, 2]  # same appearance: ST decides


def test_eval_st_tool_runs_on_a_tiny_synthetic_market(tmp_path):
    """projects/FGReID/tools/eval_st.py end to end (untrained tiny FGReID, Market1501 names)."""
    import importlib.util
    import os.path as osp

    from conftest import REPO

    from fastreid_ext.config import build_config
    from fastreid_ext.data.synthetic import generate
    from fastreid_ext.engine import build_inference_model

    generate("market1501", str(tmp_path / "synthetic" / "market1501"), workers=1, ids=12, seed=0,
             frame_size=(32, 16))
    spec = importlib.util.spec_from_file_location(
        "eval_st", osp.join(REPO, "projects", "FGReID", "tools", "eval_st.py"))
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    cfg = build_config(osp.join(REPO, "projects", "FGReID", "configs", "Market1501", "fgreid_st.yml"), [
        "DATASETS.NAMES", '("SyntheticMarket1501",)', "DATASETS.TESTS", '("SyntheticMarket1501",)',
        "DATASETS.ROOT", str(tmp_path), "MODEL.DEVICE", "cpu", "MODEL.BACKBONE.DEPTH", "18x",
        "MODEL.BACKBONE.FEAT_DIM", "512", "MODEL.BACKBONE.PRETRAIN", "False", "MODEL.FGREID.REDUCED_DIM", "16",
        "MODEL.FGREID.MARS_WEIGHTS", "", "INPUT.SIZE_TEST", "[32, 16]", "INPUT.SIZE_TRAIN", "[32, 16]",
        "DATALOADER.NUM_WORKERS_TEST", "0", "TEST.IMS_PER_BATCH", "16", "TEST.ST.MAX_HIST", "200",
        "OUTPUT_DIR", str(tmp_path / "out")])
    model, cfg = build_inference_model(cfg, allow_untrained=True, device="cpu")
    res = tool.evaluate_with_st(cfg, model)
    for part in ("plain", "st"):
        assert set(res[part]) == {"Rank-1", "Rank-5", "Rank-10", "mAP"}
        assert all(0.0 <= v <= 100.0 for v in res[part].values())
