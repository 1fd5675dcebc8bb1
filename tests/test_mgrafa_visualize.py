"""Figure 3 pictures of the MG-RAFA paper: grid size, per-granularity rescaling, PNG on disk."""
import cv2
import numpy as np
import pytest
import torch

import fastreid_ext  # noqa: F401
from mgrafa.aggregation import MultiGranularityAggregation
from mgrafa.visualize import attention_grid, group_attention_maps, save_attention_grid


def test_group_map_sums_channels_rescales_and_normalises_over_frames():
    w = torch.zeros(3, 2, 2, 1)  # (C, T, H_m, W_m)
    w[:, 0, 0, 0] = 1.0  # frame 0, top cell: the strongest
    w[0, 1, 1, 0] = 0.5  # frame 1, bottom cell, one channel only
    maps = group_attention_maps(w, (8, 4))
    assert maps.shape == (2, 8, 4)
    assert maps.max() == pytest.approx(1.0) and maps.min() == pytest.approx(0.0)
    assert maps[0, 0, 0] == pytest.approx(1.0)
    # channel sums 3.0 vs 0.5: frame 1's peak is 1/6 of frame 0's (joint normalisation over frames)
    assert maps[1].max() == pytest.approx(0.5 / 3.0, rel=1e-5)
    assert maps[0, :4].mean() > maps[0, 4:].mean()


def test_attention_png_has_one_row_per_granularity(tmp_path):
    torch.manual_seed(0)
    t, h, w = 4, 64, 32
    agg = MultiGranularityAggregation(32, (4, 2), num_frames=t, attention="rafa", num_groups=2,
                                      granularity="multi", reduction=4).eval()
    with torch.no_grad():
        weights = agg(torch.randn(1, t, 32, 4, 2)).node_weights
    frames = torch.rand(t, 3, h, w) * 255
    path = tmp_path / "att.png"
    image = save_attention_grid(str(path), frames, [g[0] for g in weights])
    assert image.shape == (3 * h, t * w, 3)
    read = cv2.imread(str(path))
    assert read is not None and read.shape == (3 * h, t * w, 3)
    assert np.array_equal(read, image)
    # the first row is the frames themselves (RGB -> BGR)
    first = frames[0].permute(1, 2, 0).numpy().astype(np.uint8)[..., ::-1]
    assert np.array_equal(read[:h, :w], first)


def test_mismatched_frames_raise():
    with pytest.raises(ValueError):
        attention_grid(torch.rand(4, 3, 8, 4), [torch.rand(2, 3, 2, 1)])
    with pytest.raises(ValueError):
        attention_grid(torch.rand(4, 8, 4), [torch.rand(2, 4, 2, 1)])


def test_frame_share_and_box_ratio_are_hand_checkable():
    from fastreid_ext.modeling.aggregation.measures import frame_attention_mass
    from mgrafa.visualize import box_attention_ratio

    w = torch.zeros(2, 2, 2, 2)  # (C, T, H_m, W_m), each channel's weights sum to 1
    w[0, 0] = torch.tensor([[0.4, 0.1], [0.1, 0.1]])
    w[0, 1] = 0.075
    w[1] = 0.125
    share = frame_attention_mass(w)
    assert share.tolist() == pytest.approx([(0.7 + 0.5) / 2, (0.3 + 0.5) / 2])
    # box over the top-left node of a 4x4 frame: channel sums 0.4 + 0.125 vs 0.1 + 0.125
    assert box_attention_ratio(w, 0, (0, 0, 2, 2), (4, 4)) == pytest.approx(0.525 / 0.225)
    assert box_attention_ratio(w, 0, (0, 0, 4, 4), (4, 4)) != box_attention_ratio(w, 0, (0, 0, 4, 4), (4, 4))  # nan


def test_marked_frames_are_outlined_in_red():
    frames = torch.zeros(2, 3, 8, 4)
    image = attention_grid(frames, [torch.full((1, 2, 2, 1), 0.25)], marked=[1])
    assert image[0, 4:].tolist() == [[0, 0, 255]] * 4  # frame 1's top edge (BGR red)
    assert image[0, :4].sum() == 0


def test_occluded_node_weights_hand_worked():
    """Two frames of a 2x2 map, one channel; frame 0's occluder covers its left column (cell
    centres x = 2 of a 4-wide frame): 2 occluded nodes out of K = 8."""
    from fastreid_ext.modeling.aggregation.measures import occluded_node_weights

    w = torch.tensor([[[[0.05, 0.20], [0.05, 0.20]], [[0.10, 0.15], [0.10, 0.15]]]])  # (1, 2, 2, 2), sums to 1
    occ, vis = occluded_node_weights(w, [[0, 0, 3, 8], None], (8, 4))
    assert occ == pytest.approx([0.4, 0.4])  # 0.05 x 8
    assert sorted(vis) == pytest.approx(sorted([1.6, 1.6, 0.8, 1.2, 0.8, 1.2]))
    # uniform weights give exactly 1 everywhere; the mean over channels is taken before x K
    u = torch.full((3, 2, 2, 2), 1 / 8)
    occ, vis = occluded_node_weights(u, [None, [2, 4, 4, 8]], (8, 4))
    assert occ == pytest.approx([1.0]) and vis == pytest.approx([1.0] * 7)
    with pytest.raises(ValueError, match="boxes"):
        occluded_node_weights(u, [None], (8, 4))


def test_visualize_tool_summary_reads_the_occluders(tmp_path, capsys):
    """``tools/visualize_attention.py --marks``: every frame is repainted white, and the occluded
    ones black inside their occluder box; with a stand-in attention that weighs each node by its
    brightness, the printed node weight x K on occluded nodes must be far below 1 and above 1
    on the others, and the occluded frames' share below 1 (misread marks would give about 1)."""
    import json
    import os
    import re
    import types
    from importlib.util import module_from_spec, spec_from_file_location

    import torch.nn.functional as F

    import mgrafa
    from fastreid_ext.data.synthetic import generate

    root = tmp_path / "root"
    folder = os.path.join(str(root), "synthetic", "mars")
    generate("mars", folder, ids=6, cameras=2, seed=0, frame_size=(64, 32), min_len=4, max_len=5,
             part_occlusion=0.5)
    marks_path = os.path.join(folder, "frame_marks.json")
    with open(marks_path) as f:
        marks = json.load(f)
    frames = [os.path.relpath(os.path.join(d, n), folder) for d, _, names in os.walk(folder)
              for n in names if n.endswith(".jpg")]
    for rel in frames:  # every frame white, the occluders black
        path = os.path.join(folder, rel)
        img = cv2.imread(path)
        img[:] = 255
        if "occluder" in marks.get(rel, {}):
            x0, y0, x1, y1 = marks[rel]["occluder"]
            img[y0:y1, x0:x1] = 0
        cv2.imwrite(path, img)

    tool = os.path.join(os.path.dirname(mgrafa.__file__), "..", "tools", "visualize_attention.py")
    spec = spec_from_file_location("mgrafa_visualize_attention", tool)
    mod = module_from_spec(spec)
    spec.loader.exec_module(mod)
    sizes = [(4, 2), (2, 1), (1, 1), (1, 1)]

    def brightness_attention(images):  # (B, T, C, H, W) -> per group (B, 1, T, H_m, W_m)
        light = images.float().mean(dim=2) + 1e-3
        cells = [F.adaptive_avg_pool2d(light, s) for s in sizes]
        return [(c / c.sum(dim=(1, 2, 3), keepdim=True))[:, None] for c in cells]

    fake = types.SimpleNamespace(frame_maps=lambda inputs: inputs["images"],
                                 heads=types.SimpleNamespace(attention_maps=brightness_attention))
    mod.build_inference_model = lambda cfg, allow_untrained=False: (fake, cfg)
    config = os.path.join(os.path.dirname(mgrafa.__file__), "..", "configs", "synthetic_cpu.yml")
    mod.main(["--config-file", config, "--tracklets", "all", "--marks", marks_path, "--pictures", "1",
              "--out", str(tmp_path / "vis"), "DATASETS.ROOT", str(root), "INPUT.SIZE_TEST", "[64, 32]"])
    out = capsys.readouterr().out
    line = [s for s in out.splitlines() if s.startswith("G-1:")][0]
    occ = float(re.search(r"occluded nodes ([0-9.]+) \((\d+)\)", line).group(1))
    other = float(re.search(r"other nodes ([0-9.]+)", line).group(1))
    frames = re.search(r"occluded frames ([0-9.]+) \((\d+)\)", line)
    assert int(frames.group(2)) > 0 and float(frames.group(1)) < 1.0  # dark frames get less
    assert occ < 0.5 and other > 1.0
    assert len(os.listdir(tmp_path / "vis")) == 1


def test_log_weight_variance_separates_frames_from_positions():
    """Hand-built weights (N, C, T, H, W): uniform -> all 0; a per-frame factor only -> between
    frames > 0 and no position part; the same position pattern in every clip -> all of it in
    the shared part and nothing between frames."""
    from mgrafa.visualize import log_weight_variance

    n, c, t, h, w = 3, 2, 4, 2, 2

    def normalised(logits):
        return torch.softmax(logits.double().flatten(2), dim=-1).reshape(logits.shape)

    uniform = log_weight_variance(normalised(torch.zeros(n, c, t, h, w)))
    assert all(abs(v) < 1e-12 for v in uniform.values())
    frame_logits = torch.tensor([0.0, 1.0, 0.0, -1.0]).view(1, 1, t, 1, 1).expand(n, c, t, h, w)
    frames = log_weight_variance(normalised(frame_logits))
    assert abs(frames["frames"] - 2.0 / 3.0) < 1e-9  # sample variance of (0, 1, 0, -1)
    assert frames["positions"] < 1e-12 and frames["shared"] < 1e-12
    pos_logits = torch.tensor([[1.0, -1.0], [0.0, 0.0]]).view(1, 1, 1, h, w).expand(n, c, t, h, w)
    pos = log_weight_variance(normalised(pos_logits))
    assert pos["frames"] < 1e-12
    assert abs(pos["positions"] - 2.0 / 3.0) < 1e-9  # (1, -1, 0, 0) over 4 positions
    assert abs(pos["shared"] - 4.0 / 7.0) < 1e-9  # the same 4 values in both channels: 8 values
    single = log_weight_variance(normalised(torch.zeros(n, c, t, 1, 1)))
    assert single["positions"] != single["positions"]  # nan for 1x1 maps
