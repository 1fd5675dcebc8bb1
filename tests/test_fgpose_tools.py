"""projects/FGPose/tools/visualize_parts.py and keypoint_gait_oracle.py."""
import importlib.util
import os.path as osp

import cv2
import numpy as np
import pytest
import torch

import fgpose  # noqa: F401
from fastreid.modeling import build_model
from fastreid_ext.config import build_config
from fastreid_ext.data.synthetic import generate

ROOT = osp.join(osp.dirname(__file__), "..", "projects", "FGPose")


def _tool():
    spec = importlib.util.spec_from_file_location("visualize_parts", osp.join(ROOT, "tools", "visualize_parts.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_visualize_parts_boxes_and_masks(tmp_path, caplog):
    generate("fgpr", str(tmp_path / "synthetic" / "fgpr"), ids=6, seed=0, min_len=6, max_len=7,
             frame_size=(64, 32), workers=1)
    cfg_file = osp.join(ROOT, "configs", "synthetic_cpu.yml")
    opts = ["DATASETS.ROOT", str(tmp_path), "DATALOADER.NUM_WORKERS_TEST", "0"]
    out = str(tmp_path / "parts.png")
    assert _tool().main(["--config-file", cfg_file, "--out", out, "--clips", "2", "--scale", "2", *opts]) == 0
    img = cv2.imread(out)
    assert img.shape == (2 * 64 * 2, 32 * 2, 3)  # one frame per clip, no masks without weights
    # 5 classes (the set has 3 training identities): the tool reads the size from the checkpoint
    cfg = build_config(cfg_file, ["MODEL.HEADS.NUM_CLASSES", "5", *opts])
    weights = str(tmp_path / "m.pth")
    torch.save({"model": build_model(cfg).state_dict()}, weights)
    out2 = str(tmp_path / "parts_masks.png")
    with caplog.at_level("INFO", logger="fastreid_ext"):
        _tool().main(["--config-file", cfg_file, "--out", out2, "--clips", "2", "--scale", "2",
                      "--weights", weights, *opts])
    assert "MODEL.HEADS.NUM_CLASSES = 5 (from the checkpoint's classifier)" in caplog.text
    assert "not loading" not in caplog.text  # the classifier loaded too
    img2 = cv2.imread(out2)
    assert img2.shape == (2 * 64 * 2, 6 * 32 * 2, 3)  # frame + the five level masks
    assert np.array_equal(img2[:, :64], img[:, :64])  # the same frames and boxes
    assert _oracle().main(["--config-file", cfg_file, *opts]) == 0  # runs on the same data


def _oracle():
    spec = importlib.util.spec_from_file_location("keypoint_gait_oracle",
                                                  osp.join(ROOT, "tools", "keypoint_gait_oracle.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_gait_descriptor_by_hand():
    oracle = _oracle()
    t = np.arange(64)
    kp = np.zeros((64, 17, 3))
    kp[:, 0, 1] = 0.0  # nose at y = 0, ankles at y = 100: height 100
    kp[:, 15, 1] = kp[:, 16, 1] = 100.0
    kp[:, 15, 0] = 50 + 10 * np.sin(2 * np.pi * t / 16)  # ankles 20 sin(...) apart, period 16 frames
    kp[:, 16, 0] = 50 - 10 * np.sin(2 * np.pi * t / 16)
    d = oracle.gait_descriptor(kp)
    ank = np.abs(20 * np.sin(2 * np.pi * t / 16)) / 100
    assert d[0] == pytest.approx(ank.std()) and d[4] == pytest.approx(ank.max())
    assert d[3] == pytest.approx(2 / 16)  # |sin| has twice the stride frequency
    assert d[1] == 0.0 and d[2] == 0.0 and d[5] == 0.0  # wrists and knees do not move
