"""Any faiss index by its factory string (evaluation, the gallery index, build_index / --add /
search): exhaustive settings of approximate structures (every IVF cell probed, every candidate
re-ranked by a flat refinement) must give the exact top-k of a float64 numpy reference; the
stored recall must equal one recomputed from scratch; search-time parameters reach the nested
faiss structures."""
import json

import numpy as np
import pytest
import torch

import fastreid_ext  # noqa: F401  (compat shims first)
from fastreid_ext.deploy import FeaturesFile, GalleryIndex, save_features
from fastreid_ext.deploy.cli import build_index_main, search_main
from fastreid_ext.evaluation import faiss_search
from fastreid_ext.evaluation.approximate_search import ApproximateSearch
from fastreid_ext.evaluation.faiss_search import index_spec, set_search_params

faiss = pytest.importorskip("faiss")


def _clustered(n, d, seed, centers=12):
    rng = np.random.default_rng(seed)
    c = rng.standard_normal((centers, d))
    return (c[rng.integers(0, centers, n)] + 0.4 * rng.standard_normal((n, d))).astype(np.float32)


def _ref_dist(q, g, metric):
    """float64 reference: cosine ``1 - cos``, euclidean ``|q - g|``."""
    q, g = q.astype(np.float64), g.astype(np.float64)
    if metric == "cosine":
        q = q / np.linalg.norm(q, axis=1, keepdims=True)
        g = g / np.linalg.norm(g, axis=1, keepdims=True)
        return 1.0 - q @ g.T
    return np.sqrt(np.maximum((q * q).sum(1)[:, None] + (g * g).sum(1)[None] - 2 * q @ g.T, 0))


def _recall(approx, exact):
    return float(np.mean([len(set(a) & set(e)) / len(e) for a, e in zip(approx.tolist(), exact.tolist())]))


def test_shorthands_are_factory_strings():
    assert index_spec("flat") == "Flat"
    assert index_spec("ivf", nlist=16) == "IVF16,Flat"
    assert index_spec("hnsw", hnsw_m=8) == "HNSW8,Flat"
    assert index_spec(" IVF64,PQ8x4 ") == "IVF64,PQ8x4"
    g = _clustered(600, 16, 0)
    ix = faiss_search.build_index(g, kind="ivf", nlist=16, nprobe=5)
    assert type(ix).__name__ == "IndexIVFFlat" and ix.nlist == 16 and ix.nprobe == 5


# exhaustive settings: every cell probed (nprobe = nlist), every item re-ranked (k * k_factor >= G)
EXHAUSTIVE = [
    ("IVF8,Flat", dict(nprobe=8)),
    ("IVF8_HNSW8,Flat", dict(nprobe=8, ef_search=32)),
    ("IVF8,PQ4x4,Refine(Flat)", dict(nprobe=8, k_factor=100)),
    ("IVF8_HNSW8,SQ8,Refine(Flat)", dict(nprobe=8, ef_search=32, k_factor=100)),
]


@pytest.mark.parametrize("spec,params", EXHAUSTIVE)
@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_factory_index_at_exhaustive_settings_is_exact(spec, params, metric, assert_topk_ranking):
    g, q = _clustered(500, 16, 1), _clustered(20, 16, 2)
    ann = ApproximateSearch(g, kind=spec, metric=metric, train_size=500, **params)
    dist, idx = ann.search(q, 5)
    ref = _ref_dist(q, g, metric)
    assert_topk_ranking(idx.numpy(), ref, atol=1e-4)
    # the reported distances are the metric's distances of the returned items
    np.testing.assert_allclose(dist.numpy(), np.take_along_axis(ref, idx.numpy(), 1), atol=1e-4)
    assert ann.recall_at_k(q, 5, sample=0) == pytest.approx(1.0)


def test_compressed_index_recall_is_measured_against_exact():
    g, q = _clustered(800, 16, 3), _clustered(40, 16, 4)
    ann = ApproximateSearch(g, kind="IVF8,PQ4x4", metric="cosine", nprobe=2, train_size=800)
    _, approx = ann.search(q, 10)
    exact = np.argsort(_ref_dist(q, g, "cosine"), axis=1, kind="stable")[:, :10]
    got = ann.recall_at_k(q, 10, sample=0)
    # PQ codes are lossy and only 2 of 8 cells are probed: below 1, and the measured value is
    # the overlap with the float64 top-10 (ties at the 10th place are measure-zero here)
    assert got == pytest.approx(_recall(approx.numpy(), exact), abs=1e-6)
    assert got < 1.0


def test_search_params_reach_nested_structures():
    g = _clustered(600, 16, 5)
    ix = faiss_search.build_index(g, kind="IVF8_HNSW8,PQ4x4,Refine(Flat)", nprobe=3, ef_search=40, k_factor=7,
                                  train_size=600)
    ivf = faiss.extract_index_ivf(ix)
    assert ivf.nprobe == 3 and ix.k_factor == 7
    assert faiss.downcast_index(ivf.quantizer).hnsw.efSearch == 40
    assert set_search_params(ix, nprobe=5, k_factor=2) == {"nprobe": 5, "k_factor": 2}
    assert ivf.nprobe == 5 and ix.k_factor == 2
    flat = faiss_search.build_index(g, kind="Flat")
    with pytest.raises(ValueError, match="nprobe=4 does not apply"):
        set_search_params(flat, nprobe=4)
    assert set_search_params(flat, strict=False, nprobe=4) == {}
    with pytest.raises(TypeError, match="unknown search parameters"):
        set_search_params(flat, probes=4)


def test_bad_factory_strings_and_small_training_sets_are_clear_errors():
    g = _clustered(100, 16, 6)
    with pytest.raises(ValueError, match="unknown index kind 'IVFxx,Flat'.*could not parse"):
        faiss_search.build_index(g, kind="IVFxx,Flat")
    with pytest.raises(ValueError, match="256 IVF cells but only 100 training vectors"):
        faiss_search.build_index(g, kind="IVF256,Flat")
    with pytest.raises(ValueError, match="training index 'PQ4x8' on 100 vectors failed"):
        faiss_search.build_index(g, kind="PQ4x8")  # 256 centroids per sub-quantizer, 100 points


def test_cosine_hnsw_structures_are_built_with_l2_on_unit_vectors():
    assert faiss_search.faiss_metric_of("IVF8_HNSW8,Flat", "cosine") == faiss.METRIC_L2
    assert faiss_search.faiss_metric_of("IVF8,Flat", "cosine") == faiss.METRIC_INNER_PRODUCT
    assert faiss_search.faiss_metric_of("IVF8,Flat", "euclidean") == faiss.METRIC_L2


# ---------------------------------------------------------------------------- gallery index / tools
def _features(x, prefix, start=0):
    return FeaturesFile(x, [f"{prefix}{i + start}" for i in range(len(x))], "h0", meta={"metric": "cosine"})


def test_gallery_index_stores_recall_and_extends_with_add(tmp_path):
    """build_index with a factory string stores the recall@10 measured on sampled items (equal to
    one recomputed here from the float64 reference); --add extends the index; search with
    exhaustive search-time parameters returns the exact top-k of the whole gallery."""
    g = _clustered(700, 16, 7)
    save_features(str(tmp_path / "a.npz"), _features(g[:600], "g"))
    save_features(str(tmp_path / "b.npz"), _features(g[600:], "g", 600))
    spec = "IVF8,PQ4x4,Refine(Flat)"
    build_index_main(["--features", str(tmp_path / "a.npz"), "--index", str(tmp_path / "idx"), "--kind", spec,
                      "--nprobe", "2", "--train-size", "600", "--recall-sample", "50"])
    meta = json.loads((tmp_path / "idx" / "meta.json").read_text())
    assert meta["kind"] == spec and meta["recall"]["sample"] == 50 and meta["recall"]["items"] == 600
    rows = np.sort(np.random.default_rng(0).choice(600, 50, replace=False))  # seed 0: the sample
    loaded = GalleryIndex.load(str(tmp_path / "idx"))
    res = loaded.search(g[rows], 10, use_gpu=False)
    exact = np.argsort(_ref_dist(g[rows], g[:600], "cosine"), axis=1, kind="stable")[:, :10]
    assert meta["recall"]["recall"] == pytest.approx(_recall(res.indices, exact), abs=1e-6)
    assert "recall@10" in loaded.describe()

    build_index_main(["--features", str(tmp_path / "b.npz"), "--index", str(tmp_path / "idx"), "--add"])
    q = _clustered(15, 16, 8)
    save_features(str(tmp_path / "q.npz"), _features(q, "q"))
    _, result = search_main(["--index", str(tmp_path / "idx"), "--query-features", str(tmp_path / "q.npz"),
                             "-k", "5", "--nprobe", "8", "--k-factor", "200", "--cpu", "--format", "json"])
    ref = _ref_dist(q, g, "cosine")
    from conftest import check_topk_ranking

    check_topk_ranking(result.indices, ref, atol=1e-4)
    np.testing.assert_allclose(result.distances, np.take_along_axis(ref, result.indices, 1), atol=1e-4)
    with pytest.raises(ValueError, match="ef_search=9 does not apply"):
        GalleryIndex.load(str(tmp_path / "idx")).search(q, 5, use_gpu=False, ef_search=9)


def test_evaluator_reports_recall_of_a_factory_index():
    from fastreid_ext.config import build_config
    from fastreid_ext.evaluation.approximate_search import retrieval_index

    cfg = build_config("", ["TEST.RETRIEVAL.INDEX", "IVF4,SQ8,Refine(Flat)", "TEST.RETRIEVAL.NPROBE", "4",
                            "TEST.RETRIEVAL.K_FACTOR", "100", "TEST.RETRIEVAL.TRAIN_SIZE", "300"])
    assert retrieval_index(cfg) == "IVF4,SQ8,Refine(Flat)"
    g, q = _clustered(300, 16, 9), _clustered(10, 16, 10)
    ann = ApproximateSearch.from_config(cfg, torch.from_numpy(g), "cosine")
    assert ann.recall_at_k(q, 10, sample=0) == pytest.approx(1.0)
    old = build_config("", ["TEST.RETRIEVAL.APPROX", "hnsw"])
    assert retrieval_index(old) == "hnsw"
