"""tools/make_keypoints.py (pose pseudo labels for MGRe's Eq. (3)) and the region drawing."""
import json
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch

import mgre  # noqa: F401
from mgre.visualize import REGION_COLORS, draw_boxes, save_regions_png

SCRIPT = os.path.join(os.path.dirname(__file__), "..", "tools", "make_keypoints.py")


class FixedHeatmaps(torch.nn.Module):
    """A stand-in pose model: joint k peaks at heatmap cell (row k % 8, col k % 6) with score
    0.9, except joint 16 (score 0.1, below --min-score)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        hm = torch.zeros(n, 17, 8, 6)
        for k in range(17):
            hm[:, k, k % 8, k % 6] = 0.1 if k == 16 else 0.9
        return hm


def run(*args):
    return subprocess.run([sys.executable, SCRIPT, *args], capture_output=True, text=True, timeout=120)


def test_make_keypoints_without_the_model_is_a_clear_error(tmp_path):
    res = run("--dataset-dir", str(tmp_path), "--pose-model", str(tmp_path / "missing.ts"))
    assert res.returncode == 2
    assert "pose model file" in res.stderr and "missing.ts" in res.stderr


def test_make_keypoints_writes_pixel_joints_per_relative_path(tmp_path):
    data = tmp_path / "ds"
    (data / "bounding_box_train").mkdir(parents=True)
    cv2.imwrite(str(data / "bounding_box_train" / "0001_c1s1_000001_00.jpg"), np.zeros((80, 30, 3), np.uint8))
    cv2.imwrite(str(data / "query.png"), np.zeros((40, 60, 3), np.uint8))
    model = tmp_path / "pose.ts"
    torch.jit.save(torch.jit.script(FixedHeatmaps()), str(model))
    res = run("--dataset-dir", str(data), "--pose-model", str(model), "--input-size", "32", "24",
              "--device", "cpu", "--batch-size", "1")
    assert res.returncode == 0, res.stderr
    table = json.loads((data / "keypoints.json").read_text())
    assert sorted(table) == ["bounding_box_train/0001_c1s1_000001_00.jpg", "query.png"]
    for rel, (h, w) in (("bounding_box_train/0001_c1s1_000001_00.jpg", (80, 30)), ("query.png", (40, 60))):
        joints = table[rel]
        assert len(joints) == 17
        for k, (x, y, v) in enumerate(joints):
            assert x == pytest.approx((k % 6 + 0.5) / 6 * w, abs=0.01)
            assert y == pytest.approx((k % 8 + 0.5) / 8 * h, abs=0.01)
            assert v == pytest.approx(0.0 if k == 16 else 0.9)


def test_draw_boxes_colours_the_box_outline_only():
    img = np.zeros((20, 10, 3), np.uint8)
    out = draw_boxes(img, np.array([[0.2, 0.25, 0.8, 0.75]]))
    assert img.max() == 0  # input untouched
    # x 2..7, y 5..14 (pixel edges 0.2 * 10 = 2 to 0.8 * 10 - 1 = 7)
    assert tuple(out[5, 2]) == REGION_COLORS[0] and tuple(out[14, 7]) == REGION_COLORS[0]
    assert tuple(out[10, 5]) == (0, 0, 0)  # inside
    assert tuple(out[4, 2]) == (0, 0, 0)  # outside


def test_save_regions_png(tmp_path):
    images = torch.full((2, 3, 16, 8), 128.0)
    boxes = {1: torch.tensor([[0.1, 0.1, 0.9, 0.5]]).expand(2, 1, 1, 4), 2: torch.tensor([[0.0, 0.5, 1.0, 1.0]]).expand(2, 1, 1, 4)}
    path = save_regions_png(str(tmp_path / "r.png"), images, boxes, scale=1)
    img = cv2.imread(path)
    assert img.shape == (2 * 16, 3 * 8, 3)  # rows: items; columns: input + one per stage
