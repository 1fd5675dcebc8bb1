"""projects/FGPose/tools/visualize_parts.py on a tiny generated SyntheticFGPR."""
import importlib.util
import os.path as osp

import cv2
import numpy as np
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


def test_visualize_parts_boxes_and_masks(tmp_path):
    generate("fgpr", str(tmp_path / "synthetic" / "fgpr"), ids=6, seed=0, min_len=6, max_len=7,
             frame_size=(64, 32), workers=1)
    cfg_file = osp.join(ROOT, "configs", "synthetic_cpu.yml")
    opts = ["DATASETS.ROOT", str(tmp_path), "DATALOADER.NUM_WORKERS_TEST", "0"]
    out = str(tmp_path / "parts.png")
    assert _tool().main(["--config-file", cfg_file, "--out", out, "--clips", "2", "--scale", "2", *opts]) == 0
    img = cv2.imread(out)
    assert img.shape == (2 * 64 * 2, 32 * 2, 3)  # one frame per clip, no masks without weights
    cfg = build_config(cfg_file, ["MODEL.HEADS.NUM_CLASSES", "3", *opts])
    weights = str(tmp_path / "m.pth")
    torch.save({"model": build_model(cfg).state_dict()}, weights)
    out2 = str(tmp_path / "parts_masks.png")
    _tool().main(["--config-file", cfg_file, "--out", out2, "--clips", "2", "--scale", "2", *opts,
                  "MODEL.WEIGHTS", weights, "MODEL.HEADS.NUM_CLASSES", "3"])
    img2 = cv2.imread(out2)
    assert img2.shape == (2 * 64 * 2, 6 * 32 * 2, 3)  # frame + the five level masks
    assert np.array_equal(img2[:, :64], img[:, :64])  # the same frames and boxes
