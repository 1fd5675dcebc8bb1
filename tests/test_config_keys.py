"""Every plugin config key is read somewhere: the retrieval backend reaches the search, removed
keys are rejected, the frame-chunk key reaches the meta-architecture."""
import numpy as np
import pytest
import torch

import fastreid_ext  # noqa: F401  (compat shims first)
from fastreid_ext.config import build_config
from fastreid_ext.evaluation import video_evaluator
from fastreid_ext.evaluation.retrieval import search
from fastreid_ext.evaluation.video_evaluator import VideoClipEvaluator


def test_removed_checkpoint_keep_is_an_unknown_key():
    with pytest.raises(KeyError, match="CHECKPOINT_KEEP"):
        build_config("", ["SOLVER.CHECKPOINT_KEEP", "3"])


@pytest.mark.parametrize("backend", ["torch", "faiss"])
def test_retrieval_backend_reaches_the_exact_search(backend, monkeypatch):
    rng = np.random.default_rng(0)
    n_q, n_g = 4, 20
    pids = np.concatenate([np.arange(n_q), rng.integers(0, n_q, n_g)])
    camids = np.concatenate([np.zeros(n_q, int), np.ones(n_g, int)])
    feats = torch.from_numpy(rng.normal(size=(n_q + n_g, 8))).float()
    cfg = build_config("", ["MODEL.DEVICE", "cpu", "TEST.RETRIEVAL.APPROX", "ivf", "TEST.RETRIEVAL.NLIST", "2",
                            "TEST.RETRIEVAL.NPROBE", "2", "TEST.RETRIEVAL.BACKEND", backend])
    seen = []

    def spy(*args, **kwargs):
        seen.append(kwargs["backend"])
        return search(*args, **kwargs)

    monkeypatch.setattr(video_evaluator, "search", spy)
    ev = VideoClipEvaluator(cfg, n_q, n_q + n_g, pids, camids)
    ev.process({"track_idx": torch.arange(n_q + n_g)}, feats)
    got = ev.evaluate()
    assert seen == [backend]
    assert got["ivf_recall@10"] == pytest.approx(100.0)  # nprobe == nlist: exhaustive


def test_frame_chunk_does_not_change_the_deployment_hash():
    from fastreid_ext.deploy.features_file import config_hash

    base = build_config("", [])
    chunked = build_config("", ["TEST.VIDEO.FRAME_CHUNK", "4"])
    other = build_config("", ["TEST.VIDEO.SEQ_LEN", "8"])
    assert config_hash(base) == config_hash(chunked) != config_hash(other)
