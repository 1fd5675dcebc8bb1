"""faiss GPU paths with a stand-in GPU index (faiss-cpu here): k / nprobe above the GPU limit
fall back to a CPU copy, the GPU the search device names is used, one gallery is copied to the
GPU once for repeated searches."""
import pytest
import torch

from fastreid_ext.evaluation import faiss_search
from fastreid_ext.evaluation.approximate_search import ApproximateSearch
from fastreid_ext.evaluation.retrieval import search

faiss = pytest.importorskip("faiss")


class StandInGpuIndex:
    """Behaves like a faiss GPU index: refuses k or nprobe > 2048 (as faiss's GPU k-selection
    does) and records its searches; the work is done by the wrapped CPU index."""

    def __init__(self, cpu, device):
        self.cpu, self.device, self.searches = cpu, device, []
        self.fastreid_ext_on_gpu = True
        self.metric_type = cpu.metric_type

    @property
    def nprobe(self):
        return getattr(self.cpu, "nprobe", 0)

    def add(self, x):
        self.cpu.add(x)

    def search(self, x, k):
        if k > 2048 or self.nprobe > 2048:
            raise RuntimeError("Error: 'k > 0 && k <= GPU_MAX_SELECTION_K' failed")
        self.searches.append(k)
        return self.cpu.search(x, k)


@pytest.fixture()
def fake_gpu(monkeypatch):
    made = []

    def to_gpu(index, ngpus, device=None):
        gpu = StandInGpuIndex(index, device)
        made.append(gpu)
        return gpu

    monkeypatch.setattr(faiss_search, "faiss_num_gpus", lambda: 1)
    monkeypatch.setattr(faiss_search, "faiss_to_gpu", to_gpu)
    monkeypatch.setattr(faiss_search, "gpu_to_cpu", lambda index: index.cpu)
    faiss_search.clear_gpu_cache()
    yield made
    faiss_search.clear_gpu_cache()


def _feats(n, d=8, seed=0):
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed))


def _reference(q, g, k):
    """Exact cosine kNN in float64 (the torch backend is checked against it elsewhere)."""
    d = 1 - torch.nn.functional.normalize(q.double(), dim=1) @ torch.nn.functional.normalize(g.double(), dim=1).t()
    return torch.topk(d, k, dim=1, largest=False)


@pytest.mark.parametrize("k", [10, 3000])
def test_exact_faiss_search_on_gpu_with_k_above_the_limit_falls_back(fake_gpu, k):
    q, g = _feats(5, seed=1), _feats(3500, seed=2)
    with pytest.warns(UserWarning) if k > 2048 else _no_warning():
        dist, idx = faiss_search.faiss_exact_search(q, g, k, "cosine", 64, want_gpu=True)
    ref_d, ref_i = _reference(q, g, k)
    torch.testing.assert_close(dist.double(), ref_d, rtol=0, atol=1e-5)
    assert (idx[:, :5] == ref_i[:, :5]).float().mean() > 0.99  # ties aside, same neighbours
    if k > 2048:
        assert fake_gpu == []  # never sent to the GPU
    else:
        assert fake_gpu and fake_gpu[0].searches == [k]


def test_repeated_searches_of_one_gallery_copy_it_to_the_gpu_once(fake_gpu):
    q, g = _feats(4, seed=1), _feats(100, seed=2)
    for _ in range(3):
        faiss_search.faiss_exact_search(q, g, 10, "cosine", 64, want_gpu=True)
    assert len(fake_gpu) == 1 and fake_gpu[0].searches == [10, 10, 10]
    g.mul_(2)  # modified in place: a new copy
    faiss_search.faiss_exact_search(q, g, 10, "cosine", 64, want_gpu=True)
    assert len(fake_gpu) == 2


def test_the_search_device_picks_the_gpu(fake_gpu):
    q, g = _feats(4, seed=1), _feats(50, seed=2)
    search(q, g, 5, backend="faiss", device="cuda:1")
    search(q, g, 5, backend="faiss", device="cuda")
    assert [m.device for m in fake_gpu] == [1, None]  # GPU 1; all GPUs (sharded)


@pytest.mark.parametrize("k,nprobe", [(10, 8), (3000, 8), (10, 3000)])
def test_ivf_on_gpu_with_k_or_nprobe_above_the_limit(fake_gpu, k, nprobe):
    g = _feats(4000, seed=2)
    q = _feats(6, seed=1)
    ann = ApproximateSearch(g, kind="ivf", metric="cosine", nlist=16, nprobe=nprobe,
                                         train_size=4000, use_gpu=True)
    dist, idx = ann.search(q, k)
    assert idx.shape == (6, k) and torch.isfinite(dist).all()
    if nprobe > 2048:
        assert fake_gpu == []  # the index stays on the CPU
        return
    assert len(fake_gpu) == 1
    assert fake_gpu[0].searches == ([k] if k <= 2048 else [])
    # IVF over all 16 cells is exact: compare the nearest neighbour with the float64 reference
    if nprobe >= 16:
        assert torch.equal(idx[:, 0], _reference(q, g, 1)[1][:, 0])


def test_faiss_to_gpu_uses_the_named_device(monkeypatch):
    calls = []
    monkeypatch.setattr(faiss, "StandardGpuResources", lambda: "res", raising=False)
    gpu_cls = type("GpuIndexFlatL2", (), {})  # the class name faiss's GPU flat index has
    monkeypatch.setattr(faiss, "index_cpu_to_gpu", lambda res, dev, index: calls.append(dev) or gpu_cls(),
                        raising=False)
    monkeypatch.setattr(faiss_search, "_GPU_RESOURCES", [])
    out = faiss_search.faiss_to_gpu(faiss.IndexFlatL2(4), ngpus=2, device=1)
    faiss_search.faiss_to_gpu(faiss.IndexFlatL2(4), ngpus=1)
    assert calls == [1, 0] and faiss_search.is_gpu_index(out)
    assert not faiss_search.is_gpu_index(faiss.IndexFlatL2(4))


class _no_warning:
    def __enter__(self):
        import warnings

        self._w = warnings.catch_warnings()
        self._w.__enter__()
        warnings.simplefilter("error")

    def __exit__(self, *exc):
        return self._w.__exit__(*exc)


@pytest.mark.parametrize("k", [10, 3000])
def test_deployed_gallery_index_on_gpu_with_k_above_the_limit(fake_gpu, k):
    from fastreid_ext.deploy.features_file import FeaturesFile
    from fastreid_ext.deploy.gallery_index import GalleryIndex

    g = _feats(3200, seed=2).numpy()
    feats = FeaturesFile(g, [f"g{i}" for i in range(len(g))], "h0", meta={"metric": "cosine"})
    index = GalleryIndex.build(feats, "flat", "cosine")
    q = _feats(3, seed=1)
    res = index.search(q.numpy(), k=k, use_gpu=True)
    ref_d, _ = _reference(q, torch.from_numpy(g), k)
    torch.testing.assert_close(torch.from_numpy(res.distances).double(), ref_d, rtol=0, atol=1e-5)
    assert [m.searches for m in fake_gpu] == ([[k]] if k <= 2048 else [])


def test_the_gpu_copy_is_released_with_its_gallery(fake_gpu):
    import gc

    q, g = _feats(4, seed=1), _feats(100, seed=2)
    faiss_search.faiss_exact_search(q, g, 10, "cosine", 64, want_gpu=True)
    assert faiss_search._GPU_CACHE
    g2 = _feats(100, seed=3)
    faiss_search.faiss_exact_search(q, g2, 10, "cosine", 64, want_gpu=True)
    del g
    gc.collect()
    assert faiss_search._GPU_CACHE  # the first gallery's death does not drop the second's copy
    del g2
    gc.collect()
    assert not faiss_search._GPU_CACHE


class _ShardedStandIn(StandInGpuIndex):
    """A flat index sharded over several GPUs: faiss refuses a second add on it, so the rows
    must all be in the CPU index before it is cloned."""

    def add(self, x):
        raise RuntimeError("IndexShards: add after the clone refused")


def test_sharded_flat_index_is_filled_on_the_cpu_then_cloned(monkeypatch):
    cloned = []

    def to_gpu(index, ngpus, device=None):
        cloned.append((index.ntotal, ngpus, device))
        return _ShardedStandIn(index, device)

    monkeypatch.setattr(faiss_search, "faiss_num_gpus", lambda: 2)
    monkeypatch.setattr(faiss_search, "faiss_to_gpu", to_gpu)
    g = _feats(65536 + 100, d=4)  # more than one 65,536-row add chunk
    index = faiss_search.build_index(g, kind="flat", metric="cosine", use_gpu=True)
    assert cloned == [(65636, 2, None)]  # every row on the CPU index, then sharded over both GPUs
    q = _feats(3, d=4, seed=1)
    _, idx = index.search(faiss_search.to_faiss_array(q, "cosine"), 1)
    assert torch.equal(torch.from_numpy(idx[:, 0]).long(), _reference(q, g, 1)[1][:, 0])


def test_setting_nprobe_on_the_gpu_copy_raises_its_errors(fake_gpu, monkeypatch):
    from fastreid_ext.deploy.features_file import FeaturesFile
    from fastreid_ext.deploy.gallery_index import GalleryIndex

    g = _feats(3200, seed=2).numpy()
    feats = FeaturesFile(g, [f"g{i}" for i in range(len(g))], "h0", meta={"metric": "cosine"})
    index = GalleryIndex.build(feats, "ivf", "cosine", nlist=16, nprobe=4)
    q = _feats(3, seed=1).numpy()
    set_on_gpu = []

    class Accepting:
        def set_index_parameter(self, index, name, value):
            set_on_gpu.append((index, name, value))

    monkeypatch.setattr(faiss, "GpuParameterSpace", Accepting, raising=False)
    index.search(q, k=5, use_gpu=True)  # the GPU copy exists from here on
    assert len(fake_gpu) == 1 and set_on_gpu == [(fake_gpu[0], "nprobe", 4)]

    class Refusing:
        def set_index_parameter(self, index, name, value):
            raise RuntimeError(f"cannot set {name}={value} on this GPU index")

    monkeypatch.setattr(faiss, "GpuParameterSpace", Refusing, raising=False)
    with pytest.raises(RuntimeError, match="cannot set nprobe=8"):
        index.search(q, k=5, use_gpu=True, nprobe=8)


def test_approximate_index_goes_to_the_gpu_the_evaluation_device_names(fake_gpu):
    from fastreid_ext.config import build_config

    cfg = build_config("", ["TEST.RETRIEVAL.APPROX", "ivf", "TEST.RETRIEVAL.NLIST", "16"])
    g = _feats(2000, seed=2)
    ApproximateSearch.from_config(cfg, g, "cosine", device="cpu")
    assert fake_gpu == []
    ApproximateSearch.from_config(cfg, g, "cosine", device="cuda:1")
    assert [m.device for m in fake_gpu] == [1]
