"""FGReID's spatial-temporal statistics (st-ReID): hand-worked histograms, probabilities and
joint scores."""
import numpy as np
import pytest

from fgreid.st_reid import (
    joint_distance,
    market_sequence_offsets,
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


def _public_offsets_and_frame(names, name):
    """Port of the public tools/generate_seq_market.py: lines 19-35 (largest frame per
    camera * 10 + sequence over the names) and parse_frame (lines 86-101)."""
    largest = {10 * i + j: 0 for i in range(7) for j in range(9)}
    for n in names:
        cam, seq, frame = int(n.split("_")[1][1]), int(n.split("_")[1][3]), int(n.split("_")[2])
        largest[int(str(cam) + str(seq))] = max(largest[int(str(cam) + str(seq))], frame)
    cam, seq, frame = int(name.split("_")[1][1]), int(name.split("_")[1][3]), int(name.split("_")[2])
    re_ = 0
    for i in range(1, seq):
        re_ = re_ + largest[int(str(cam) + str(i))]
    return re_ + frame


def test_market_sequence_offsets_hand_value_and_public_port():
    names = ["0001_c1s1_000100_00.jpg", "0001_c1s1_000040_01.jpg", "0002_c1s2_000050_00.jpg",
             "0003_c1s3_000030_00.jpg", "0004_c2s2_000070_00.jpg", "0004_c2s3_000005_00.jpg"]
    off = market_sequence_offsets(["x/" + n for n in names] + ["0001_c003_00016450_0.jpg"])  # VeRi skipped
    # camera 1: s1 up to 100, s2 up to 50 -> s2 starts after 100, s3 after 150;
    # camera 2: s1 never seen (0), s2 up to 70 -> s3 after 70
    assert off == {(1, 1): 0, (1, 2): 100, (1, 3): 150, (2, 2): 0, (2, 3): 70}
    for n in names:
        assert parse_frame(n, off)[1] == _public_offsets_and_frame(names, n)
    assert parse_frame("0002_c1s2_000050_00.jpg") == (1, 50)  # no offsets: the raw number
    assert parse_frame("0001_c014_00016450_0.jpg", off) == (14, 16450)  # VeRi: no sequences
    with pytest.raises(ValueError, match="camera 4 sequence 1"):
        parse_frame("0001_c4s1_000100_00.jpg", off)


def test_sequence_offsets_make_cross_sequence_gaps_real():
    # identity seen in camera 1 early in sequence 2 and in camera 2 at frame 90 of sequence 1:
    # raw frames say camera 1 came first (10 < 90); with camera 1's sequence 1 lasting 500
    # frames its frame is 510, 420 frames after camera 2
    names = ["0009_c1s1_000500_00.jpg", "0001_c1s2_000010_00.jpg", "0001_c2s1_000090_00.jpg"]
    off = market_sequence_offsets(names)
    cf = [parse_frame(n, off) for n in names[1:]]
    d = st_distribution([c for c, _ in cf], ["a", "a"], [f for _, f in cf], num_cams=2, interval=100, max_hist=8)
    assert d[0, 1, 4] == 1.0 and d.sum() == 1.0  # (later camera 1, earlier camera 2, bin 420 // 100)
    raw = [parse_frame(n) for n in names[1:]]
    d_raw = st_distribution([c for c, _ in raw], ["a", "a"], [f for _, f in raw], num_cams=2, interval=100, max_hist=8)
    assert d_raw[1, 0, 0] == 1.0


def _public_smooth_then_normalise(hist, o):
    """Port of the public tools/image_eval.py gauss_smooth2 (lines 18-42) and the division of
    load_distribution (lines 66-71) for one camera pair."""
    n = len(hist)
    vect = np.arange(n, dtype=np.float64).reshape(n, 1)
    g = 1.0 / (o * np.sqrt(2 * np.pi)) * np.exp(-(vect ** 2) / (2 * o ** 2))
    matrix = np.zeros((n, n))
    for i in range(n):
        k = 0
        for j in range(i, n):
            if k > 3 * o:
                continue
            matrix[i][j] = g[j - i, 0]
            k = k + 1
    matrix = matrix + matrix.T
    for i in range(n):
        matrix[i][i] = matrix[i][i] / 2
    out = matrix @ hist
    return out / (out.sum() + 1e-7)


def test_smoothing_then_normalising_is_the_public_order():
    # a hand-made pair histogram with mass at the edge: smoothing loses the part of the Gaussian
    # that falls outside the bins, the second normalisation restores sum 1
    counts = np.zeros(12)
    counts[0], counts[1], counts[6] = 3.0, 1.0, 2.0
    d = np.zeros((2, 2, 12))
    d[1, 0] = counts / counts.sum()
    out = smooth_distribution(d, sigma=1.5)
    np.testing.assert_allclose(out[1, 0], _public_smooth_then_normalise(counts / counts.sum(), 1.5), rtol=1e-6)
    assert out[1, 0].sum() == pytest.approx(1.0)
    assert not out[0].any() and not out[1, 1].any()  # empty pairs stay 0
    only_smoothed = smooth_distribution(d, sigma=1.5, normalise=False)[1, 0]
    assert only_smoothed.sum() < 0.9  # the normalise-then-smooth order leaves the pair short of 1


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
    s = smooth_distribution(d, sigma=2.0, normalise=False)[0, 0]
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
        "DATALOADER.NUM_WORKERS_TEST", "0", "TEST.IMS_PER_BATCH", "16", "FGREID.ST.MAX_HIST", "200",
        "OUTPUT_DIR", str(tmp_path / "out")])
    model, cfg = build_inference_model(cfg, allow_untrained=True, device="cpu")
    res = tool.evaluate_with_st(cfg, model)
    for part in ("plain", "st"):
        assert set(res[part]) == {"Rank-1", "Rank-5", "Rank-10", "mAP"}
        assert all(0.0 <= v <= 100.0 for v in res[part].values())


def test_old_test_st_spelling_loads_as_fgreid_st(tmp_path):
    """FGREID.ST.* (the project's node) is also read from its old spelling TEST.ST.*, in a file
    (a run folder's config.yaml writes every key) and in the overrides; the new spelling wins."""
    import os.path as osp

    from conftest import REPO

    from fastreid_ext.config import build_config

    base = osp.join(REPO, "projects", "FGReID", "configs", "Market1501", "fgreid.yml")
    old = tmp_path / "old.yml"
    old.write_text(f"_BASE_: {base}\nTEST:\n  METRIC: euclidean\n  ST:\n    ENABLED: True\n    SIGMA: 7.0\n"
                   f"FGREID:\n  ST:\n    ALPHA: 3.0\n")
    cfg = build_config(str(old), ["TEST.ST.MAX_HIST", "200", "TEST.ST.ALPHA", "4.0"])
    st = cfg.FGREID.ST
    assert (st.ENABLED, st.SIGMA, st.MAX_HIST, st.LAMBDA) == (True, 7.0, 200, 2.0)
    assert st.ALPHA == 4.0  # the override comes after the file
    assert cfg.TEST.METRIC == "euclidean" and "ST" not in cfg.TEST
    both = tmp_path / "both.yml"
    both.write_text(f"_BASE_: {base}\nTEST:\n  ST:\n    SIGMA: 7.0\nFGREID:\n  ST:\n    SIGMA: 9.0\n")
    assert build_config(str(both)).FGREID.ST.SIGMA == 9.0
