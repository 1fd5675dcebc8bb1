"""evaluate_rank against the host's Python evaluator, hand-worked MARS cases, protocols, inputs."""
import warnings

import numpy as np
import pytest

import fastreid_ext  # noqa: F401  (compat shims before the host's evaluation package)
from fastreid_ext.evaluation import RankResult, evaluate_rank, summarize_splits
from fastreid_ext.evaluation.rank import GalleryLabels, NoValidQueryError, match_positions

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastreid.evaluation.rank import eval_cuhk03, eval_market1501


def _loop_reference(distmat, q_pids, g_pids, q_camids, g_camids, max_rank, kind):
    """Independent per-query float64 re-implementation with a chosen argsort ``kind``."""
    cmc_sum, aps = np.zeros(max_rank), []
    for i in range(distmat.shape[0]):
        order = np.argsort(distmat[i], kind=kind)
        keep = ~((g_pids[order] == q_pids[i]) & (g_camids[order] == q_camids[i]))
        lab = (g_pids[order] == q_pids[i])[keep]
        if not lab.any():
            continue
        r = np.flatnonzero(lab)
        aps.append(np.mean(np.arange(1, len(r) + 1) / (r + 1.0)))
        cmc_sum[r[0]:] += 1
    return cmc_sum / len(aps), np.asarray(aps)


def _random_case(rng, case):
    big = case % 10 == 0
    nq = int(rng.integers(1, 12))
    ng = int(rng.integers(150, 300)) if big else int(rng.integers(4, 60))
    npid, ncam = int(rng.integers(1, 8)), int(rng.integers(1, 4))
    q_pids = rng.integers(0, npid, nq)
    g_pids = rng.integers(0, npid, ng)
    q_cams = rng.integers(0, ncam, nq)
    g_cams = rng.integers(0, ncam, ng)
    kind = case % 4
    if kind == 0:  # many ties, float32
        d = rng.integers(0, 4, (nq, ng)).astype(np.float32)
    elif kind == 1:  # ties, float64
        d = (rng.integers(0, 8, (nq, ng)) / 8.0).astype(np.float64)
    elif kind == 2:  # integer distances
        d = rng.integers(-3, 3, (nq, ng))
    else:  # continuous
        d = rng.random((nq, ng))
    # the host fails (ragged array) when a kept gallery is shorter than max_rank
    removed = ((q_pids[:, None] == g_pids[None]) & (q_cams[:, None] == g_cams[None])).sum(1).max()
    max_rank = int(rng.integers(1, max(2, min(25, ng - removed) + 1)))
    return d, q_pids, g_pids, q_cams, g_cams, max_rank


def test_equals_host_python_on_random_cases_with_ties():
    rng = np.random.default_rng(2024)
    compared = tie_rows = stable_differs = raised = 0
    for case in range(240):
        d, qp, gp, qc, gc, mr = _random_case(rng, case)
        d_before = d.copy()
        try:
            h_cmc, h_ap, h_inp = eval_market1501(d, qp, gp, qc, gc, mr)
        except AssertionError:
            with pytest.raises(NoValidQueryError):
                evaluate_rank(d, qp, gp, qc, gc, mr)
            raised += 1
            continue
        res = evaluate_rank(d, qp, gp, qc, gc, mr)
        assert np.array_equal(d, d_before)  # input untouched
        assert res.cmc.dtype == h_cmc.dtype == np.float32
        assert res.cmc.shape == h_cmc.shape
        assert np.abs(res.cmc - h_cmc).max() <= 1e-6
        assert len(res.all_AP) == len(h_ap) == res.num_valid
        assert np.abs(res.all_AP - np.asarray(h_ap)).max() <= 1e-6
        assert np.abs(res.all_INP - np.asarray(h_inp)).max() <= 1e-6
        assert res.num_valid + res.num_skipped == d.shape[0]
        compared += 1
        _, _, tied = match_positions(d, qp, qc, GalleryLabels.build(gp, gc, "cross_camera"))
        tie_rows += int(tied.sum())
        # the host's order matters: a stable sort gives different numbers on some cases
        s_cmc, s_ap = _loop_reference(d, qp, gp, qc, gc, mr, "stable")
        if np.abs(s_ap - np.asarray(h_ap)).max() > 1e-9 or np.abs(s_cmc - h_cmc).max() > 1e-6:
            stable_differs += 1
    assert compared >= 150 and raised >= 1
    assert tie_rows >= 50  # rows where a match and a non-match share a distance
    assert stable_differs >= 10  # so the test would catch a wrong tie order


@pytest.mark.parametrize("fraction", [-1.0, 2.0])
def test_both_search_paths_equal_host(monkeypatch, fraction):
    """-1: always the full-row sort; 2: always the per-row prefix up to the farthest match."""
    from fastreid_ext.evaluation import rank as rank_mod

    monkeypatch.setattr(rank_mod, "_PREFIX_MAX_FRACTION", fraction)
    rng = np.random.default_rng(99)
    compared = 0
    for case in range(80):
        d, qp, gp, qc, gc, mr = _random_case(rng, case)
        try:
            h_cmc, h_ap, h_inp = eval_market1501(d, qp, gp, qc, gc, mr)
        except AssertionError:
            continue
        cmc, ap, inp = evaluate_rank(d, qp, gp, qc, gc, mr).as_tuple()
        assert np.abs(cmc - h_cmc).max() <= 1e-6
        assert np.abs(ap - np.asarray(h_ap)).max() <= 1e-6
        assert np.abs(inp - np.asarray(h_inp)).max() <= 1e-6
        compared += 1
    assert compared >= 50


def test_result_and_host_tuple_agree_with_independent_reference():
    rng = np.random.default_rng(7)
    d = rng.random((40, 300))  # tie-free
    qp, gp = rng.integers(0, 12, 40), rng.integers(0, 12, 300)
    qc, gc = rng.integers(0, 3, 40), rng.integers(0, 3, 300)
    res = evaluate_rank(d, qp, gp, qc, gc, max_rank=20)
    cmc, all_ap, all_inp = res.as_tuple()
    assert isinstance(res, RankResult)
    assert np.array_equal(cmc, res.cmc) and np.array_equal(all_ap, res.all_AP)
    assert all_ap.dtype == all_inp.dtype == np.float64 and cmc.shape == (20,)
    ref_cmc, ref_ap = _loop_reference(d, qp, gp, qc, gc, 20, "quicksort")
    np.testing.assert_allclose(cmc, ref_cmc, atol=1e-6)
    np.testing.assert_allclose(all_ap, ref_ap, atol=1e-12)
    s = res.summary(percent=True)
    assert s["Rank-1"] == pytest.approx(100 * ref_cmc[0], abs=1e-4)
    assert s["mAP"] == pytest.approx(100 * ref_ap.mean())


def _mars_case():
    """Three queries, gallery = whole test set (queries included), hand-worked below."""
    #            q0:pid1 cam0   q1:pid3 cam0   q2:pid2 cam0
    g_pids = np.array([1, -1, 0, 1, 2, 1, 1, 3, 2, 2])
    g_cams = np.array([0, 1, 1, 2, 1, 0, 1, 0, 0, 2])
    q_pids = np.array([1, 3, 2])
    q_cams = np.array([0, 0, 0])
    d = np.array(
        [
            # g0   g1   g2   g3   g4   g5    g6   g7   g8   g9
            [0.0, 0.1, 0.2, 0.3, 0.4, 0.05, 0.5, 0.6, 0.7, 0.8],  # q0 (g0 is q0 itself)
            [0.5, 0.4, 0.3, 0.2, 0.1, 0.6, 0.7, 0.0, 0.8, 0.9],  # q1 (g7 is q1 itself)
            [0.9, 0.1, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.0, 0.2],  # q2 (g8 is q2 itself)
        ]
    )
    return d, q_pids, g_pids, q_cams, g_cams


def test_mars_official_noninterp_hand_worked():
    d, qp, gp, qc, gc = _mars_case()
    res = evaluate_rank(d, qp, gp, qc, gc, max_rank=5, protocol="mars_official_noninterp")
    # q0: junk g0 (itself), g5 (pid1 cam0), g1 (pid -1). Kept order: g2(distractor) g3(+) g4 g6(+) g7 g8 g9
    #     matches at 0-based positions 1 and 3: AP = (1/2 + 2/4) / 2 = 0.5, INP = 2/4
    # q1: its only pid-3 item is itself (same camera): no valid match -> skipped
    # q2: junk g8 (itself), g1 (pid -1). Kept order: g9(+) g7 g6 g5 g4(+) g3 g2 g0
    #     matches at 0 and 4: AP = (1/1 + 2/5) / 2 = 0.7, INP = 2/5
    assert res.num_valid == 2 and res.num_skipped == 1
    assert res.valid_mask.tolist() == [True, False, True]
    np.testing.assert_allclose(res.all_AP, [0.5, 0.7], atol=1e-12)
    np.testing.assert_allclose(res.all_INP, [0.5, 0.4], atol=1e-12)
    np.testing.assert_allclose(res.cmc, [0.5, 1, 1, 1, 1], atol=1e-7)


def test_cross_camera_hand_worked_and_host():
    d, qp, gp, qc, gc = _mars_case()
    res = evaluate_rank(d, qp, gp, qc, gc, max_rank=5)
    # pid -1 is an ordinary negative here: q0 kept order g1 g2 g3(+) g4 g6(+) ...
    #     AP = (1/3 + 2/5) / 2, INP = 2/5; q2 kept: g1 g9(+) g7 g6 g5 g4(+): AP = (1/2 + 2/6) / 2
    np.testing.assert_allclose(res.all_AP, [(1 / 3 + 2 / 5) / 2, (1 / 2 + 2 / 6) / 2], atol=1e-12)
    np.testing.assert_allclose(res.all_INP, [2 / 5, 2 / 6], atol=1e-12)
    np.testing.assert_allclose(res.cmc, [0, 0.5, 1, 1, 1], atol=1e-7)
    h_cmc, h_ap, h_inp = eval_market1501(d, qp, gp, qc, gc, 5)
    np.testing.assert_allclose(res.cmc, h_cmc, atol=1e-6)
    np.testing.assert_allclose(res.all_AP, h_ap, atol=1e-12)


def test_same_camera_matches_are_removed_not_ranked():
    # one query, a same-camera match ranked first must not count as a hit
    d = np.array([[0.1, 0.2, 0.3]])
    res = evaluate_rank(d, [5], [5, 7, 5], [0], [0, 1, 1], max_rank=2)
    # kept: g1 (neg), g2 (+) -> first hit at position 1
    np.testing.assert_allclose(res.cmc, [0.0, 1.0])
    np.testing.assert_allclose(res.all_AP, [0.5])


def test_short_kept_gallery_pads_cmc_with_one():
    # the host fails on a ragged array here; we keep CMC at 1 past the last kept item
    d = np.array([[0.1, 0.2, 0.3], [0.1, 0.2, 0.3]])
    res = evaluate_rank(d, [1, 2], [1, 1, 2], [0, 0], [1, 0, 1], max_rank=3)
    # q0 kept: g0(+) g2 (g1 is same pid + camera) -> only 2 kept items, hit at 0 -> [1, 1, 1]
    # q1 kept: g0 g1 g2(+) -> hit at 2 -> [0, 0, 1]
    np.testing.assert_allclose(res.cmc, [0.5, 0.5, 1])
    assert len(res.cmc) == 3


def test_no_valid_query_raises_like_host():
    d = np.zeros((2, 3))
    with pytest.raises(NoValidQueryError):
        evaluate_rank(d, [1, 2], [3, 3, 3], [0, 0], [1, 1, 1])
    with pytest.raises(AssertionError):  # what the host raises
        evaluate_rank(d, [1, 2], [3, 3, 3], [0, 0], [1, 1, 1])


def test_groupwise_equals_per_group_calls():
    rng = np.random.default_rng(11)
    nq, ng = 60, 240
    qg, gg = rng.integers(0, 3, nq), rng.integers(0, 3, ng)
    qp, gp = rng.integers(0, 15, nq), rng.integers(0, 15, ng)
    qc, gc = rng.integers(0, 2, nq), rng.integers(0, 2, ng)
    d = rng.integers(0, 6, (nq, ng)).astype(np.float32)  # ties inside groups
    out = evaluate_rank(d, qp, gp, qc, gc, max_rank=5, protocol="groupwise", q_groups=qg, g_groups=gg)
    assert isinstance(out, RankResult)
    assert set(out.per_group) == {0, 1, 2} and out.skipped_groups == ()
    maps = []
    for g in range(3):
        qi, gi = np.flatnonzero(qg == g), np.flatnonzero(gg == g)
        sub = d[np.ix_(qi, gi)]
        h_cmc, h_ap, _ = eval_market1501(sub, qp[qi], gp[gi], qc[qi], gc[gi], 5)
        r = out.per_group[g]
        np.testing.assert_allclose(r.cmc, h_cmc, atol=1e-6)
        np.testing.assert_allclose(r.all_AP, h_ap, atol=1e-9)
        maps.append(np.mean(h_ap))
    assert out.mAP == pytest.approx(np.mean(maps))
    # one result: the groups' APs back in query order, the valid mask over all queries
    ap_by_query = np.full(nq, np.nan)
    for g, r in out.per_group.items():
        ap_by_query[np.flatnonzero(qg == g)[r.valid_mask]] = r.all_AP
    np.testing.assert_array_equal(out.all_AP, ap_by_query[out.valid_mask])
    assert out.num_valid == sum(r.num_valid for r in out.per_group.values())
    assert out.num_valid + out.num_skipped == nq


def test_groupwise_skips_group_without_gallery():
    d = np.array([[0.1, 0.2], [0.3, 0.4]])
    out = evaluate_rank(d, [1, 1], [1, 1], [0, 0], [1, 1], max_rank=1, protocol="groupwise",
                        q_groups=["a", "b"], g_groups=["a", "a"])
    assert list(out.per_group) == ["a"] and out.skipped_groups == ("b",)
    assert out.num_skipped == 1 and out.valid_mask.tolist() == [True, False]


def test_cuhk03_sgs_equals_host_rng():
    rng = np.random.default_rng(5)
    nq, ng = 25, 120
    qp, gp = rng.integers(0, 10, nq), rng.integers(0, 10, ng)
    qc, gc = rng.integers(0, 2, nq), rng.integers(0, 2, ng)
    d = rng.integers(0, 10, (nq, ng)).astype(np.float64)
    np.random.seed(123)
    h_cmc, h_map = eval_cuhk03(d, qp, gp, qc, gc, 5)
    np.random.seed(123)
    res = evaluate_rank(d, qp, gp, qc, gc, 5, protocol="cuhk03_sgs")
    assert np.array_equal(res.cmc, h_cmc)
    assert res.mAP == pytest.approx(h_map, abs=1e-9)
    # an explicit RandomState gives the same stream as the seeded global state
    res2 = evaluate_rank(d, qp, gp, qc, gc, 5, protocol="cuhk03_sgs",
                         rng=np.random.RandomState(123))
    assert np.array_equal(res2.cmc, h_cmc)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(distmat=np.array([[np.nan, 1.0, np.inf]])), "2 non-finite"),
        (dict(distmat=np.zeros((0, 3)), q_pids=[], q_camids=[]), "empty"),
        (dict(distmat=np.zeros((1, 0)), g_pids=[], g_camids=[]), "empty"),
        (dict(distmat=np.zeros(3)), "2-D"),
        (dict(q_pids=[1, 2]), "q_pids has length 2"),
        (dict(g_camids=[0, 0]), "g_camids has length 2"),
        (dict(protocol="market"), "Unknown protocol"),
        (dict(max_rank=0), "max_rank"),
        (dict(q_groups=[0], g_groups=[0, 0, 0]), "only used by protocol 'groupwise'"),
        (dict(protocol="groupwise"), "needs q_groups"),
        (dict(distmat=np.array([["a", "b", "c"]])), "real numbers"),
    ],
)
def test_bad_inputs(kwargs, match):
    args = dict(distmat=np.array([[0.1, 0.2, 0.3]]), q_pids=[1], g_pids=[1, 2, 1], q_camids=[0], g_camids=[1, 1, 0])
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        evaluate_rank(**args)


def test_summarize_splits_mean_std():
    rs = [{"Rank-1": 80.0, "mAP": 60.0, "metric": "cosine"},
          {"Rank-1": 90.0, "mAP": 70.0, "metric": "cosine"},
          {"Rank-1": 85.0, "mAP": 62.0, "metric": "cosine"}]
    s = summarize_splits(rs)
    assert s["Rank-1"]["mean"] == pytest.approx(85.0)
    assert s["Rank-1"]["std"] == pytest.approx(np.sqrt(((5**2) * 2) / 2))  # ddof=1
    assert s["mAP"]["std"] == pytest.approx(np.std([60, 70, 62], ddof=1))
    assert summarize_splits(rs, ddof=0)["mAP"]["std"] == pytest.approx(np.std([60, 70, 62]))
    assert s["metric"] == "cosine" and s["num_splits"] == 3 and s["ddof"] == 1
    assert np.isnan(summarize_splits(rs[:1])["mAP"]["std"])


@pytest.mark.parametrize(
    "results, match",
    [
        ([], "empty"),
        ([{"mAP": 1.0}, {"Rank-1": 1.0}], "same metrics"),
        ([{"metric": "cosine"}, {"metric": "euclidean"}], "differs"),
        ([{"mAP": 1.0}, {"mAP": float("nan")}], "non-finite"),
        ({"mAP": 1.0}, "list"),
    ],
)
def test_summarize_splits_bad_inputs(results, match):
    with pytest.raises(ValueError, match=match):
        summarize_splits(results)
