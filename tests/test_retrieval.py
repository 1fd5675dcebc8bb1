"""Exact kNN search (``fastreid_ext.evaluation.retrieval``), distances (``.distance``) and
approximate search (``.approximate_search``) against float64 numpy brute force."""

import numpy as np
import pytest
import torch

import fastreid_ext  # noqa: F401  (compat shims first)
from fastreid_ext.evaluation import distance, faiss_search, retrieval
from fastreid_ext.evaluation.approximate_search import ApproximateSearch, recall_at_k
from fastreid_ext.evaluation.distance import pairwise_distance
from fastreid_ext.evaluation.retrieval import search
from fastreid_ext.evaluation.validation import validate_features


def numpy_distance(q: np.ndarray, g: np.ndarray, metric: str) -> np.ndarray:
    """float64 brute force, written from the definitions."""
    q = q.astype(np.float64)
    g = g.astype(np.float64)
    if metric == "cosine":
        qn = q / np.linalg.norm(q, axis=1, keepdims=True)
        gn = g / np.linalg.norm(g, axis=1, keepdims=True)
        return 1.0 - qn @ gn.T
    return np.sqrt(((q[:, None, :] - g[None, :, :]) ** 2).sum(-1))


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    q = rng.normal(size=(23, 12)).astype(np.float32)
    g = rng.normal(size=(57, 12)).astype(np.float32)
    return q, g


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
@pytest.mark.parametrize("backend", ["torch", "faiss", "auto"])
def test_exact_search_matches_numpy(data, metric, backend, assert_topk_ranking):
    q, g = data
    k = 7
    ref = numpy_distance(q, g, metric)
    ref_idx = np.argsort(ref, axis=1, kind="stable")[:, :k]
    dist, idx = search(torch.from_numpy(q), torch.from_numpy(g), k, metric=metric, backend=backend)
    assert dist.shape == (23, k) and idx.shape == (23, k)
    assert_topk_ranking(idx.numpy(), ref, atol=1e-5)  # float32 search: swaps only within rounding
    np.testing.assert_allclose(dist.numpy(), np.take_along_axis(ref, ref_idx, 1), atol=1e-5)


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
@pytest.mark.parametrize("backend", ["torch", "faiss"])
def test_chunking_with_tiny_budget_is_identical(data, metric, backend, assert_topk_ranking):
    q, g = data
    full = search(q, g, 9, metric, backend, memory_mb=1024)
    # 57 gallery columns * 4 bytes: 1e-4 MiB gives blocks of at most a couple of rows
    tiny = search(q, g, 9, metric, backend, memory_mb=1e-4)
    assert distance.rows_per_block(57, 1e-4) == 1
    # BLAS may sum in another order for another block height: equal up to rounding, and the
    # rankings may only swap items whose distances differ by rounding
    torch.testing.assert_close(full[0], tiny[0], atol=1e-6, rtol=0)
    ref = numpy_distance(q, g, metric)
    assert_topk_ranking(full[1].numpy(), ref, atol=1e-5)
    assert_topk_ranking(tiny[1].numpy(), ref, atol=1e-5)


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_pairwise_distance_blocks_match_numpy(data, metric):
    q, g = data
    ref = numpy_distance(q, g, metric)
    d_full = pairwise_distance(q, g, metric, memory_mb=1024)
    d_tiny = pairwise_distance(q, g, metric, memory_mb=1e-4)
    np.testing.assert_allclose(d_full.numpy(), ref, atol=1e-5)
    torch.testing.assert_close(d_full, d_tiny, atol=1e-6, rtol=0)
    d64 = pairwise_distance(q.astype(np.float64), g.astype(np.float64), metric)
    assert d64.dtype == torch.float64
    np.testing.assert_allclose(d64.numpy(), ref, atol=1e-10)


def test_unknown_names_raise(data):
    q, g = data
    with pytest.raises(ValueError, match="backend"):
        search(q, g, 3, backend="annoy")
    with pytest.raises(ValueError, match="metric"):
        search(q, g, 3, metric="manhattan")
    with pytest.raises(ValueError, match="index kind"):
        ApproximateSearch(g, kind="lsh")
    with pytest.raises(ValueError, match="k must be"):
        search(q, g, 58)


def test_bad_input_errors(data):
    q, g = data
    bad = q.copy()
    bad[3, 1] = np.nan
    bad[3, 2] = np.nan
    bad[7, 0] = np.inf
    with pytest.raises(ValueError, match=r"query features contain non-finite values: 2 NaN and 1 inf entries in 2 of 23 rows"):
        search(bad, g, 3)
    badg = g.copy()
    badg[0, 0] = -np.inf
    with pytest.raises(ValueError, match=r"gallery .* 0 NaN and 1 inf"):
        pairwise_distance(q, badg, "cosine")
    with pytest.raises(ValueError, match="Empty query"):
        search(q[:0], g, 3)
    with pytest.raises(ValueError, match="Empty gallery"):
        validate_features(q, g[:0])
    with pytest.raises(ValueError, match="different dimensions: 12 vs 11"):
        search(q, g[:, :11], 3)


def test_gpu_asked_without_faiss_gpu_falls_back_with_warning(data, monkeypatch):
    import faiss

    q, g = data
    monkeypatch.setattr(faiss, "get_num_gpus", lambda: 0)
    assert faiss_search.faiss_num_gpus() == 0
    ref = search(q, g, 5, "cosine", "faiss", device="cpu")
    with pytest.warns(UserWarning, match="no GPU support"):
        got = faiss_search.faiss_exact_search(torch.from_numpy(q), torch.from_numpy(g), 5, "cosine", 1024, want_gpu=True)
    assert torch.equal(ref[1], got[1])
    # and an approximate GPU index stays on the CPU with a warning
    with pytest.warns(UserWarning, match="no GPU support"):
        faiss_search.build_index(g, kind="flat", use_gpu=True)


def test_auto_backend_choice(monkeypatch):
    monkeypatch.setattr(faiss_search, "faiss_num_gpus", lambda: 0)
    assert retrieval.resolve_backend("auto", want_gpu=False) == "torch"
    assert retrieval.resolve_backend("auto", want_gpu=True) == "torch"
    monkeypatch.setattr(faiss_search, "faiss_num_gpus", lambda: 2)
    assert retrieval.resolve_backend("auto", want_gpu=True) == "faiss"
    assert retrieval.resolve_backend("auto", want_gpu=False) == "torch"
    assert retrieval.resolve_backend("torch", want_gpu=True) == "torch"


def clustered(n_ids, per_id, dim, noise, rng):
    centers = rng.normal(size=(n_ids, dim)).astype(np.float32)
    x = centers[rng.integers(0, n_ids, n_ids * per_id)]
    return (x + noise * rng.normal(size=x.shape)).astype(np.float32)


@pytest.mark.parametrize("kind,params", [("ivf", dict(nlist=16, nprobe=16)), ("hnsw", dict(hnsw_m=16, ef_search=64))])
@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_approximate_recall_measured(kind, params, metric):
    rng = np.random.default_rng(1)
    g = clustered(50, 40, 16, 0.3, rng)
    q = clustered(50, 1, 16, 0.3, rng)
    ann = ApproximateSearch(g, kind=kind, metric=metric, train_size=2000, **params)
    _, exact = search(q, g, 10, metric, "torch")
    approx_d, approx = ann.search(q, 10)
    # the reported distances are the metric's distances of the returned items
    true_d = np.take_along_axis(numpy_distance(q, g, metric), approx.numpy(), 1)
    np.testing.assert_allclose(approx_d.numpy(), true_d, atol=1e-4)
    expected = np.mean([len(set(a) & set(e)) / 10 for a, e in zip(approx.tolist(), exact.tolist())])
    got = ann.recall_at_k(q, 10, sample=0)
    assert got == pytest.approx(expected)
    # nprobe = nlist (IVF) visits every cell: the search is exact
    if kind == "ivf":
        assert got == pytest.approx(1.0)
    else:
        assert got > 0.8


def test_recall_at_k_hand_case():
    exact = torch.tensor([[0, 1, 2], [3, 4, 5]])
    approx = torch.tensor([[2, 9, 0], [-1, -1, -1]])
    assert recall_at_k(approx, exact) == pytest.approx((2 / 3 + 0) / 2)


def test_several_gpus_shard_the_index(data, monkeypatch, assert_topk_ranking):
    """With faiss GPUs (mocked), the flat index is cloned to all GPUs with shard=True."""
    import faiss

    q, g = data
    calls = {}

    class Options:
        shard = False

    def to_all_gpus(index, co=None, ngpu=-1):
        calls["shard"], calls["ngpu"] = co.shard, ngpu
        return index  # the CPU index stands in for the sharded GPU one

    monkeypatch.setattr(faiss_search, "faiss_num_gpus", lambda: 2)
    monkeypatch.setattr(faiss, "GpuMultipleClonerOptions", Options, raising=False)
    monkeypatch.setattr(faiss, "index_cpu_to_all_gpus", to_all_gpus, raising=False)
    got = faiss_search.faiss_exact_search(torch.from_numpy(q), torch.from_numpy(g), 4, "euclidean", 1024, want_gpu=True)
    assert calls == {"shard": True, "ngpu": 2}
    assert_topk_ranking(got[1].numpy(), numpy_distance(q, g, "euclidean"), atol=1e-5)


def test_ivf_on_a_gallery_smaller_than_nlist_lowers_nlist_and_still_finds_exact_matches():
    """A few-hundred-item gallery (iLIDS-VID, PRID) with the default nlist 1024: faiss's k-means
    would throw; the index is built with fewer lists (warned) and still searches."""
    rng = np.random.default_rng(0)
    g = rng.standard_normal((200, 16)).astype(np.float32)
    with pytest.warns(UserWarning, match="nlist lowered"):
        index = faiss_search.build_index(g, kind="ivf", nlist=1024, nprobe=1024)
    assert index.nlist < 200
    _, ids = index.search(g[:20], 1)
    np.testing.assert_array_equal(ids[:, 0], np.arange(20))  # each query is its own exact match
