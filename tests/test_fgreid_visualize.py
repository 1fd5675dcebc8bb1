"""Attention-map PNGs (paper Figure 7): overlay maths, grid layout, the PNG on disk and the
command-line tool."""
import os

import cv2
import numpy as np
import pytest
import torch

import fgreid
from fgreid.visualize import attention_grid, overlay_attention, save_attention_png

CONFIGS = os.path.join(os.path.dirname(fgreid.__file__), "..", "configs")


def test_overlay_is_the_jet_blend_of_the_normalised_map():
    frame = np.full((4, 2, 3), 100, dtype=np.uint8)
    att = np.array([[0.0, 1.0], [2.0, 3.0], [4.0, 5.0], [6.0, 7.0]], dtype=np.float32)
    out = overlay_attention(frame, att, alpha=1.0)  # alpha 1: pure heat map
    assert out.shape == (4, 2, 3) and out.dtype == np.uint8
    lo = cv2.cvtColor(cv2.applyColorMap(np.array([[0]], np.uint8), cv2.COLORMAP_JET), cv2.COLOR_BGR2RGB)
    hi = cv2.cvtColor(cv2.applyColorMap(np.array([[255]], np.uint8), cv2.COLORMAP_JET), cv2.COLOR_BGR2RGB)
    np.testing.assert_array_equal(out[0, 0], lo[0, 0])   # minimum -> blue end
    np.testing.assert_array_equal(out[3, 1], hi[0, 0])   # maximum -> red end
    np.testing.assert_array_equal(overlay_attention(frame, att, alpha=0.0), frame)
    with pytest.raises(ValueError):
        overlay_attention(frame.astype(np.float32), att)


def test_grid_and_png_have_the_right_size(tmp_path):
    clips = torch.rand(2, 3, 3, 32, 16) * 255
    a_maps = torch.rand(2, 3, 4, 2)
    grid = attention_grid(clips, a_maps)
    assert grid.shape == (2 * 2 * 32, 3 * 16, 3)
    # even rows are the raw frames
    np.testing.assert_array_equal(grid[:32, 16:32], clips[0, 1].to(torch.uint8).permute(1, 2, 0).numpy())
    path = save_attention_png(str(tmp_path / "sub" / "att.png"), clips, a_maps)
    img = cv2.imread(path)
    assert img is not None and img.shape == (128, 48, 3)
    with pytest.raises(ValueError):
        attention_grid(clips, a_maps[:, :2])


def test_visualize_tool_writes_a_png_of_the_model_maps(tmp_path):
    from importlib.util import module_from_spec, spec_from_file_location

    tool = os.path.join(CONFIGS, "..", "tools", "visualize_attention.py")
    spec = spec_from_file_location("visualize_attention", tool)
    mod = module_from_spec(spec)
    spec.loader.exec_module(mod)
    frames = []
    for i in range(2):
        p = str(tmp_path / f"f{i}.png")
        cv2.imwrite(p, np.random.default_rng(i).integers(0, 255, (40, 20, 3), dtype=np.uint8))
        frames.append(p)
    out = str(tmp_path / "att.png")
    mod.main(["--config-file", os.path.join(CONFIGS, "Synthetic", "fgreid.yml"), "--frames", *frames,
              "--out", out, "MODEL.FGREID.REDUCED_DIM", "16", "INPUT.SIZE_TEST", "[32, 16]"])
    img = cv2.imread(out)
    assert img.shape == (2 * 32, 2 * 16, 3)  # one clip of T = 2: frames row + overlay row
