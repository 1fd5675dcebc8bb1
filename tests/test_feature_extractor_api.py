"""FeatureExtractor in memory: paths, RGB uint8 arrays, PIL images and tensors, images and
tracklets, give the embeddings of the file pipeline (``embed(collect_inputs(...))``: DataLoader,
dataset, evaluator's dense clips); the README's example runs as written on arrays."""
import os
import re

import cv2
import numpy as np
import pytest
import torch
from conftest import REPO
from PIL import Image

import fastreid_ext  # noqa: F401
from fastreid_ext.config import build_config
from fastreid_ext.deploy import FeatureExtractor, collect_inputs
from fastreid_ext.engine import build_inference_model

TINY = os.path.join(REPO, "tests", "configs", "tiny_video.yml")


def _save_weights(config, path, *opts):
    torch.manual_seed(0)
    model, _ = build_inference_model(build_config(config, ["MODEL.HEADS.NUM_CLASSES", "4", *opts]),
                                     allow_untrained=True)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    torch.save({"model": model.state_dict()}, path)
    return path


@pytest.fixture(scope="module")
def frames():
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (40 + 4 * i, 20 + 2 * i, 3), dtype=np.uint8) for i in range(5)]


def test_in_memory_inputs_match_the_file_pipeline(tmp_path, frames, monkeypatch):
    monkeypatch.setenv("FASTREID_DATASETS", str(tmp_path / "no_dataset"))
    weights = _save_weights(TINY, str(tmp_path / "w" / "model.pth"))
    ext = FeatureExtractor.from_files(TINY, weights, ["TEST.VIDEO.MAX_CLIPS", "0"])
    root = tmp_path / "items"
    (root / "track").mkdir(parents=True)
    paths = []
    for i, f in enumerate(frames[:3]):
        paths.append(str(root / f"img{i}.png"))
        cv2.imwrite(paths[-1], cv2.cvtColor(f, cv2.COLOR_RGB2BGR))  # PNG: lossless
    for i, f in enumerate(frames):
        cv2.imwrite(str(root / "track" / f"{i:03d}.png"), cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    ref, failed = ext.embed(collect_inputs(str(root)))  # cosine config: L2-normalised rows
    assert not failed and ref.names == ["img0.png", "img1.png", "img2.png", "track"]
    ref_images, ref_track = ref.embeddings[:3], ref.embeddings[3:]

    same = dict(atol=1e-5, rtol=0)
    np.testing.assert_allclose(ext.embed_images(paths), ref_images, **same)
    np.testing.assert_allclose(ext.embed_images(frames[:3]), ref_images, **same)
    np.testing.assert_allclose(ext.embed_images([Image.fromarray(f) for f in frames[:3]]), ref_images, **same)
    chw = [torch.from_numpy(f).permute(2, 0, 1).contiguous() for f in frames[:3]]
    np.testing.assert_allclose(ext.embed_images(chw), ref_images, **same)
    np.testing.assert_allclose(ext.embed_images([c.float() for c in chw]), ref_images, **same)
    np.testing.assert_allclose(ext.embed_tracklets([str(root / "track")]), ref_track, **same)
    np.testing.assert_allclose(ext.embed_tracklets([frames]), ref_track, **same)
    both = ext.embed_tracklets([frames[:1], frames])  # a 1-frame tracklet is an image
    np.testing.assert_allclose(both, np.concatenate([ref_images[:1], ref_track]), **same)
    raw = ext.embed_images(frames[:2], normalize=False)
    np.testing.assert_allclose(raw / np.linalg.norm(raw, axis=1, keepdims=True), ref_images[:2], **same)

    with pytest.raises(ValueError, match="uint8"):
        ext.embed_images([frames[0].astype(np.float32)])
    with pytest.raises(ValueError, match="0..255"):
        ext.embed_images([chw[0].float() / 255])
    with pytest.raises(ValueError, match="list of images"):
        ext.embed_images(frames[0])


def _readme_example() -> str:
    with open(os.path.join(REPO, "README.md")) as f:
        text = f.read()
    blocks = [b for b in re.findall(r"```python\n(.*?)```", text, re.S) if "FeatureExtractor" in b]
    assert len(blocks) == 1, "README.md must hold one python block using FeatureExtractor"
    assert len(blocks[0].strip().splitlines()) <= 10
    return blocks[0]


def test_readme_example_runs_on_arrays(tmp_path, monkeypatch, caplog):
    code = _readme_example()
    config, weights = re.search(r'from_files\("([^"]+)", "([^"]+)"\)', code).groups()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FASTREID_DATASETS", str(tmp_path / "no_dataset"))
    _save_weights(config, weights)  # a trained model's file, copied away from its run
    scope = {}
    with caplog.at_level("INFO"):
        exec(compile(code, "README.md", "exec"), scope)
    assert not [r for r in caplog.records if "dataset" in r.getMessage().lower()]  # quiet
    feats, track = scope["feats"], scope["track"]
    assert feats.shape[0] == len(scope["crops"]) and track.shape == (1, feats.shape[1])
    np.testing.assert_allclose(np.linalg.norm(feats, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(track, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(scope["similarity"], feats @ track.T, atol=1e-6)
