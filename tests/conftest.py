"""Shared fixtures: a tiny synthetic MARS tree written once per test session."""
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
