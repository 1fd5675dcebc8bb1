"""Shared fixtures: a tiny synthetic MARS tree written once per test session."""
import json
import os

import pytest

TINY_MARS = dict(layout="mars", ids=16, seed=0, cameras=3, frame_size=(32, 16), min_len=4, max_len=8)


@pytest.fixture(scope="session")
def tiny_datasets_root(tmp_path_factory):
    """A ``FASTREID_DATASETS`` root holding ``synthetic/mars`` (8 train + 8 test identities)."""
    from fastreid_ext.data.synthetic import generate

    root = tmp_path_factory.mktemp("datasets")
    params = dict(TINY_MARS)
    generate(params.pop("layout"), str(root / "synthetic" / "mars"), workers=1, **params)
    return str(root)


@pytest.fixture()
def datasets_env(tiny_datasets_root, monkeypatch):
    monkeypatch.setenv("FASTREID_DATASETS", tiny_datasets_root)
    return tiny_datasets_root


REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def metrics_rows(out: str) -> list:
    """The rows of ``<out>/metrics.json`` (one JSON object per line)."""
    with open(os.path.join(out, "metrics.json")) as f:
        return [json.loads(line) for line in f if line.strip()]


def check_topk_ranking(indices, ref_dist, atol: float) -> None:
    """Tie-robust check that ``indices`` (Q, k) is a correct top-k ranking of ``ref_dist``
    (Q, G, an exact reference): per row, distinct indices whose reference distances ascend
    up to ``atol``, and no left-out item closer than the last kept one by more than ``atol``.

    Rankings computed in another order (BLAS blocks, faiss, another CPU's kernels) may swap items
    whose distances differ by rounding; comparing indices bit for bit would fail on such ties
    (issue 11). Items further apart than ``atol`` must come in the reference order.
    """
    import numpy as np

    idx = np.asarray(indices)
    ref = np.asarray(ref_dist, dtype=np.float64)
    assert idx.ndim == 2 and idx.shape[0] == ref.shape[0] and idx.shape[1] <= ref.shape[1]
    for r in range(idx.shape[0]):
        row = idx[r]
        assert len(set(row.tolist())) == row.size and row.min() >= 0 and row.max() < ref.shape[1], row
        d = ref[r, row]
        assert np.all(np.diff(d) >= -atol), (r, d)
        rest = np.setdiff1d(np.arange(ref.shape[1]), row)
        if rest.size:
            assert ref[r, rest].min() >= d[-1] - atol, (r, d[-1], ref[r, rest].min())


@pytest.fixture()
def assert_topk_ranking():
    """:func:`check_topk_ranking` for tests comparing rankings across computation orders."""
    return check_topk_ranking


def shipped_meta_architectures() -> set:
    """Names of the registered meta-architectures that ship (host, plugin, installed projects),
    without toy ones that test modules register for themselves (their classes live in a
    ``test_*`` module), so the set does not depend on which tests ran first."""
    from fastreid.modeling.meta_arch import META_ARCH_REGISTRY
    from fastreid_ext.config import build_config

    build_config()  # imports every project: their meta-archs are registered
    return {name for name, cls in META_ARCH_REGISTRY._obj_map.items()
            if not cls.__module__.rpartition(".")[2].startswith("test_")}
