"""k-reciprocal re-ranking and query expansion against straightforward float64 numpy
transcriptions of the algorithms (and the host's numpy code where it is importable)."""
import numpy as np
import pytest
import torch

import fastreid_ext  # noqa: F401  (compat shims first)
from fastreid_ext.evaluation.query_expansion import average_query_expansion
from fastreid_ext.evaluation.rerank import k_reciprocal_rerank, re_ranking_from_dist


def numpy_metric_distance(a: np.ndarray, b: np.ndarray, metric: str) -> np.ndarray:
    if metric == "cosine":
        an = a / np.linalg.norm(a, axis=1, keepdims=True)
        bn = b / np.linalg.norm(b, axis=1, keepdims=True)
        return 1.0 - an @ bn.T
    return np.sqrt(((a[:, None, :] - b[None, :, :]) ** 2).sum(-1))


def reference_rerank(q, g, k1, k2, lam, metric="euclidean"):
    """Zhong et al. CVPR 2017, Eqs. (3), (6), (7), (10), (11), (12), one element at a time."""
    x = np.concatenate([q, g]).astype(np.float64)
    n, nq = len(x), len(q)
    d = numpy_metric_distance(x, x, metric) ** 2
    d = d / d.max(axis=1, keepdims=True)
    rank = np.argsort(d, axis=1, kind="stable")

    def reciprocal(i, k):  # R(i, k): forward neighbours that have i among theirs
        return [j for j in rank[i, : k + 1] if i in rank[j, : k + 1]]

    V = np.zeros((n, n))
    for i in range(n):
        r = reciprocal(i, k1)
        expanded = set(r)
        for c in r:
            rc = reciprocal(c, int(np.around(k1 / 2)))
            if len(set(rc) & set(r)) > 2.0 / 3.0 * len(rc):
                expanded |= set(rc)
        idx = sorted(expanded)
        w = np.exp(-d[i, idx])
        V[i, idx] = w / w.sum()
    if k2 > 1:
        V = np.stack([V[rank[i, :k2]].mean(axis=0) for i in range(n)])
    jac = np.zeros((nq, n))
    for i in range(nq):
        for j in range(n):
            jac[i, j] = 1.0 - np.minimum(V[i], V[j]).sum() / np.maximum(V[i], V[j]).sum()
    final = (1.0 - lam) * jac + lam * d[:nq]
    return final[:, nq:]


CASES = [
    # Q, G, D, k1, k2, lambda, metric
    (6, 30, 8, 6, 3, 0.3, "euclidean"),
    (9, 41, 5, 7, 1, 0.5, "euclidean"),  # odd k1 (k1/2 rounds half to even), no QE
    (8, 35, 6, 5, 4, 0.1, "cosine"),
    (4, 12, 3, 20, 6, 0.3, "euclidean"),  # k1 + 1 > N: neighbour lists cover everything
]


def make(Q, G, D, seed=0):
    rng = np.random.default_rng(seed)
    ids = rng.normal(size=(6, D))
    q = ids[rng.integers(0, 6, Q)] + 0.7 * rng.normal(size=(Q, D))
    g = ids[rng.integers(0, 6, G)] + 0.7 * rng.normal(size=(G, D))
    return q, g


@pytest.mark.parametrize("Q,G,D,k1,k2,lam,metric", CASES)
def test_rerank_equals_float64_reference(Q, G, D, k1, k2, lam, metric, assert_topk_ranking):
    q, g = make(Q, G, D)
    ref = reference_rerank(q, g, k1, k2, lam, metric)
    got = k_reciprocal_rerank(torch.from_numpy(q), torch.from_numpy(g), k1, k2, lam, metric, device="cpu")
    assert got.dtype == torch.float64 and got.shape == (Q, G)
    np.testing.assert_allclose(got.numpy(), ref, atol=1e-10)
    # the same ranking, up to swaps of items whose re-ranked distances differ by rounding
    assert_topk_ranking(np.argsort(got.numpy(), 1, kind="stable"), ref, atol=1e-10)
    # float32 features: the same ranking, values to float32 precision
    got32 = k_reciprocal_rerank(torch.from_numpy(q).float(), torch.from_numpy(g).float(), k1, k2, lam, metric)
    assert got32.dtype == torch.float32
    np.testing.assert_allclose(got32.numpy(), ref, atol=2e-5)


@pytest.mark.parametrize("Q,G,D,k1,k2,lam,metric", CASES[:2])
def test_rerank_tiny_memory_budget_same_result(Q, G, D, k1, k2, lam, metric):
    q, g = make(Q, G, D, seed=3)
    q, g = torch.from_numpy(q), torch.from_numpy(g)
    big = k_reciprocal_rerank(q, g, k1, k2, lam, metric, memory_mb=1024)
    tiny = k_reciprocal_rerank(q, g, k1, k2, lam, metric, memory_mb=1e-5)  # blocks of one row
    torch.testing.assert_close(big, tiny, atol=1e-12, rtol=0)


def test_rerank_from_distances_matches_host_numpy():
    rerank_mod = pytest.importorskip("fastreid.evaluation.rerank")
    q, g = make(10, 40, 8, seed=5)
    qg = numpy_metric_distance(q, g, "euclidean")
    qq = numpy_metric_distance(q, q, "euclidean")
    gg = numpy_metric_distance(g, g, "euclidean")
    host = rerank_mod.re_ranking(qg, qq, gg, k1=6, k2=3, lambda_value=0.3)  # float32 inside
    ours = re_ranking_from_dist(qg, qq, gg, k1=6, k2=3, lambda_value=0.3, memory_mb=1e-4)
    np.testing.assert_allclose(ours.numpy(), host, atol=1e-5)
    np.testing.assert_allclose(ours.numpy(), reference_rerank(q, g, 6, 3, 0.3), atol=1e-10)


def test_rerank_bad_input():
    q, g = make(4, 10, 3)
    with pytest.raises(ValueError, match="k1 and k2"):
        k_reciprocal_rerank(q, g, k1=0)
    with pytest.raises(ValueError, match="lambda"):
        k_reciprocal_rerank(q, g, lambda_value=1.5)
    bad = q.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="1 NaN"):
        k_reciprocal_rerank(bad, g)
    with pytest.raises(ValueError, match="Empty gallery"):
        k_reciprocal_rerank(q, g[:0])
    with pytest.raises(ValueError, match="metric"):
        k_reciprocal_rerank(q, g, metric="jaccard")


def reference_aqe(q, g, qe_times, qe_k, alpha):
    x = np.concatenate([q, g]).astype(np.float64)
    for _ in range(qe_times):
        u = x / np.linalg.norm(x, axis=1, keepdims=True)
        sims = u @ u.T
        new = np.zeros_like(x)
        for i in range(len(x)):
            top = np.argsort(-sims[i], kind="stable")[:qe_k]
            new[i] = np.mean(x[top] * (sims[i, top] ** alpha)[:, None], axis=0)
        x = new
    return x[: len(q)], x[len(q) :]


@pytest.mark.parametrize("qe_times,qe_k,alpha", [(1, 5, 3.0), (2, 3, 1.0), (1, 1, 0.0)])
def test_aqe_matches_numpy_and_host(qe_times, qe_k, alpha):
    q, g = make(7, 25, 6, seed=2)
    rq, rg = reference_aqe(q, g, qe_times, qe_k, alpha)
    eq, eg = average_query_expansion(q, g, qe_times, qe_k, alpha, memory_mb=1e-4)
    np.testing.assert_allclose(eq.numpy(), rq, atol=1e-10)
    np.testing.assert_allclose(eg.numpy(), rg, atol=1e-10)
    host = pytest.importorskip("fastreid.evaluation.query_expansion")
    hq, hg = host.aqe(torch.from_numpy(q).float(), torch.from_numpy(g).float(), qe_times, qe_k, alpha)
    np.testing.assert_allclose(hq.numpy(), rq, atol=1e-5)
    np.testing.assert_allclose(hg.numpy(), rg, atol=1e-5)
