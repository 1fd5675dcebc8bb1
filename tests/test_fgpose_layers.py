"""FGPose's pieces against hand-made cases: Sobel / temporal-difference maps (OFF), the
motion-attentive masks (Eq. 1-3), COCO-17 -> the paper's 16 joints, part boxes and crops that
follow the keypoints through the clip transform's crop and flip."""
import numpy as np
import pytest
import torch
from scipy.ndimage import correlate

import fgpose  # noqa: F401  (registers the project; the core loader also does through entry points)
from fastreid_ext.data.transforms import ClipParams, ClipTrainTransform, transform_keypoints
from fgpose.attention import MotionAttention, apply_masks, refine_masks
from fgpose.joints import (
    PAPER_JOINTS,
    PARTS,
    crop_boxes,
    paper16_from_coco,
    part_boxes,
    part_images,
)
from fgpose.motion import SOBEL_X, SOBEL_Y, OFFUnit, sobel, temporal_difference


# ----------------------------------------------------------------------------- motion (OFF)
def test_sobel_of_a_ramp_is_constant_inside():
    h, w = 6, 7
    yy, xx = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij")
    ramp = torch.stack([3 * xx + 5 * yy, -2 * xx]).unsqueeze(0)  # (1, 2, h, w)
    g = sobel(ramp)
    assert g.shape == (1, 4, h, w)
    inner = (slice(None), slice(1, -1), slice(1, -1))
    # [dx of channel 0, dx of channel 1, dy of channel 0, dy of channel 1]; Sobel = 8 x slope
    for ch, value in enumerate((24.0, -16.0, 40.0, 0.0)):
        assert torch.all(g[0, ch][inner[1:]] == value)


def test_sobel_matches_scipy_with_zero_border():
    x = np.random.default_rng(0).normal(size=(2, 3, 5, 4))
    got = sobel(torch.from_numpy(x)).numpy()
    for n in range(2):
        for c in range(3):
            ref_x = correlate(x[n, c], np.array(SOBEL_X), mode="constant", cval=0.0)
            ref_y = correlate(x[n, c], np.array(SOBEL_Y), mode="constant", cval=0.0)
            np.testing.assert_allclose(got[n, c], ref_x, rtol=1e-12, atol=1e-12)
            np.testing.assert_allclose(got[n, 3 + c], ref_y, rtol=1e-12, atol=1e-12)


def test_temporal_difference_pairs_frame_t_with_t_plus_delta():
    b, T, dt = 2, 3, 2
    maps = torch.arange(T + dt, dtype=torch.float64).pow(2).view(1, -1, 1, 1, 1).expand(b, -1, 2, 2, 2)
    d = temporal_difference(maps, T, dt)
    assert d.shape == (b, T, 2, 2, 2)
    for t in range(T):
        assert torch.all(d[:, t] == (t + dt) ** 2 - t ** 2)
    with pytest.raises(ValueError, match="need 6 frames"):
        temporal_difference(maps[:, :4], 4, 2)


def test_off_unit_static_clip_has_zero_temporal_channels():
    torch.manual_seed(0)
    unit = OFFUnit(16, reduction=2).eval()
    seen = {}
    unit.fuse.register_forward_hook(lambda m, i, o: seen.update(x=i[0]))
    frame = torch.randn(2, 1, 16, 5, 4)
    out = unit(frame.expand(2, 6, 16, 5, 4), 4, 2)
    k = unit.out_channels
    assert out.shape == (2, 4, k, 5, 4)
    assert torch.all(seen["x"][:, 2 * k:] == 0)  # temporal difference of identical frames
    assert seen["x"][:, :2 * k].abs().sum() > 0  # the Sobel part is not
    moving = torch.randn(2, 6, 16, 5, 4)
    unit(moving, 4, 2)
    assert seen["x"][:, 2 * k:].abs().sum() > 0


# ----------------------------------------------------------------------------- attention (Eq. 1-3)
def test_refine_masks_eq2():
    m1, m2, m3 = torch.zeros(1, 1, 2, 2), torch.full((1, 1, 2, 2), 0.5), torch.ones(1, 1, 2, 2)
    out = refine_masks([m1, m2, m3], alpha=0.2)  # m_f = m3
    for got, want in zip(out, (0.8, 0.2 * 0.5 + 0.8, 1.0)):
        torch.testing.assert_close(got, torch.full_like(got, want))
    out = refine_masks([m3, m2, m1], alpha=0.2)  # m_f = m1 (the last one produced)
    for got, want in zip(out, (0.2, 0.1, 0.0)):
        torch.testing.assert_close(got, torch.full_like(got, want))


def test_apply_masks_eq3_upsamples_bilinearly_and_multiplies_every_channel():
    mask = torch.tensor([[[[0.0, 1.0]]]])  # (1, 1, 1, 2)
    f = torch.arange(1, 17, dtype=torch.float32).view(1, 2, 2, 4)
    out = apply_masks([mask], [f])[0]
    up = torch.tensor([0.0, 0.25, 0.75, 1.0])  # align_corners=False: source x = (i + 0.5) / 2 - 0.5
    torch.testing.assert_close(out, f * up.view(1, 1, 1, 4))
    same = torch.rand(1, 1, 2, 4)
    torch.testing.assert_close(apply_masks([same], [f])[0], f * same)


def _att_inputs(chans=(8, 8, 16, 32, 64), sizes=((8, 4), (8, 4), (4, 2), (2, 1), (1, 1)), b=3, scale=50.0):
    g = torch.Generator().manual_seed(1)
    guides = [scale * torch.randn(b, c, *s, generator=g) for c, s in zip(chans, sizes)]
    maps = [torch.randn(b, c, *s, generator=g) for c, s in zip(chans, sizes)]
    return guides, maps


@pytest.mark.parametrize("net", ["rnn", "cnn"])
@pytest.mark.parametrize("order", ["fine_to_coarse", "coarse_to_fine"])
def test_masks_in_unit_interval_and_mixed_with_the_last_mask(net, order):
    torch.manual_seed(0)
    guides, maps = _att_inputs()
    att = MotionAttention([g.shape[1] for g in guides], (4, 2), [1, 2, 3, 4, 5], alpha=0.2, order=order,
                          net=net, hidden=8).eval()
    assert att.levels == ([1, 2, 3, 4, 5] if order == "fine_to_coarse" else [5, 4, 3, 2, 1])
    with torch.no_grad():
        masks = att.masks(guides)
    last = att.levels[-1]
    for level, m in masks.items():
        assert m.shape == (3, 1, 4, 2)
        assert float(m.detach().min()) >= 0.0 and float(m.detach().max()) <= 1.0
    # Eq. (2): m'_i - m'_f = alpha (m_i - m_f), so m'_i lies between m_i and m_f; m'_f = m_f
    # -> recover the raw masks and check m'_i = 0.2 m_i + 0.8 m_f
    m_f = masks[last]
    for level, m in masks.items():
        raw = (m - 0.8 * m_f) / 0.2
        assert float(raw.min()) >= -1e-5 and float(raw.max()) <= 1 + 1e-5
    out = att(guides, maps)
    assert out.shape == (3, sum(m.shape[1] for m in maps))
    # Eq. (3) + GAP, level by level
    start = 0
    for i, f in enumerate(maps, start=1):
        want = apply_masks([masks[i]], [f])[0].mean(dim=(2, 3))
        torch.testing.assert_close(out[:, start:start + f.shape[1]], want)
        start += f.shape[1]


def test_levels_without_attention_are_pooled_unmasked():
    guides, maps = _att_inputs()
    chans = [g.shape[1] for g in guides]
    none = MotionAttention(chans, (4, 2), [], hidden=8).eval()
    torch.testing.assert_close(none(guides, maps), torch.cat([f.mean(dim=(2, 3)) for f in maps], 1))
    only3 = MotionAttention(chans, (4, 2), [3], hidden=8).eval()
    out = only3(guides, maps)
    m = only3.masks(guides)
    assert set(m) == {3}
    start = sum(chans[:2])
    torch.testing.assert_close(out[:, :start], torch.cat([f.mean(dim=(2, 3)) for f in maps[:2]], 1))
    torch.testing.assert_close(out[:, start:start + chans[2]], apply_masks([m[3]], [maps[2]])[0].mean(dim=(2, 3)))
    with pytest.raises(ValueError):
        MotionAttention(chans, (4, 2), [0, 6])


# ----------------------------------------------------------------------------- joints and parts
def _coco(points: dict) -> torch.Tensor:
    names = ["nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
             "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip", "left_knee",
             "right_knee", "left_ankle", "right_ankle"]
    kp = torch.zeros(17, 3)
    for name, (x, y) in points.items():
        kp[names.index(name)] = torch.tensor([x, y, 1.0])
    return kp


def test_coco_to_paper16_mapping():
    kp = _coco({"nose": (0.5, 0.1), "left_ear": (0.6, 0.12), "right_ear": (0.4, 0.08), "left_eye": (0.55, 0.09),
                "left_shoulder": (0.7, 0.3), "right_shoulder": (0.3, 0.2), "left_wrist": (0.8, 0.5),
                "right_ankle": (0.4, 0.95)})
    j = paper16_from_coco(kp)
    assert j.shape == (16, 3) and len(PAPER_JOINTS) == 16
    idx = {n: i for i, n in enumerate(PAPER_JOINTS)}
    torch.testing.assert_close(j[idx["head"]], torch.tensor([0.5, 0.1, 1.0]))  # the nose
    torch.testing.assert_close(j[idx["neck"]], torch.tensor([0.5, 0.25, 1.0]))  # shoulders' midpoint
    torch.testing.assert_close(j[idx["left_eye"]], kp[1])
    torch.testing.assert_close(j[idx["right_eye"]], torch.zeros(3))  # not visible
    torch.testing.assert_close(j[idx["left_wrist"]], kp[9])
    torch.testing.assert_close(j[idx["right_ankle"]], kp[16])
    kp[0, 2] = 0  # nose hidden: head = the ears' mean
    torch.testing.assert_close(paper16_from_coco(kp)[idx["head"]], torch.tensor([0.5, 0.1, 1.0]))
    kp[6, 2] = 0  # one shoulder hidden: no neck
    assert float(paper16_from_coco(kp)[idx["neck"], 2]) == 0.0
    batch = paper16_from_coco(torch.stack([kp, kp]).unsqueeze(0))
    assert batch.shape == (1, 2, 16, 3)


def test_part_boxes_cover_visible_joints_or_use_the_prior():
    kp = _coco({"left_shoulder": (0.6, 0.3), "left_elbow": (0.65, 0.4), "left_wrist": (0.62, 0.6)})
    j = paper16_from_coco(kp)[None]
    boxes = part_boxes(j, (64, 32), margin=0.05)  # width margin 0.1 (same pixels)
    names = [p.name for p in PARTS]
    cx, cy, w, h = boxes[0, names.index("left_arm")].tolist()
    assert cx == pytest.approx(0.625) and cy == pytest.approx(0.45)
    assert w == pytest.approx(max(0.05 + 0.2, PARTS[2].min_w)) and h == pytest.approx(0.3 + 0.1)
    for name in ("head", "right_arm", "legs"):  # no visible joint
        torch.testing.assert_close(boxes[0, names.index(name)], torch.tensor(PARTS[names.index(name)].prior))


def test_crop_boxes_reads_the_box():
    img = torch.zeros(1, 1, 40, 20)
    img[0, 0, 10:20, 4:8] = 1.0  # a 10 x 4 block
    box = torch.tensor([[6 / 20, 15 / 40, 4 / 20, 10 / 40]])  # exactly the block
    crop = crop_boxes(img, box, (10, 4))
    torch.testing.assert_close(crop, torch.ones(1, 1, 10, 4))
    shifted = crop_boxes(img, box + torch.tensor([[4 / 20, 0, 0, 0]]), (10, 4))  # next to the block
    assert float(shifted.abs().max()) == 0.0


@pytest.mark.parametrize("flip", [False, True])
def test_part_crops_follow_keypoints_through_crop_and_flip(flip):
    """Red dot at the left wrist, green at the right wrist (raw frame); after pad + crop (+ flip)
    the transformed 'left_wrist' keypoint must sit on red (no flip) or on green (flip: the
    labels swap with the mirror), and the left-arm crop must contain that colour."""
    H, W = 64, 32
    frame = np.zeros((H, W, 3), np.uint8)
    lw, rw = (22, 40), (9, 36)  # (x, y) pixels
    frame[lw[1] - 1:lw[1] + 2, lw[0] - 1:lw[0] + 2] = (255, 0, 0)
    frame[rw[1] - 1:rw[1] + 2, rw[0] - 1:rw[0] + 2] = (0, 255, 0)
    kp = np.zeros((1, 17, 3), np.float32)
    kp[0, 9] = (lw[0] + 0.5, lw[1] + 0.5, 1)  # pixel centres
    kp[0, 10] = (rw[0] + 0.5, rw[1] + 0.5, 1)
    kp[0, 5] = (20.5, 20.5, 1)
    kp[0, 7] = (21.5, 30.5, 1)
    t = ClipTrainTransform(size=(H, W), padding=4, flip_prob=0.0, rea_prob=0.0)
    params = ClipParams(out_size=(H, W), in_sizes=((H, W),), pad=4, crop=(6, 2), flip=flip)
    clip = t.apply([frame], params)  # (1, 3, H, W) RGB as given, 0..255
    tk = torch.from_numpy(transform_keypoints(kp, params))
    x, y = float(tk[0, 9, 0]) * W, float(tk[0, 9, 1]) * H
    pix = clip[0, :, int(y), int(x)]
    want = torch.tensor([0.0, 255.0, 0.0]) if flip else torch.tensor([255.0, 0.0, 0.0])
    torch.testing.assert_close(pix.float(), want)
    parts, boxes = part_images(clip.float(), tk, size=16, margin=0.0)
    arm = parts[2][0, :, :, :8]  # hands = left arm | right arm
    colour = arm.flatten(1).max(dim=1).values
    assert colour[1 if flip else 0] > 100 and colour[0 if flip else 1] < 50
    # the wrist lies inside the left-arm box
    cx, cy, bw, bh = boxes[0, 2].tolist()
    assert abs(x / W - cx) <= bw / 2 and abs(y / H - cy) <= bh / 2
