"""FGPR evaluation: summed per-part distances (FGPose Eq. 4 / 6) and the two-direction
(gallery / probe swapped) protocol, pooled and per group, against hand-worked cases."""
import os

import numpy as np
import pytest
import torch

from fastreid_ext.evaluation.two_direction import (
    evaluate_tracklets,
    evaluate_two_direction,
    part_distance,
    two_direction_results,
)


def test_part_distance_is_the_sum_of_per_part_norms():
    g = torch.Generator().manual_seed(0)
    q, gal = torch.randn(5, 7, generator=g, dtype=torch.float64), torch.randn(4, 7, generator=g, dtype=torch.float64)
    parts, w = [3, 4], [1.0, 0.5]
    ref = np.zeros((5, 4))
    for i in range(5):
        for j in range(4):
            ref[i, j] = np.linalg.norm((q[i, :3] - gal[j, :3]).numpy()) + 0.5 * np.linalg.norm((q[i, 3:] - gal[j, 3:]).numpy())
    np.testing.assert_allclose(part_distance(q, gal, parts, w).numpy(), ref, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError):
        part_distance(q, gal, [3, 3])
    with pytest.raises(ValueError):
        part_distance(q, gal, [3, 4], [1.0])


def test_summed_distances_rank_differently_from_the_concatenation():
    # probe p = (0, 0 | 0, 0); a = (3, 0 | 0, 0) -> sum 3, concat 3; b = (2, 0 | 2, 0) -> sum 4, concat 2.83
    p = torch.zeros(1, 4)
    gal = torch.tensor([[3.0, 0, 0, 0], [2.0, 0, 2.0, 0]])
    summed = part_distance(p, gal, [2, 2])[0]
    whole = part_distance(p, gal, [4])[0]
    assert summed[0] < summed[1] and whole[0] > whole[1]


def _hand_case():
    """Groups A (ids 1, 2) and B (id 3). Case-1 probes (rows) p1, p2, p3; gallery (columns) g1, g2, g3."""
    d = np.array([[0.5, 0.1, 0.9],   # p1: g2 (wrong) first, then g1 (rank 2), then g3
                  [0.2, 0.3, 0.1],   # p2: g3, g1, g2 (rank 3)
                  [0.4, 0.6, 0.3]])  # p3: g3 (rank 1)
    pids = np.array([1, 2, 3])
    q_cam, g_cam = np.array([1, 1, 4]), np.array([0, 0, 3])
    groups = np.array(["A", "A", "B"])
    return d, pids, q_cam, g_cam, groups


def test_two_direction_pooled_and_per_group_by_hand():
    d, pids, qc, gc, grp = _hand_case()
    res = evaluate_two_direction(d, pids, pids, qc, gc, grp, grp, max_rank=3)
    # case 1 (rows): ranks of the true match 2, 3, 1 -> AP 1/2, 1/3, 1
    # case 2 (columns = probes g1, g2, g3 against p1..p3): g1 col [0.5, 0.2, 0.4] -> p1 rank 3;
    # g2 col [0.1, 0.3, 0.6] -> p2 rank 2; g3 col [0.9, 0.1, 0.3] -> p3 rank 2
    c1, c2 = res["cases"]["all"]
    np.testing.assert_allclose(c1["cmc"], [1 / 3, 2 / 3, 1.0])
    np.testing.assert_allclose(c2["cmc"], [0.0, 2 / 3, 1.0])
    assert c1["mAP"] == pytest.approx((1 / 2 + 1 / 3 + 1) / 3) and c2["mAP"] == pytest.approx((1 / 3 + 1 / 2 + 1 / 2) / 3)
    np.testing.assert_allclose(res["all"]["cmc"], [1 / 6, 2 / 3, 1.0])
    assert res["all"]["mAP"] == pytest.approx(((1 / 2 + 1 / 3 + 1) / 3 + (1 / 3 + 1 / 2 + 1 / 2) / 3) / 2)
    # group A alone: rows p1, p2 vs g1, g2: d = [[0.5, 0.1], [0.2, 0.3]] -> case 1 ranks 2, 2;
    # case 2 columns g1 [0.5, 0.2] -> rank 2, g2 [0.1, 0.3] -> rank 2
    a = res["per_group"]["A"]
    np.testing.assert_allclose(a["cmc"][:2], [0.0, 1.0])
    assert a["mAP"] == pytest.approx(0.5)
    b = res["per_group"]["B"]  # one id: always rank 1
    assert b["cmc"][0] == 1.0 and b["mAP"] == 1.0
    flat = two_direction_results(res, ranks=(1, 2))
    assert flat["Rank-1"] == pytest.approx(100 / 6) and flat["A/Rank-2"] == pytest.approx(100.0)
    assert flat["B/mAP"] == pytest.approx(100.0) and flat["case2/Rank-1"] == 0.0
    assert flat["metric"] == pytest.approx((flat["mAP"] + flat["Rank-1"]) / 2)


def test_one_gallery_match_makes_map_at_least_rank1():
    rng = np.random.default_rng(3)
    n = 12
    d = rng.random((n, n))
    pids = np.arange(n)
    grp = np.array(["blue"] * 6 + ["white"] * 2 + ["green"] * 4)
    res = evaluate_two_direction(d, pids, pids, np.ones(n), np.zeros(n), grp, grp)
    for m in [res["all"], *res["per_group"].values()]:
        assert m["mAP"] >= m["cmc"][0] - 1e-12


def test_evaluate_tracklets_fgpr_from_features():
    # 2-d features: probes first (case 1), then gallery; parts [1, 1]
    feats = torch.tensor([[0.0, 0.0], [1.0, 1.0], [5.0, 5.0],     # probes ids 1, 2 (A), 3 (B)
                          [0.1, 0.0], [1.0, 1.2], [5.0, 4.0]])    # gallery ids 1, 2, 3
    pids = [1, 2, 3, 1, 2, 3]
    cams = [1, 1, 4, 0, 0, 3]
    groups = ["A", "A", "B", "A", "A", "B"]
    out = evaluate_tracklets(feats, 3, pids, cams, groups, "fgpr", "euclidean", parts=[1, 1])
    assert out["Rank-1"] == 100.0 and out["A/Rank-1"] == 100.0 and out["B/mAP"] == 100.0
    with pytest.raises(ValueError, match="needs the items' groups"):
        evaluate_tracklets(feats, 3, pids, cams, None, "fgpr", "euclidean")
    with pytest.raises(ValueError, match="Euclidean"):
        evaluate_tracklets(feats, 3, pids, cams, groups, "fgpr", "cosine", parts=[1, 1])
    plain = evaluate_tracklets(feats, 3, pids, cams, groups, "cross_camera", "euclidean", parts=[1, 1])
    assert plain["Rank-1"] == 100.0 and "A/Rank-1" not in plain


def test_video_evaluator_uses_the_parts_and_the_fgpr_protocol():
    from fastreid_ext.config import get_cfg
    from fastreid_ext.evaluation.video_evaluator import VideoClipEvaluator

    cfg = get_cfg()
    cfg.TEST.METRIC = "euclidean"
    g = torch.Generator().manual_seed(4)
    feats = torch.randn(8, 5, generator=g)
    pids = [1, 2, 3, 4, 1, 2, 3, 4]
    cams = [1, 1, 2, 4, 0, 0, 1, 3]
    groups = ["blue", "blue", "white", "green"] * 2
    ev = VideoClipEvaluator(cfg, num_query=4, num_tracklets=8, pids=pids, camids=cams, groups=groups,
                            protocol="fgpr")
    ev.distance_parts, ev.distance_weights = (2, 3), [1.0, 2.0]
    ev.reset()
    ev.process({"track_idx": torch.arange(8)}, feats)  # one clip per tracklet
    got = ev.evaluate()
    want = evaluate_tracklets(feats, 4, pids, cams, groups, "fgpr", "euclidean", parts=[2, 3], part_weights=[1.0, 2.0])
    assert list(got) == list(want) and "white/Rank-1" in got
    for k in want:
        assert got[k] == pytest.approx(want[k])
    plain = evaluate_tracklets(feats, 4, pids, cams, groups, "fgpr", "euclidean")  # what ignoring the parts gives
    assert plain["mAP"] != pytest.approx(got["mAP"])
    with pytest.raises(ValueError, match="needs groups"):
        VideoClipEvaluator(cfg, num_query=4, num_tracklets=8, pids=pids, camids=cams, protocol="fgpr")


def test_fgpr_is_an_accepted_test_protocol():
    from fastreid_ext.config import build_config, validate_config

    validate_config(build_config("", ["TEST.PROTOCOL", "fgpr"]))
    with pytest.raises(ValueError, match="TEST.PROTOCOL"):
        validate_config(build_config("", ["TEST.PROTOCOL", "fgpr2"]))


# ---------------------------------------------------------------- options the fgpr / per-part path does not apply
UNSUPPORTED = [("TEST.AQE.ENABLED", "True"), ("TEST.RERANK.ENABLED", "True"), ("TEST.ROC.ENABLED", "True"),
               ("TEST.RETRIEVAL.APPROX", "ivf"), ("TEST.RETRIEVAL.INDEX", "IVF4,Flat"), ("TEST.VIS.ENABLED", "True")]


def _evaluator(protocol, *opts):
    from fastreid_ext.config import build_config
    from fastreid_ext.evaluation.video_evaluator import VideoClipEvaluator

    cfg = build_config("", ["TEST.METRIC", "euclidean", *opts])
    return VideoClipEvaluator(cfg, num_query=4, num_tracklets=8, pids=[1, 2, 3, 4] * 2, camids=[0] * 4 + [1] * 4,
                              groups=["a", "a", "b", "b"] * 2, protocol=protocol)


@pytest.mark.parametrize("key,value", UNSUPPORTED)
def test_fgpr_protocol_refuses_options_it_would_skip(key, value):
    # before: built fine, the option silently skipped (AQE / RERANK / VIS with a warning, ROC / APPROX without)
    with pytest.raises(ValueError, match=key.replace(".", r"\.") + ".*TEST.PROTOCOL 'fgpr'"):
        _evaluator("fgpr", key, value)
    _evaluator("cross_camera", key, value)  # the usual path honours it: no error


@pytest.mark.parametrize("key,value", UNSUPPORTED)
def test_per_part_distances_refuse_options_they_would_skip(key, value):
    ev = _evaluator("cross_camera", key, value)
    with pytest.raises(ValueError, match=key.replace(".", r"\.") + ".*distance_parts=\\(2, 3\\)"):
        ev.distance_parts = (2, 3)
    assert ev.distance_parts is None
    ev.distance_parts = None  # no parts: nothing to refuse


def test_per_part_distances_need_the_euclidean_metric():
    ev = _evaluator("cross_camera", "TEST.METRIC", "cosine")
    with pytest.raises(ValueError, match="TEST.METRIC='cosine'.*set TEST.METRIC euclidean"):
        ev.distance_parts = (2, 3)
    ev_fgpr = _evaluator("fgpr", "TEST.METRIC", "cosine")  # fgpr alone supports cosine
    with pytest.raises(ValueError, match="TEST.METRIC='cosine'"):
        ev_fgpr.distance_parts = (2, 3)
    ev_ok = _evaluator("fgpr")
    ev_ok.distance_parts = (2, 3)  # the supported combination
    assert ev_ok.distance_parts == (2, 3)


def test_all_bad_options_are_named_together():
    from fastreid_ext.config import build_config
    from fastreid_ext.evaluation.video_evaluator import check_two_direction_options

    cfg = build_config("", ["TEST.METRIC", "cosine", "TEST.AQE.ENABLED", "True", "TEST.ROC.ENABLED", "True"])
    with pytest.raises(ValueError) as e:
        check_two_direction_options(cfg, "cross_camera", (4, 4))
    msg = str(e.value)
    assert "TEST.AQE.ENABLED=True" in msg and "TEST.ROC.ENABLED=True" in msg and "TEST.METRIC='cosine'" in msg
    check_two_direction_options(cfg, "cross_camera", None)  # the usual path: nothing to refuse


@pytest.fixture(scope="module")
def fgpose_root(tmp_path_factory):
    from fastreid_ext.data.synthetic import generate

    root = tmp_path_factory.mktemp("fgpose_root")
    generate("fgpr", str(root / "synthetic" / "fgpr"), ids=6, seed=0, min_len=6, max_len=7,
             frame_size=(64, 32), workers=1)
    return str(root)


@pytest.mark.parametrize("opts,match", [
    (["TEST.AQE.ENABLED", "True"], r"TEST\.AQE\.ENABLED=True.*TEST\.PROTOCOL 'fgpr'"),  # the dataset's protocol
    (["TEST.ROC.ENABLED", "True", "TEST.PROTOCOL", "cross_camera"], r"TEST\.ROC\.ENABLED=True.*distance_parts"),
    # the model's per-part distances with the cosine metric: failed only at the first evaluation, after training
    (["TEST.METRIC", "cosine", "TEST.PROTOCOL", "cross_camera"], r"TEST\.METRIC='cosine'"),
])
def test_fgpose_trainer_refuses_unsupported_test_options_before_training(fgpose_root, tmp_path, opts, match):
    """``Trainer(cfg)`` (before any iteration) raises; the old code built it and failed or
    silently skipped the option at the first evaluation, after training."""
    import fgpose  # noqa: F401  (registers FGPose)
    from fastreid_ext.config import build_config
    from fastreid_ext.engine.trainer import Trainer

    cfg_file = os.path.join(os.path.dirname(__file__), "..", "projects", "FGPose", "configs", "synthetic_cpu.yml")
    base = ["DATASETS.ROOT", fgpose_root, "DATALOADER.NUM_WORKERS", "0", "DATALOADER.NUM_WORKERS_TEST", "0",
            "SOLVER.IMS_PER_BATCH", "4", "SOLVER.MAX_EPOCH", "1", "OUTPUT_DIR", str(tmp_path / "out")]
    os.makedirs(tmp_path / "out")  # as default_setup does
    with pytest.raises(ValueError, match=match):
        Trainer(build_config(cfg_file, [*base, *opts]))
    if opts[0] == "TEST.AQE.ENABLED":
        trainer = Trainer(build_config(cfg_file, base))  # the shipped settings build
        assert trainer.start_epoch == 0 and trainer.max_epoch == 1
