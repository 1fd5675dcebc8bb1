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
        weights = agg(torch.randn(1, t, 32, 4, 2))["weights"]
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
    from mgrafa.visualize import box_attention_ratio, frame_attention_mass

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
    from mgrafa.visualize import occluded_node_weights

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
