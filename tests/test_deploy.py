"""Deployment library: features files and config hashes, input lists, the resumable extractor
(clip averaging, unreadable items, interruption), the persistent gallery index."""
import logging
import os

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import REPO
from torch import nn

import fastreid_ext  # noqa: F401  (compat shims first)
from fastreid_ext.config import build_config
from fastreid_ext.deploy import (
    ConfigHashMismatch,
    FeaturesFile,
    GalleryIndex,
    collect_inputs,
    config_hash,
    load_features,
    save_features,
)
from fastreid_ext.deploy.extractor import FeatureExtractor

TINY = os.path.join(REPO, "tests", "configs", "tiny_video.yml")


# ---------------------------------------------------------------------------- helpers
def _unit(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _clustered(n, d, seed, centers=20):
    rng = np.random.default_rng(seed)
    c = rng.standard_normal((centers, d))
    x = c[rng.integers(0, centers, n)] + 0.3 * rng.standard_normal((n, d))
    return _unit(x).astype(np.float32)


def _feats(x, prefix="g", chash="h0", start=0):
    return FeaturesFile(x, [f"{prefix}{i + start}" for i in range(len(x))], chash, meta={"metric": "cosine"})


def _write_png(path, seed, size=(40, 20)):
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    assert cv2.imwrite(str(path), img)
    return str(path)


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """Random-init tiny ResNet-18 weights saved like a checkpoint (``{"model": state_dict}``)."""
    from fastreid_ext.engine import Trainer

    cfg = build_config(TINY, ["MODEL.HEADS.NUM_CLASSES", "8"])
    torch.manual_seed(0)
    model = Trainer.build_model(cfg)
    # non-trivial BN statistics so the eval-mode embedding depends on the input
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    path = tmp_path_factory.mktemp("w") / "model.pth"
    torch.save({"model": model.state_dict()}, path)
    return str(path)


@pytest.fixture(scope="module")
def extractor(weights):
    return FeatureExtractor.from_files(TINY, weights, ["TEST.FLIP.ENABLED", "True"])


@pytest.fixture()
def image_tree(tmp_path):
    """``imgs/a.png, imgs/b.png`` (images) and ``imgs/t1/*.png`` (5 frames), ``imgs/t2/*.png`` (2)."""
    root = tmp_path / "imgs"
    _write_png(root / "a.png", 0)
    _write_png(root / "b.png", 1)
    for i in range(5):
        _write_png(root / "t1" / f"f{i:02d}.png", 10 + i)
    for i in range(2):
        _write_png(root / "t2" / f"f{i:02d}.png", 20 + i)
    return root


# ---------------------------------------------------------------------------- features files
def test_features_file_roundtrip_and_hash_check(tmp_path):
    x = _clustered(7, 5, 0)
    path = save_features(str(tmp_path / "f"), _feats(x, chash="abc"))
    assert path.endswith(".npz")
    back = load_features(path, expected_hash="abc")
    np.testing.assert_array_equal(back.embeddings, x)
    assert back.names == [f"g{i}" for i in range(7)] and back.config_hash == "abc"
    with pytest.raises(ConfigHashMismatch) as e:
        load_features(path, expected_hash="def")
    assert "abc" in str(e.value) and "def" in str(e.value)


def test_features_file_rejects_bad_content(tmp_path):
    with pytest.raises(ValueError, match="duplicate"):
        FeaturesFile(np.zeros((2, 3)), ["a", "a"], "h")
    with pytest.raises(ValueError, match="names"):
        FeaturesFile(np.zeros((2, 3)), ["a"], "h")
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="bad.npz"):
        load_features(str(bad))


def test_config_hash_tracks_what_changes_embeddings(tmp_path):
    w1, w2 = tmp_path / "w1.pth", tmp_path / "w2.pth"
    w1.write_bytes(b"weights one")
    w2.write_bytes(b"weights two")
    base = build_config(TINY)
    h = config_hash(base, str(w1))
    assert h == config_hash(build_config(TINY), str(w1))  # stable
    # bookkeeping / training keys do not change the embedding
    assert h == config_hash(build_config(TINY, ["MODEL.DEVICE", "cuda", "MODEL.HEADS.NUM_CLASSES", "3",
                                                "SOLVER.BASE_LR", "0.5", "MODEL.WEIGHTS", "x"]), str(w1))
    assert h != config_hash(base, str(w2))  # weights content
    assert h != config_hash(build_config(TINY, ["INPUT.SIZE_TEST", "[64, 32]"]), str(w1))
    assert h != config_hash(build_config(TINY, ["TEST.VIDEO.SEQ_LEN", "4"]), str(w1))
    assert h != config_hash(build_config(TINY, ["MODEL.HEADS.NECK_FEAT", "before"]), str(w1))


# ---------------------------------------------------------------------------- inputs
def test_collect_inputs_folder_and_list(image_tree, tmp_path):
    items = collect_inputs(str(image_tree))
    assert [it.name for it in items] == ["a.png", "b.png", "t1", "t2"]
    t1 = items[2]
    assert [os.path.basename(p) for p in t1.frames] == [f"f{i:02d}.png" for i in range(5)]
    one = collect_inputs(str(image_tree / "t1"), as_tracklet=True)
    assert len(one) == 1 and one[0].frames == t1.frames

    lst = tmp_path / "items.txt"
    lst.write_text("# comment\n\nimgs/a.png\nmine\timgs/t2/f01.png,imgs/t2/f00.png\nimgs/t1\n")
    got = collect_inputs(str(lst))
    assert [it.name for it in got] == ["imgs/a.png", "mine", "imgs/t1"]
    assert got[1].frames == (str(image_tree / "t2" / "f01.png"), str(image_tree / "t2" / "f00.png"))
    assert got[2].frames == t1.frames

    lst.write_text("x\timgs/a.png\nx\timgs/b.png\n")
    with pytest.raises(ValueError, match="duplicate item name 'x'"):
        collect_inputs(str(lst))
    lst.write_text("imgs/nowhere\n")
    with pytest.raises(FileNotFoundError, match="nowhere"):
        collect_inputs(str(lst))


# ---------------------------------------------------------------------------- extractor
def test_extractor_averages_dense_clips_like_the_evaluator(extractor, image_tree):
    """Reference: dense clips of T=2 by hand (5 frames -> [0,1], [2,3], [4,4]; TEST.VIDEO.MAX_CLIPS=2
    keeps the first and the last), each through the model with the flip average, mean in float64,
    then L2 normalisation (cosine)."""
    from fastreid_ext.data.frame_io import read_frame
    from fastreid_ext.data.transforms import build_clip_transforms

    items = collect_inputs(str(image_tree))
    feats, failed = extractor.embed(items)
    assert not failed and feats.names == ["a.png", "b.png", "t1", "t2"]
    cfg = extractor.cfg
    tf = build_clip_transforms(cfg, is_train=False)
    frames = [read_frame(p) for p in items[2].frames]
    assert cfg.TEST.VIDEO.SEQ_LEN == 2 and cfg.TEST.VIDEO.MAX_CLIPS == 2
    clips = [[0, 1], [4, 4]]
    model = extractor.model
    with torch.no_grad():
        embs = []
        for c in clips:
            x, _ = tf([frames[i] for i in c])
            x = x[None]  # (1, T, C, H, W)
            e = (model({"images": x}) + model({"images": x.flip(dims=[-1])})) / 2  # TEST.FLIP on
            embs.append(e[0].double())
        ref = F.normalize(torch.stack(embs).mean(0).float(), dim=0).numpy()
    np.testing.assert_allclose(feats.embeddings[2], ref, atol=1e-5)
    # an image is a 1-frame tracklet: its clip repeats the frame T times
    with torch.no_grad():
        x, _ = tf([read_frame(items[0].frames[0])] * 2)
        e = (model({"images": x[None]}) + model({"images": x[None].flip(dims=[-1])})) / 2
    np.testing.assert_allclose(feats.embeddings[0], F.normalize(e[0], dim=0).numpy(), atol=1e-5)


def test_unreadable_image_is_reported_by_name_and_skipped(extractor, image_tree, tmp_path, caplog):
    (image_tree / "broken.png").write_bytes(b"\x89PNG garbage")
    with caplog.at_level(logging.WARNING):
        res = extractor.extract(collect_inputs(str(image_tree)), str(tmp_path / "out.npz"), progress=False)
    assert [n for n, _ in res.failed] == ["broken.png"]
    assert res.features.names == ["a.png", "b.png", "t1", "t2"]
    assert res.features.meta["failed"] == ["broken.png"]
    assert any("broken.png" in r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING)


class _Interrupting(nn.Module):
    """Counts the clips it embeds; raises KeyboardInterrupt on call number ``stop_at``."""

    def __init__(self, model, stop_at=None):
        super().__init__()
        self.model, self.stop_at, self.calls, self.clips = model, stop_at, 0, 0

    def forward(self, batch):
        self.calls += 1
        if self.stop_at is not None and self.calls == self.stop_at:
            raise KeyboardInterrupt
        self.clips += batch["images"].shape[0]
        return self.model(batch)


def test_interrupted_extraction_resumes_without_recomputing(extractor, image_tree, tmp_path):
    items = collect_inputs(str(image_tree))  # clips per item (T=2, at most 2): 1, 1, 2, 1
    full = extractor.extract(items, str(tmp_path / "full.npz"), progress=False, batch_size=1).features

    out = str(tmp_path / "part.npz")
    # batch_size=1, flip on: 2 forward calls per clip; call 5 = first call of clip 3 (t1's first)
    extractor._runner = _Interrupting(extractor.model, stop_at=5)
    try:
        with pytest.raises(KeyboardInterrupt):
            extractor.extract(items, out, progress=False, batch_size=1, flush_every=1)
        part = load_features(out)
        assert part.names == ["a.png", "b.png"]  # written before the interruption

        counter = _Interrupting(extractor.model)
        extractor._runner = counter
        res = extractor.extract(items, out, progress=False, batch_size=1)
    finally:
        extractor._runner = extractor.model
    assert res.num_resumed == 2 and res.num_new == 2
    assert counter.clips == 2 * (2 + 1)  # only t1 and t2's clips (x2 for the flip)
    assert res.features.names == full.names
    np.testing.assert_allclose(res.features.embeddings, full.embeddings, atol=1e-6)
    # a further run has nothing to do
    counter = _Interrupting(extractor.model)
    extractor._runner = counter
    try:
        again = extractor.extract(items, out, progress=False)
    finally:
        extractor._runner = extractor.model
    assert counter.clips == 0 and again.num_new == 0 and again.num_resumed == 4


def test_resume_refuses_features_of_another_model(extractor, weights, image_tree, tmp_path):
    out = str(tmp_path / "f.npz")
    extractor.extract(collect_inputs(str(image_tree / "t2"), as_tracklet=True), out, progress=False)
    other = FeatureExtractor.from_files(TINY, weights, ["TEST.FLIP.ENABLED", "True", "INPUT.SIZE_TEST", "[48, 24]"])
    assert other.config_hash != extractor.config_hash
    with pytest.raises(ConfigHashMismatch) as e:
        other.extract(collect_inputs(str(image_tree)), out, progress=False)
    assert extractor.config_hash in str(e.value) and other.config_hash in str(e.value)


def test_missing_weights_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        FeatureExtractor.from_files(TINY, str(tmp_path / "nope.pth"))


# ---------------------------------------------------------------------------- gallery index
def _reference_dist(q, g, metric="cosine"):
    """float64 (Q, G) distances from the definitions."""
    q, g = q.astype(np.float64), g.astype(np.float64)
    if metric == "cosine":
        return 1.0 - _unit(q) @ _unit(g).T
    return np.sqrt(((q[:, None] - g[None]) ** 2).sum(-1))


def _reference_topk(q, g, k, metric="cosine"):
    d = _reference_dist(q, g, metric)
    order = np.argsort(d, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(d, order, 1), order


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_flat_index_matches_a_float64_reference(metric, assert_topk_ranking):
    g = _clustered(300, 16, 0) * np.linspace(0.5, 2.0, 300, dtype=np.float32)[:, None]
    q = _clustered(20, 16, 1)
    index = GalleryIndex.build(_feats(g), "flat", metric)
    res = index.search(q, 5)
    ref_d, ref_i = _reference_topk(q, g, 5, metric)
    assert_topk_ranking(res.indices, _reference_dist(q, g, metric), atol=1e-5)  # ties: rounding swaps
    np.testing.assert_allclose(res.distances, ref_d, atol=1e-5)
    assert res[0][0] == (f"g{res.indices[0, 0]}", pytest.approx(ref_d[0, 0], abs=1e-5))


@pytest.mark.parametrize("kind,params", [("flat", {}), ("ivf", {"nlist": 8, "nprobe": 8}),
                                         ("hnsw", {"hnsw_m": 16, "ef_search": 400, "ef_construction": 200})])
def test_saved_reloaded_extended_index_equals_one_built_at_once(kind, params, tmp_path, assert_topk_ranking):
    g = _clustered(400, 16, 0)
    q = _clustered(25, 16, 1)
    a, b = _feats(g[:250]), _feats(g[250:], start=250)
    once = GalleryIndex.build(_feats(g), kind, **params)

    GalleryIndex.build(a, kind, **params).save(str(tmp_path / "idx"))
    grown = GalleryIndex.load(str(tmp_path / "idx"), expected_hash="h0")
    assert grown.add(b) == 150
    grown.save(str(tmp_path / "idx"))
    grown = GalleryIndex.load(str(tmp_path / "idx"))
    assert len(grown) == 400 and grown.names == once.names

    r_once, r_grown = once.search(q, 10), grown.search(q, 10)
    np.testing.assert_allclose(r_grown.distances, r_once.distances, atol=1e-6)
    # with every IVF cell probed / a wide HNSW beam, both are the exact answer (an index built in
    # two parts may only swap items whose distances differ by rounding)
    ref_d, _ = _reference_topk(q, g, 10)
    ref = _reference_dist(q, g)
    assert_topk_ranking(r_once.indices, ref, atol=1e-5)
    assert_topk_ranking(r_grown.indices, ref, atol=1e-5)
    np.testing.assert_allclose(r_grown.distances, ref_d, atol=1e-5)  # same distance scale for every kind


def test_index_add_skips_known_names_and_refuses_other_models():
    g = _clustered(50, 8, 0)
    index = GalleryIndex.build(_feats(g[:30]), "flat")
    assert index.add(_feats(g[20:], start=20)) == 20  # g20..g29 already there
    assert len(index) == 50 and len(set(index.names)) == 50
    with pytest.raises(ConfigHashMismatch, match="h0"):
        index.add(_feats(g[:3], prefix="x", chash="other"))
    with pytest.raises(ValueError, match="dimension 9.*8-dimensional"):
        index.add(_feats(np.ones((2, 9), np.float32), prefix="y"))


def test_query_of_the_wrong_dimension_is_a_clear_error():
    index = GalleryIndex.build(_feats(_clustered(30, 8, 0)), "flat")
    with pytest.raises(ValueError, match="query features have dimension 12, but the index holds 8-dimensional"):
        index.search(np.ones((2, 12), np.float32))
    with pytest.raises(ValueError, match="non-finite"):
        index.search(np.full((1, 8), np.nan, np.float32))


def test_ivf_needs_enough_items_and_unknown_params_raise():
    with pytest.raises(ValueError, match="nlist=64"):
        GalleryIndex.build(_feats(_clustered(30, 8, 0)), "ivf", nlist=64)
    with pytest.raises(TypeError, match="nprobes"):
        GalleryIndex.build(_feats(_clustered(30, 8, 0)), "flat", nprobes=3)
    with pytest.raises(ValueError, match="(?i)unknown index kind"):
        GalleryIndex.build(_feats(_clustered(30, 8, 0)), "lsh")


# ---------------------------------------------------------------------------- command lines
def test_search_tool_reports_bad_queries_clearly(tmp_path):
    import subprocess
    import sys

    from fastreid_ext.deploy.cli import build_index_main, search_main

    save_features(str(tmp_path / "g.npz"), _feats(_clustered(40, 8, 0)))
    build_index_main(["--features", str(tmp_path / "g.npz"), "--index", str(tmp_path / "idx")])
    save_features(str(tmp_path / "other.npz"), _feats(_clustered(3, 8, 1), prefix="q", chash="h1"))
    with pytest.raises(ConfigHashMismatch, match="h1.*h0"):
        search_main(["--index", str(tmp_path / "idx"), "--query-features", str(tmp_path / "other.npz")])
    with pytest.raises(FileExistsError, match="--add"):
        build_index_main(["--features", str(tmp_path / "g.npz"), "--index", str(tmp_path / "idx")])

    save_features(str(tmp_path / "q12.npz"), _feats(_clustered(3, 12, 1), prefix="q"))
    proc = subprocess.run([sys.executable, os.path.join(REPO, "tools", "search.py"), "--index", str(tmp_path / "idx"),
                           "--query-features", str(tmp_path / "q12.npz")], capture_output=True, text=True, cwd="/")
    assert proc.returncode == 2
    assert "error: query features have dimension 12, but the index holds 8-dimensional" in proc.stderr
    assert "Traceback" not in proc.stderr
