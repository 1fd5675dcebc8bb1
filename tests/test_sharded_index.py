"""A gallery built as N independent shards (build_index.py --shard I/N, one folder each) and
searched as one (search.py --index DIR): for exact shards the result is the one of a single
index over the same items (ids and distances, ties across shards allowed to swap), checked
against a single flat index and a float64 reference; exhaustive IVF shards are exact too."""
import numpy as np
import pytest
from conftest import check_topk_ranking

import fastreid_ext  # noqa: F401  (compat shims first)
from fastreid_ext.deploy import FeaturesFile, GalleryIndex, ShardedGallery, save_features, shard_of
from fastreid_ext.deploy.cli import build_index_main, search_main
from fastreid_ext.deploy.sharded_index import merge_topk, parse_shard, shard_folder

pytest.importorskip("faiss")


def _gallery(n=400, d=16, seed=0):
    """Clustered unit vectors; the last 40 repeat earlier ones exactly (under other names), so
    equal distances occur across shards."""
    rng = np.random.default_rng(seed)
    c = rng.standard_normal((10, d))
    x = c[rng.integers(0, 10, n - 40)] + 0.4 * rng.standard_normal((n - 40, d))
    x = np.concatenate([x, x[rng.choice(n - 40, 40, replace=False)]])
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def _queries(n, d=16, seed=1):
    x = np.random.default_rng(seed).standard_normal((n, d))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def _features(x, prefix="g", start=0):
    return FeaturesFile(x, [f"{prefix}{i + start}" for i in range(len(x))], "h0", meta={"metric": "cosine"})


def _ref(q, g):
    q, g = q.astype(np.float64), g.astype(np.float64)
    return 1.0 - q @ g.T  # unit rows


def assert_same_topk(names_a, dist_a, names_b, dist_b, atol=1e-5):
    """Same ranked distances; the same names except among items tied (within ``atol``) with the
    k-th distance, where either list may hold any of the tied items."""
    np.testing.assert_allclose(dist_a, dist_b, atol=atol)
    for na, da, nb in zip(names_a, dist_a, names_b):
        inside = da < da[-1] - atol
        assert {n for n, i in zip(na, inside) if i} == {n for n, i in zip(nb, inside) if i}
        assert len(set(na)) == len(set(nb)) == len(na)


def _names(result):
    return [[n for n, _ in row] for row in result]


def _build_shards(tmp_path, n_shards, extra=()):
    for i in range(n_shards):
        build_index_main(["--features", str(tmp_path / "g.npz"), "--index", shard_folder(str(tmp_path / "sh"), i, n_shards),
                          "--shard", f"{i}/{n_shards}", *extra])


@pytest.mark.parametrize("n_shards", [1, 3])
def test_exact_shards_equal_one_index(tmp_path, n_shards):
    g, q = _gallery(), _queries(12)
    q = np.concatenate([q, g[[0, 360]]])  # g[360] repeats an earlier item: a tied top-2
    save_features(str(tmp_path / "g.npz"), _features(g))
    save_features(str(tmp_path / "q.npz"), _features(q, "q"))
    build_index_main(["--features", str(tmp_path / "g.npz"), "--index", str(tmp_path / "one")])
    _build_shards(tmp_path, n_shards)
    sharded = ShardedGallery.load([str(tmp_path / "sh")])
    assert len(sharded.shards) == n_shards and len(sharded) == len(g)
    one = GalleryIndex.load(str(tmp_path / "one"))
    for k in (1, 7, 30):
        a = one.search(q, k, use_gpu=False)
        b = sharded.search(q, k, use_gpu=False)
        assert_same_topk(_names(a), a.distances, _names(b), b.distances)
        pos = {n: j for j, n in enumerate(one.names)}  # global ranks -> original rows
        check_topk_ranking([[pos[n] for n in row] for row in _names(b)], _ref(q, g), atol=1e-5)
    # the search tool on the folder of shards prints the same lists
    _, res = search_main(["--index", str(tmp_path / "sh"), "--query-features", str(tmp_path / "q.npz"),
                          "-k", "7", "--cpu", "--format", "json"])
    a = one.search(q, 7, use_gpu=False)
    assert_same_topk(_names(a), a.distances, _names(res), res.distances)


def test_exhaustive_ivf_shards_and_add_stay_exact(tmp_path):
    """Each IVF shard trains its own cells; with every cell probed the merged search is exact,
    also after --add of new items (routed to their shards by name)."""
    g = _gallery(500, seed=2)
    save_features(str(tmp_path / "g.npz"), _features(g[:420]))
    save_features(str(tmp_path / "new.npz"), _features(g[420:], start=420))
    _build_shards(tmp_path, 2, ["--kind", "IVF4,Flat", "--nprobe", "4", "--recall-sample", "20"])
    for i in range(2):
        build_index_main(["--features", str(tmp_path / "new.npz"), "--index", shard_folder(str(tmp_path / "sh"), i, 2),
                          "--shard", f"{i}/2", "--add"])
    sharded = ShardedGallery.load([shard_folder(str(tmp_path / "sh"), i, 2) for i in range(2)])
    assert sorted(sharded.names) == sorted(f"g{i}" for i in range(500))
    assert all(shard_of(n, 2) == s for s, sh in enumerate(sharded.shards) for n in sh.names)
    q = _queries(20, seed=3)
    res = sharded.search(q, 10, use_gpu=False, threads=2)
    pos = {f"g{i}": i for i in range(500)}
    ids = [[pos[n] for n in row] for row in _names(res)]
    check_topk_ranking(ids, _ref(q, g), atol=1e-5)
    np.testing.assert_allclose(res.distances, np.take_along_axis(_ref(q, g), np.array(ids), 1), atol=1e-5)


def test_merge_topk_hand_case():
    d = [np.array([[0.1, 0.5, np.inf]]), np.array([[0.1, 0.2, 0.9]])]
    i = [np.array([[0, 1, -1]]), np.array([[10, 11, 12]])]
    md, mi = merge_topk(d, i, 4)
    np.testing.assert_array_equal(mi, [[0, 10, 11, 1]])  # the tie at 0.1 keeps shard order
    np.testing.assert_allclose(md, [[0.1, 0.1, 0.2, 0.5]])
    md, mi = merge_topk([np.array([[0.3, 0.0]])], [np.array([[4, -1]])], 2)
    assert mi.tolist() == [[4, -1]] and md[0, 1] == np.inf  # a missing result stays last


def test_shards_of_other_models_or_overlapping_items_are_refused(tmp_path):
    g = _gallery(100, seed=4)
    a = GalleryIndex.build(_features(g[:50]))
    b = GalleryIndex.build(_features(g[50:], start=50))
    other = GalleryIndex.build(FeaturesFile(g[50:], [f"x{i}" for i in range(50)], "h1", meta={"metric": "cosine"}))
    with pytest.raises(ValueError, match="config_hash"):
        ShardedGallery([a, other])
    with pytest.raises(ValueError, match="in more than one shard"):
        ShardedGallery([a, b, GalleryIndex.build(_features(g[:5]))])
    with pytest.raises(ValueError, match="--shard must be I/N"):
        parse_shard("2")
    with pytest.raises(ValueError, match="0 <= I < N"):
        parse_shard("3/3")
    with pytest.raises(FileNotFoundError, match="shard-"):
        ShardedGallery.load([str(tmp_path)])
