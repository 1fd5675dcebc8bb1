"""Every project model exports to ONNX and matches PyTorch within 1e-4 (``docs/reliability.md``):
MG-RAFA (adaptive average pooling to its node grid, sizes that do not divide the feature map),
MGRe (adaptive max pooling in its location branch) and FGPose (keypoints an input only when
its test streams read them). The comparison runs onnxruntime and the PyTorch model on inputs
of another batch size and clip length than the export's."""
import importlib.util
import os

import numpy as np
import pytest
import torch
from conftest import REPO

import fastreid_ext  # noqa: F401  (compat shims first)
from fastreid_ext.config import build_config
from fastreid_ext.engine import Trainer

pytestmark = pytest.mark.skipif(importlib.util.find_spec("onnxruntime") is None,
                                reason="onnxruntime not installed (optional: pip install onnxruntime)")

CASES = {
    "mgrafa": ("projects/MGRAFA/configs/synthetic_cpu.yml", []),  # 96 x 48: 6 x 3 maps pooled to 3 x 2
    "mgre": ("projects/MGRe/configs/synthetic_cpu.yml", ["INPUT.SIZE_TRAIN", "[64, 32]",
                                                          "INPUT.SIZE_TEST", "[64, 32]"]),
    "fgpose": ("projects/FGPose/configs/synthetic_cpu.yml", []),
    "fgpose_no_js": ("projects/FGPose/configs/synthetic_cpu.yml",
                     ["MODEL.FGPOSE.TEST_STREAMS", '["global", "motion", "ma"]']),
}


def _weights(tmp_path, cfg_file, opts):
    cfg = build_config(os.path.join(REPO, cfg_file), ["MODEL.HEADS.NUM_CLASSES", "8", "MODEL.DEVICE", "cpu",
                                                      "MODEL.BACKBONE.PRETRAIN", "False", *opts])
    torch.manual_seed(0)
    model = Trainer.build_model(cfg)
    for m in model.modules():  # non-trivial BN statistics
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    path = tmp_path / "model.pth"
    torch.save({"model": model.state_dict()}, path)
    return str(path)


@pytest.mark.parametrize("name", sorted(CASES))
def test_project_model_exports_and_matches_pytorch(name, tmp_path):
    import onnxruntime as ort

    from fastreid_ext.deploy.extractor import FeatureExtractor
    from fastreid_ext.deploy.onnx_export import export_from_files

    cfg_file, opts = CASES[name]
    opts = ["MODEL.DEVICE", "cpu", *opts]
    weights = _weights(tmp_path, cfg_file, opts)
    out = str(tmp_path / "model.onnx")
    res = export_from_files(os.path.join(REPO, cfg_file), weights, out, opts, batch=2)
    assert res.max_abs_diff is not None and res.max_abs_diff < 1e-4

    model = FeatureExtractor.from_files(os.path.join(REPO, cfg_file), weights, opts).model.eval()
    sess = ort.InferenceSession(out, providers=["CPUExecutionProvider"])
    names = [i.name for i in sess.get_inputs()]
    uses_js = name == "fgpose"
    assert names == (["images", "keypoints"] if uses_js else ["images"])
    b, t = 3, res.input_shape[1]
    if 1 in res.dynamic_axes:
        t += 1 if name.startswith("mg") else 0  # FGPose clips are SEGMENT_LEN + DELTA_T frames
    if 0 not in res.dynamic_axes:
        b = res.input_shape[0]
    g = torch.Generator().manual_seed(3)
    x = torch.rand(b, t, *res.input_shape[2:], generator=g) * 255
    feed, batch = {"images": x.numpy()}, {"images": x}
    if uses_js:
        kp = torch.cat([0.1 + 0.8 * torch.rand(b, t, 17, 2, generator=g), torch.ones(b, t, 17, 1)], dim=-1)
        feed["keypoints"], batch["keypoints"] = kp.numpy(), kp
    got = sess.run(None, feed)[0]
    with torch.no_grad():
        ref = model(batch).numpy()
    assert got.shape == ref.shape
    assert np.abs(got - ref).max() < 1e-4
