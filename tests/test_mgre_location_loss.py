"""MGRe location loss (the MGRe paper, Eq. (2)-(3)) against hand computations, and the keypoint
boxes of the "w/o JO" ablation (Table 7)."""
import pytest
import torch

from mgre.location import boxes_from_keypoints, location_loss, location_loss_terms


def keypoints(points):
    """(1, 17, 3) with the given {joint: (x, y)} visible and every other joint far away but
    invisible (v = 0), so that counting them would change min / max."""
    kp = torch.zeros(1, 17, 3)
    kp[0, :, 0] = 5.0
    kp[0, :, 1] = -5.0
    for j, (x, y) in points.items():
        kp[0, j] = torch.tensor([x, y, 1.0])
    return kp


def test_eq3_matches_a_hand_computation():
    # predicted box: centre (0.5, 0.4), size (0.2, 0.3) -> x 0.4..0.6, y 0.25..0.55 (Eq. 2)
    centers = torch.tensor([[[0.5, 0.4]]])
    sizes = torch.tensor([[[0.2, 0.3]]])
    # head joints 0-4; visible: 0 (0.45, 0.30), 1 (0.52, 0.20), 3 (0.61, 0.33)
    kp = keypoints({0: (0.45, 0.30), 1: (0.52, 0.20), 3: (0.61, 0.33)})
    # min X = 0.45, max X = 0.61, min Y = 0.20, max Y = 0.33, margin 0.05:
    # (0.4 - 0.45 + 0.05)^2 + (0.6 - 0.61 - 0.05)^2 + (0.25 - 0.20 + 0.05)^2 + (0.55 - 0.33 - 0.05)^2
    # = 0 + 0.0036 + 0.01 + 0.0289 = 0.0425
    terms, valid = location_loss_terms(centers, sizes, kp, [(0, 1, 2, 3, 4)])
    assert valid.tolist() == [[True]]
    assert terms.item() == pytest.approx(0.0425, abs=1e-6)
    assert location_loss(centers, sizes, kp, [(0, 1, 2, 3, 4)]).item() == pytest.approx(0.0425, abs=1e-6)
    # another margin: m = 0: 0.05^2 + 0.01^2 + 0.05^2 + 0.22^2 = 0.0535
    assert location_loss(centers, sizes, kp, [(0, 1, 2, 3, 4)], margin=0.0).item() == pytest.approx(0.0535, abs=1e-6)


def test_regions_are_summed_and_images_without_joints_are_not_counted():
    centers = torch.tensor([[[0.5, 0.4], [0.5, 0.75]], [[0.5, 0.4], [0.5, 0.75]]])
    sizes = torch.tensor([[[0.2, 0.3], [1.0, 0.5]], [[0.2, 0.3], [1.0, 0.5]]])
    kp = torch.cat([keypoints({0: (0.45, 0.30), 1: (0.52, 0.20), 3: (0.61, 0.33),
                               15: (0.3, 0.9), 16: (0.7, 0.95)}), keypoints({})])
    # region 2 (joints 15, 16): box x 0..1, y 0.5..1; joints X 0.3..0.7, Y 0.9..0.95:
    # (0 - 0.3 + 0.05)^2 + (1 - 0.7 - 0.05)^2 + (0.5 - 0.9 + 0.05)^2 + (1 - 0.95 - 0.05)^2
    # = 0.0625 + 0.0625 + 0.1225 + 0 = 0.2475
    terms, valid = location_loss_terms(centers, sizes, kp, [(0, 1, 2, 3, 4), (15, 16)])
    assert terms[0].tolist() == pytest.approx([0.0425, 0.2475], abs=1e-6)
    assert valid.tolist() == [[True, True], [False, False]]
    assert terms[1].tolist() == [0.0, 0.0]
    # sum over regions, mean over the one image with visible joints
    loss = location_loss(centers, sizes, kp, [(0, 1, 2, 3, 4), (15, 16)])
    assert loss.item() == pytest.approx(0.29, abs=1e-6)


def test_gradient_pulls_the_box_towards_the_joints():
    centers = torch.tensor([[[0.5, 0.4]]], requires_grad=True)
    sizes = torch.tensor([[[0.2, 0.3]]], requires_grad=True)
    kp = keypoints({0: (0.7, 0.4), 1: (0.8, 0.45)})
    location_loss(centers, sizes, kp, [(0, 1)]).backward()
    assert centers.grad[0, 0, 0] < 0  # move right
    assert torch.isfinite(sizes.grad).all()


def test_keypoint_boxes_minimise_eq3_and_fall_back_to_the_prior():
    kp = torch.cat([keypoints({5: (0.3, 0.2), 7: (0.35, 0.5), 11: (0.4, 0.6)}), keypoints({})])
    pc = torch.tensor([[0.5, 1 / 3]])
    ps = torch.tensor([[0.5, 0.5]])
    c, s = boxes_from_keypoints(kp, [(5, 7, 11)], pc, ps)
    assert c[0, 0].tolist() == pytest.approx([0.35, 0.4])
    assert s[0, 0].tolist() == pytest.approx([0.2, 0.5])  # (0.4 - 0.3) + 0.1, (0.6 - 0.2) + 0.1
    assert location_loss(c[:1], s[:1], kp[:1], [(5, 7, 11)]).item() == pytest.approx(0.0, abs=1e-10)
    assert c[1, 0].tolist() == pytest.approx([0.5, 1 / 3])
    assert s[1, 0].tolist() == pytest.approx([0.5, 0.5])
