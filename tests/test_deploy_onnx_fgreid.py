"""FGReID's embedding model through ONNX (two backbones, the fine-grained module, non-local
context): onnxruntime's embeddings equal PyTorch's within 1e-4 on the export's example and on
another batch size."""
import os

import numpy as np
import torch
from conftest import REPO

import fastreid_ext  # noqa: F401  (compat shims first)
import fgreid  # noqa: F401
from fastreid_ext.config import build_config

CONFIG = os.path.join(REPO, "projects", "FGReID", "configs", "Synthetic", "fgreid.yml")
OPTS = ["MODEL.FGREID.MARS_WEIGHTS", "", "MODEL.HEADS.NUM_CLASSES", "4", "INPUT.SIZE_TEST", "[64, 32]",
        "INPUT.SIZE_TRAIN", "[64, 32]"]


def test_fgreid_onnx_matches_pytorch(tmp_path):
    import onnxruntime as ort

    from fastreid_ext.deploy.extractor import FeatureExtractor
    from fastreid_ext.deploy.onnx_export import export_from_files
    from fastreid_ext.engine import Trainer

    torch.manual_seed(0)
    model = Trainer.build_model(build_config(CONFIG, OPTS))
    weights = str(tmp_path / "model.pth")
    torch.save({"model": model.state_dict()}, weights)
    out = str(tmp_path / "fgreid.onnx")
    res = export_from_files(CONFIG, weights, out, OPTS, seq_len=2, batch=2)
    assert res.max_abs_diff is not None and res.max_abs_diff <= 1e-4, res.max_abs_diff

    ref_model = FeatureExtractor.from_files(CONFIG, weights, OPTS).model
    sess = ort.InferenceSession(out, providers=["CPUExecutionProvider"])
    shape = list(res.input_shape)
    if 0 in res.dynamic_axes:
        shape[0] = 3  # another batch size where the graph allows it
    torch.manual_seed(1)
    x = torch.rand(*shape) * 255
    got = sess.run(None, {"images": x.numpy()})[0]
    with torch.no_grad():
        ref = ref_model({"images": x}).numpy()
    assert got.shape == ref.shape
    np.testing.assert_allclose(got, ref, atol=1e-4, rtol=0)
