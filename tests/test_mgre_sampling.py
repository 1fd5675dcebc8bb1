"""MGRe sampling module (the MGRe paper, Eq. (2), (4), (5)) and location module priors (Eq. (1),
Table 1): exact crops at zero offsets / prior sizes, bilinear values against a float64
re-computation of Eq. (4)-(5) and a hand-worked case, zero padding, gradients."""
import math

import pytest
import torch

import mgre
from mgre.location import LocationModule
from mgre.regions import TABLE1_REGIONS, prior_box_size, regions_of_stage, scaled_size
from mgre.sampling import region_corners, sample_region


def eq45_reference(u, cx, cy, l1, l2, n, m):
    """Eq. (4)-(5) with explicit loops, float64: pixel (row a, col b) has its centre at
    (b + 1/2, a + 1/2); output pixel (i, j) reads the source point of Eq. (4)."""
    u = u.double()
    c, h, w = u.shape
    out = torch.zeros(c, n, m, dtype=torch.float64)
    for i in range(n):
        for j in range(m):
            xs = cx * w + (j + 0.5 - m / 2) * (l1 * w) / m
            ys = cy * h + (i + 0.5 - n / 2) * (l2 * h) / n
            for a in range(h):
                for b in range(w):
                    wt = max(0.0, 1 - abs(xs - (b + 0.5))) * max(0.0, 1 - abs(ys - (a + 0.5)))
                    if wt:
                        out[:, i, j] += u[:, a, b] * wt
    return out


def one(v):
    return torch.tensor([v], dtype=torch.float32)


def test_hand_worked_bilinear_value():
    # 2x2 map [[0, 1], [2, 3]]; a 1x1 sample centred on the map reads x_s = y_s = 1, halfway
    # between the four pixel centres: (0 + 1 + 2 + 3) / 4 = 1.5
    u = torch.tensor([[[[0.0, 1.0], [2.0, 3.0]]]])
    out = sample_region(u, one([0.5, 0.5]), one([0.5, 0.5]), (1, 1))
    assert out.shape == (1, 1, 1, 1)
    assert out.item() == pytest.approx(1.5)
    # a quarter to the right of the centre of pixel (0, 0): 0.75 * 0 + 0.25 * 1 = 0.25 (row 0)
    out = sample_region(u, one([0.375, 0.25]), one([0.5, 0.5]), (1, 1))
    assert out.item() == pytest.approx(0.25)


def test_zero_offset_prior_size_is_the_exact_crop_of_a_hand_made_map():
    u = torch.arange(2 * 16 * 8, dtype=torch.float32).view(1, 2, 16, 8)
    # rows 2..7, columns 1..4: centre ((1 + 5) / 2 / 8, (2 + 8) / 2 / 16), size (4 / 8, 6 / 16)
    out = sample_region(u, one([3 / 8, 5 / 16]), one([4 / 8, 6 / 16]), (6, 4))
    assert torch.equal(out, u[:, :, 2:8, 1:5])


@pytest.mark.parametrize("region", [r for r in TABLE1_REGIONS if r.name in ("head", "whole_body", "lower_body")],
                         ids=lambda r: r.name)
def test_table1_priors_sample_the_expected_crop(region):
    """At the 256x128 reference input the stage-g map is (256 / s) x (128 / s); with the prior
    box and zero offsets the location module's untrained output samples Table 1's N x M crop."""
    stride = {1: 4, 2: 8, 3: 16}[region.stage]
    h, w = 256 // stride, 128 // stride
    torch.manual_seed(0)
    u = torch.randn(1, 3, h, w)
    priors = [(region.cx, region.cy) + prior_box_size(region)]
    loc = LocationModule(3, priors, hidden=4, parametrization="paper", init_std=0.0).eval()
    pred = loc(u)
    assert torch.allclose(pred["centers"][0, 0], torch.tensor([region.cx, region.cy]))
    assert torch.allclose(pred["sizes"][0, 0], torch.tensor(prior_box_size(region)))
    n, m = scaled_size(region, (256, 128))
    assert (n, m) == (region.height, region.width)
    out = sample_region(u, pred["centers"][:, 0], pred["sizes"][:, 0], (n, m))
    ref = eq45_reference(u[0], region.cx, region.cy, *prior_box_size(region), n, m)
    assert torch.allclose(out[0].double(), ref, atol=1e-5)
    top = region.cy * h - n / 2  # first sampled row's top edge, in map pixels
    left = region.cx * w - m / 2
    if float(top).is_integer() and float(left).is_integer():  # integral placement: a plain crop
        assert torch.allclose(out[0], u[0, :, int(top):int(top) + n, int(left):int(left) + m], atol=1e-5)


def test_fractional_regions_match_eq45_and_read_zeros_outside():
    torch.manual_seed(1)
    u = torch.randn(1, 2, 5, 4)
    cases = [(0.43, 0.61, 0.37, 0.52, 3, 2), (0.1, 0.05, 0.9, 0.7, 4, 3), (0.8, 0.9, 1.3, 0.4, 2, 5)]
    for cx, cy, l1, l2, n, m in cases:
        out = sample_region(u, one([cx, cy]), one([l1, l2]), (n, m))
        ref = eq45_reference(u[0], cx, cy, l1, l2, n, m)
        assert torch.allclose(out[0].double(), ref, atol=1e-5), (cx, cy, l1, l2)
    far = sample_region(u, one([3.0, 3.0]), one([0.2, 0.2]), (2, 2))
    assert torch.count_nonzero(far) == 0


def test_gradients_reach_the_region_parameters():
    torch.manual_seed(2)
    u = torch.randn(2, 1, 6, 4, dtype=torch.float64)
    c = torch.tensor([[0.45, 0.52], [0.31, 0.66]], dtype=torch.float64, requires_grad=True)
    s = torch.tensor([[0.43, 0.37], [0.29, 0.51]], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda c_, s_: sample_region(u, c_, s_, (3, 2)), (c, s))


def test_eq2_corners():
    x0, x1, y0, y1 = region_corners(torch.tensor([[0.5, 0.4]]), torch.tensor([[0.2, 0.3]]))
    assert [v.item() for v in (x0, x1, y0, y1)] == pytest.approx([0.4, 0.6, 0.25, 0.55])


def test_location_module_outputs_follow_eq1():
    loc = LocationModule(3, [(0.5, 0.25, 0.5, 0.25), (0.5, 0.75, 1.0, 0.5)], hidden=4,
                         parametrization="paper", init_std=0.0)
    with torch.no_grad():
        loc.fc.bias.copy_(torch.tensor([0.3, -0.2, math.log(0.4), math.log(0.6), 0.0, 0.0, 0.0, 0.0]))
    pred = loc(torch.randn(2, 3, 8, 4))
    assert pred["raw"].shape == (2, 2, 4)
    assert torch.allclose(pred["centers"][:, 0], torch.tensor([0.5 + math.tanh(0.3), 0.25 + math.tanh(-0.2)]))
    assert torch.allclose(pred["sizes"][:, 0], torch.tensor([0.4, 0.6]))
    assert torch.allclose(pred["sizes"][:, 1], torch.tensor([1.0, 1.0]))


def test_bounded_location_starts_at_the_priors_and_never_leaves_the_map():
    priors = [(r.cx, r.cy) + prior_box_size(r) for r in regions_of_stage(1)]
    loc = LocationModule(3, priors, hidden=4, init_std=0.0).eval()
    pred = loc(torch.randn(2, 3, 16, 8))
    for r, (cx, cy, l1, l2) in enumerate(priors):
        # the sizes are the priors (a full-map prior is clipped to 0.95), the centres too where
        # the prior box fits in the map
        s_ref = torch.tensor([min(l1, 0.95), min(l2, 0.95)])
        assert torch.allclose(pred["sizes"][:, r], s_ref.expand(2, 2), atol=1e-5)
        c_ref = torch.tensor([cx, cy]).clamp(s_ref / 2, 1 - s_ref / 2)
        assert torch.allclose(pred["centers"][:, r], c_ref.expand(2, 2), atol=1e-5)
    raw = torch.tensor([[-50.0, 50.0, 50.0, 50.0], [50.0, -50.0, -50.0, 3.0], [0.0, 0.0, 50.0, -50.0]])
    c, s = loc.boxes(raw)
    x0, x1, y0, y1 = region_corners(c, s)
    assert bool((x0 >= 0).all() and (y0 >= 0).all() and (x1 <= 1).all() and (y1 <= 1).all())
    assert bool((s >= loc.min_size - 1e-6).all() and (s <= 1).all())
    with pytest.raises(ValueError, match="parametrization"):
        LocationModule(3, priors, parametrization="free")


def test_border_padding_reads_the_edge_instead_of_zeros():
    u = torch.arange(1.0, 7.0).view(1, 1, 2, 3)
    out = sample_region(u, one([0.5, -2.0]), one([0.3, 0.2]), (1, 1), padding_mode="border")
    assert out.item() == pytest.approx(2.0)  # above the map: the top row, middle column
    assert sample_region(u, one([0.5, -2.0]), one([0.3, 0.2]), (1, 1)).item() == 0.0


def test_table1_regions_per_stage():
    assert [r.name for r in regions_of_stage(1)] == ["head", "left_torso", "right_torso", "legs"]
    assert [(r.height, r.width) for r in regions_of_stage(2)] == [(16, 16), (16, 16)]
    assert [(r.height, r.width) for r in regions_of_stage(3)] == [(16, 8)]
    assert scaled_size(regions_of_stage(1)[3], (128, 64)) == (12, 16)
    assert scaled_size(regions_of_stage(1)[0], (128, 64), stride_ratio=4) == (1, 1)
    with pytest.raises(ValueError):
        regions_of_stage(4)
    assert mgre.TABLE1_REGIONS is TABLE1_REGIONS
