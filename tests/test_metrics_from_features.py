"""evaluate_features: equal to evaluate_rank on the full matrix, chunked within its budget."""
import warnings

import numpy as np
import pytest
import torch

import fastreid_ext  # noqa: F401  (compat shims before the host's packages)
from fastreid_ext.evaluation import distance, evaluate_features, evaluate_rank
from fastreid_ext.evaluation import metrics_from_features as mff
from fastreid_ext.evaluation.distance import host_pairwise_distance

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastreid.evaluation.rank import eval_market1501
    from fastreid.utils.compute_dist import build_dist


def _ids(rng, nq, ng, npid=12, ncam=3):
    return (rng.integers(0, npid, nq), rng.integers(0, npid, ng),
            rng.integers(0, ncam, nq), rng.integers(0, ncam, ng))


def _same(a, b):
    assert np.array_equal(a.cmc, b.cmc)
    np.testing.assert_allclose(a.all_AP, b.all_AP, rtol=0, atol=1e-12)
    np.testing.assert_allclose(a.all_INP, b.all_INP, rtol=0, atol=1e-12)
    assert np.array_equal(a.valid_mask, b.valid_mask) and a.num_skipped == b.num_skipped


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_host_pairwise_distance_is_the_hosts(metric):
    torch.manual_seed(0)
    qf, gf = torch.randn(7, 16, dtype=torch.float64), torch.randn(50, 16, dtype=torch.float64)
    np.testing.assert_allclose(host_pairwise_distance(qf, gf, metric).numpy(), build_dist(qf, gf, metric),
                               rtol=0, atol=1e-12)


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
@pytest.mark.parametrize("protocol", ["cross_camera", "mars_official", "cuhk03_sgs"])
@pytest.mark.parametrize("memory_mb", [0.001, 0.02, 64])
def test_equals_evaluate_rank_on_full_matrix(metric, protocol, memory_mb):
    rng = np.random.default_rng(1)
    nq, ng = 37, 180
    qp, gp, qc, gc = _ids(rng, nq, ng)
    gp[:15] = -1  # junk for mars_official, an ordinary id otherwise
    qf, gf = rng.standard_normal((nq, 12)), rng.standard_normal((ng, 12))  # float64: tie-free
    dist = host_pairwise_distance(qf, gf, metric).numpy()
    np.random.seed(3)
    ref = evaluate_rank(dist, qp, gp, qc, gc, max_rank=10, protocol=protocol)
    np.random.seed(3)
    got = evaluate_features(qf, gf, qp, gp, qc, gc, metric=metric, protocol=protocol, max_rank=10,
                            memory_mb=memory_mb)
    _same(ref, got)
    if protocol == "cross_camera":
        h_cmc, h_ap, h_inp = eval_market1501(dist, qp, gp, qc, gc, 10)
        np.testing.assert_allclose(got.cmc, h_cmc, atol=1e-6)
        np.testing.assert_allclose(got.all_AP, h_ap, atol=1e-6)
        np.testing.assert_allclose(got.all_INP, h_inp, atol=1e-6)


def test_ties_from_integer_features_equal_host():
    """Small-integer features give exact distances, hence real ties: equal to the host's
    evaluator on the host's own distance matrix (the tie rule is the host's argsort)."""
    rng = np.random.default_rng(2)
    nq, ng = 30, 200
    qp, gp, qc, gc = _ids(rng, nq, ng, npid=6)
    qf = rng.integers(-1, 2, (nq, 4)).astype(np.float32)
    gf = rng.integers(-1, 2, (ng, 4)).astype(np.float32)
    dist = build_dist(torch.from_numpy(qf), torch.from_numpy(gf), "euclidean")
    tied = 0
    for i in range(nq):  # rows where a match shares its distance with a non-match
        m = gp == qp[i]
        tied += bool(np.intersect1d(dist[i][m], dist[i][~m]).size)
    assert tied > nq // 2
    h_cmc, h_ap, h_inp = eval_market1501(dist, qp, gp, qc, gc, 10)
    for mb in (0.001, 64):
        cmc, ap, inp = evaluate_features(qf, gf, qp, gp, qc, gc, metric="euclidean", max_rank=10,
                                         memory_mb=mb).as_tuple()
        np.testing.assert_allclose(cmc, h_cmc, atol=1e-6)
        np.testing.assert_allclose(ap, h_ap, atol=1e-6)
        np.testing.assert_allclose(inp, h_inp, atol=1e-6)


def test_groupwise_from_features():
    rng = np.random.default_rng(4)
    nq, ng = 40, 150
    qp, gp, qc, gc = _ids(rng, nq, ng)
    qg, gg = rng.integers(0, 2, nq), rng.integers(0, 2, ng)
    qf, gf = rng.standard_normal((nq, 8)), rng.standard_normal((ng, 8))
    dist = host_pairwise_distance(qf, gf).numpy()
    ref = evaluate_rank(dist, qp, gp, qc, gc, 5, protocol="groupwise", q_groups=qg, g_groups=gg)
    got = evaluate_features(qf, gf, qp, gp, qc, gc, protocol="groupwise", max_rank=5, q_groups=qg,
                            g_groups=gg, memory_mb=0.005)
    assert set(ref.per_group) == set(got.per_group) == {0, 1}
    for g in ref.per_group:
        _same(ref.per_group[g], got.per_group[g])
    _same(ref, got)
    assert got.mAP == pytest.approx(ref.mAP, abs=1e-12)


def test_chunks_stay_within_budget(monkeypatch):
    rng = np.random.default_rng(5)
    nq, ng, mb = 64, 500, 0.25
    qp, gp, qc, gc = _ids(rng, nq, ng)
    # small-integer float32 features: every Euclidean distance is exact whatever the block shape
    # (BLAS may sum another block width in another order; random floats could then swap near-ties)
    qf, gf = rng.integers(-3, 4, (nq, 8)).astype(np.float32), rng.integers(-3, 4, (ng, 8)).astype(np.float32)
    shapes = []
    orig = mff.host_distance_rows

    def spy(*args):
        out = orig(*args)
        shapes.append(tuple(out.shape))
        return out

    monkeypatch.setattr(mff, "host_distance_rows", spy)
    got = evaluate_features(qf, gf, qp, gp, qc, gc, metric="euclidean", memory_mb=mb)
    assert len(shapes) > 1 and sum(s[0] for s in shapes) == nq
    # one block and its ~6 same-sized temporaries fit in the budget
    assert all(r * c * 4 * 6 <= mb * 2**20 for r, c in shapes)
    monkeypatch.setattr(mff, "host_distance_rows", orig)
    _same(evaluate_rank(host_pairwise_distance(qf, gf, "euclidean").numpy(), qp, gp, qc, gc), got)


def test_inputs_not_modified_and_tensor_inputs():
    rng = np.random.default_rng(6)
    qp, gp, qc, gc = _ids(rng, 10, 60)
    qf, gf = torch.randn(10, 8), torch.randn(60, 8)
    q0, g0 = qf.clone(), gf.clone()
    a = evaluate_features(qf, gf, qp, gp, qc, gc)
    assert torch.equal(qf, q0) and torch.equal(gf, g0)
    b = evaluate_features(qf.numpy(), gf.numpy(), qp, gp, qc, gc)
    _same(a, b)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_equals_cpu():
    rng = np.random.default_rng(7)
    qp, gp, qc, gc = _ids(rng, 50, 400)
    qf, gf = torch.randn(50, 32, dtype=torch.float64), torch.randn(400, 32, dtype=torch.float64)
    cpu = evaluate_features(qf, gf, qp, gp, qc, gc, device="cpu")
    gpu = evaluate_features(qf.cuda(), gf.cuda(), qp, gp, qc, gc, memory_mb=0.2)
    np.testing.assert_allclose(gpu.cmc, cpu.cmc, atol=1e-6)
    np.testing.assert_allclose(gpu.all_AP, cpu.all_AP, atol=1e-9)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(qf=np.array([[np.nan, 1.0], [np.inf, 0.0]])), "qf has 2 non-finite"),
        (dict(gf=np.full((3, 2), np.nan)), "gf has 6 non-finite"),
        (dict(gf=np.ones((3, 5))), "dimension mismatch"),
        (dict(qf=np.ones((0, 2)), q_pids=[], q_camids=[]), "empty"),
        (dict(qf=np.ones(2)), "2-D"),
        (dict(metric="jaccard"), "Unknown metric"),
        (dict(protocol="market"), "Unknown protocol"),
        (dict(memory_mb=0), "memory_mb"),
        (dict(g_pids=[1, 2]), "g_pids has length 2"),
    ],
)
def test_bad_inputs(kwargs, match):
    args = dict(qf=np.ones((2, 2)), gf=np.eye(3, 2), q_pids=[1, 2], g_pids=[1, 2, 1],
                q_camids=[0, 0], g_camids=[1, 1, 1])
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        evaluate_features(**args)


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_gallery_blocks_equal_one_shot(metric):
    torch.manual_seed(1)
    q = torch.randint(-2, 3, (9, 6)).double()
    g = torch.randint(-2, 3, (50, 6)).double()
    if metric == "cosine":
        q = torch.nn.functional.normalize(q, dim=1)
    one = distance.host_distance_rows(q, g, metric, 50)
    blocked = distance.host_distance_rows(q, g, metric, 7)  # 8 blocks, the last one short
    # BLAS may pick another kernel for another block width: equal up to rounding
    torch.testing.assert_close(one, blocked, rtol=0, atol=1e-12)
    np.testing.assert_allclose(one.numpy(), build_dist(q, g, metric), atol=1e-12)
