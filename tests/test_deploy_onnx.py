"""ONNX export of the embedding model (tools/export_onnx.py), run with onnxruntime (the [onnx]
extra, installed by `make test`): the graph's embeddings equal PyTorch's within 1e-4."""
import os

import numpy as np
import pytest
import torch
from conftest import REPO

import fastreid_ext  # noqa: F401  (compat shims first)
from fastreid_ext.config import build_config

TINY = os.path.join(REPO, "tests", "configs", "tiny_video.yml")


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    from fastreid_ext.engine import Trainer

    cfg = build_config(TINY, ["MODEL.HEADS.NUM_CLASSES", "8", "MODEL.TEMPORAL.AGG", "attention"])
    torch.manual_seed(0)
    model = Trainer.build_model(cfg)
    path = tmp_path_factory.mktemp("w") / "model.pth"
    torch.save({"model": model.state_dict()}, path)
    return str(path)


def test_exported_graph_matches_pytorch_on_other_batch_and_clip_sizes(weights, tmp_path):
    import onnxruntime as ort

    from fastreid_ext.deploy.extractor import FeatureExtractor
    from fastreid_ext.deploy.onnx_export import export_from_files

    out = str(tmp_path / "model.onnx")
    opts = ["MODEL.TEMPORAL.AGG", "attention"]
    res = export_from_files(TINY, weights, out, opts, seq_len=2, batch=2)
    assert os.path.isfile(out) and res.max_abs_diff is not None and res.max_abs_diff <= 1e-4

    # independent comparison: clip embeddings of the extractor's model, B=1 and B=4, T=1 and T=5
    model = FeatureExtractor.from_files(TINY, weights, opts).model
    sess = ort.InferenceSession(out, providers=["CPUExecutionProvider"])
    torch.manual_seed(1)
    for shape in [(1, 5, 3, 32, 16), (4, 1, 3, 32, 16)]:
        x = torch.rand(*shape) * 255
        got = sess.run(None, {"images": x.numpy()})[0]
        with torch.no_grad():
            ref = model({"images": x}).numpy()
        assert got.shape == ref.shape == (shape[0], 512)
        np.testing.assert_allclose(got, ref, atol=1e-4, rtol=0)


def test_export_refuses_a_bad_example_shape(tmp_path):
    from fastreid_ext.deploy.onnx_export import export_onnx

    with pytest.raises(ValueError, match=r"\(B, T, C, H, W\)"):
        export_onnx(torch.nn.Identity(), str(tmp_path / "x.onnx"), (2, 3, 32, 16))
