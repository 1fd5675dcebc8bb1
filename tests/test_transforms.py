"""Sequence-consistent clip transforms and keypoint transforms (fastreid_ext.data.transforms)."""
import numpy as np
import pytest
import torch

import fastreid_ext  # noqa: F401  (compat shims first)
from fastreid_ext.config import get_cfg
from fastreid_ext.data.transforms import (
    ClipParams,
    ClipTestTransform,
    ClipTrainTransform,
    build_clip_transforms,
    transform_keypoints,
)
from fastreid_ext.utils.keypoints import COCO_FLIP_PERM, COCO_JOINTS

H, W = 32, 16


def _noise(seed, t=1, h=H, w=W):
    return [np.random.default_rng(seed + k).integers(0, 256, (h, w, 3), dtype=np.uint8) for k in range(t)]


def _expected(frame, pad, oy, ox, flip):
    """Independent re-computation: zero padding with numpy, crop, flip; -> (C, H, W) float."""
    p = np.pad(frame, ((pad, pad), (pad, pad), (0, 0)))
    c = p[oy:oy + H, ox:ox + W]
    if flip:
        c = c[:, ::-1]
    return c.transpose(2, 0, 1).astype(np.float32)


def test_every_frame_gets_the_same_crop_and_flip():
    tf = ClipTrainTransform((H, W), padding=4, flip_prob=0.5)
    frames = _noise(0, t=5)  # 5 different frames
    rng = np.random.default_rng(0)
    seen_flip, seen_crop = set(), set()
    for _ in range(30):
        clip, p = tf(frames, rng)
        assert clip.shape == (5, 3, H, W) and clip.dtype == torch.uint8
        for t in range(5):
            np.testing.assert_array_equal(clip[t].numpy().astype(np.float32), _expected(frames[t], 4, *p.crop, p.flip))
        seen_flip.add(p.flip)
        seen_crop.add(p.crop)
        assert all(0 <= o <= 8 for o in p.crop)
    assert seen_flip == {True, False} and len(seen_crop) > 5


def test_identical_frames_stay_identical_with_erasing():
    tf = ClipTrainTransform((H, W), padding=3, flip_prob=0.5, rea_prob=1.0, rea_value=(1.0, 2.0, 3.0))
    frames = _noise(1) * 4
    rng = np.random.default_rng(3)
    for _ in range(20):
        clip, p = tf(frames, rng)
        for t in range(1, 4):
            assert torch.equal(clip[t], clip[0])
        assert p.erase is not None
        y, x, h, w = p.erase
        region = clip[:, :, y:y + h, x:x + w]
        for c, v in enumerate((1.0, 2.0, 3.0)):
            assert torch.all(region[:, c] == v)
        area = h * w / (H * W)
        assert 0.02 - 0.05 <= area <= 0.4 + 0.05  # Zhong et al. sl, sh (rounding slack)
        assert not p.erased.any()


def test_frame_erase_labels_match_changed_frames():
    tf = ClipTrainTransform((H, W), frame_erase_prob=0.5, rea_value=(0.0, 0.0, 0.0))
    frames = _noise(2) * 8
    ref = torch.from_numpy(np.ascontiguousarray(frames[0].transpose(2, 0, 1)))
    rng = np.random.default_rng(5)
    counts = []
    for _ in range(20):
        clip, p = tf(frames, rng)
        changed = np.array([not torch.equal(clip[t], ref) for t in range(8)])
        np.testing.assert_array_equal(p.erased, changed)
        counts.append(changed.sum())
    assert 0 < np.mean(counts) < 8  # some erased, some not


def test_keypoints_by_hand():
    # 20x10 input resized to 40x20 (s = 2), padded by 2, crop at (oy, ox) = (1, 3), flipped.
    p = ClipParams(out_size=(40, 20), in_sizes=((20, 10),), pad=2, crop=(1, 3), flip=True)
    kp = np.zeros((1, 17, 3))
    kp[0, 5] = (4.0, 5.0, 1.0)  # left shoulder
    kp[0, 0] = (0.5, 0.5, 2.0)  # nose
    kp[0, 1] = (0.2, 3.0, 1.0)  # left eye, pushed out of the frame by the crop
    out = transform_keypoints(kp, p)
    # x' = (2 * 4 + 2 - 3) / 20 = 0.35 -> flipped 0.65; y' = (2 * 5 + 2 - 1) / 40 = 0.275
    np.testing.assert_allclose(out[0, 6], (0.65, 0.275, 1.0), atol=1e-6)  # now the right shoulder
    # right shoulder (0, 0, 0): x' = 1 - (0 + 2 - 3) / 20 = 1.05 (outside), y' = (0 + 2 - 1) / 40
    np.testing.assert_allclose(out[0, 5], (1.05, 0.025, 0.0), atol=1e-6)
    np.testing.assert_allclose(out[0, 0], (1.0, 0.05, 2.0), atol=1e-6)  # (1 + 2 - 3) / 20 = 0 -> 1
    assert out[0, 2, 2] == 0.0  # left eye -> right eye slot, outside: v = 0
    np.testing.assert_allclose(out[0, 2, 0], 1 - (0.4 + 2 - 3) / 20, atol=1e-6)
    # without flip nothing moves slots
    p2 = ClipParams(out_size=(40, 20), in_sizes=((20, 10),), pad=2, crop=(1, 3), flip=False)
    np.testing.assert_allclose(transform_keypoints(kp, p2)[0, 5], (0.35, 0.275, 1.0), atol=1e-6)


def test_flip_perm_swaps_left_right_pairs():
    perm = np.array(COCO_FLIP_PERM)
    assert perm[0] == 0 and np.array_equal(perm[perm], np.arange(17))
    for left in range(1, 17, 2):
        assert perm[left] == left + 1
    # the mirror image of every joint name, independently of the numbers above
    mirror = [n.replace("left_", "@").replace("right_", "left_").replace("@", "right_") for n in COCO_JOINTS]
    assert [COCO_JOINTS[j] for j in perm] == mirror


def test_keypoints_follow_the_pixels():
    """A bright dot at a joint's position lands where the transformed joint says."""
    tf = ClipTrainTransform((H, W), padding=4, flip_prob=0.5)
    rng = np.random.default_rng(7)
    for trial in range(20):
        px, py = int(rng.integers(2, W - 2)), int(rng.integers(2, H - 2))
        frame = np.zeros((H, W, 3), np.uint8)
        frame[py, px] = 255
        clip, p = tf([frame, frame], rng)
        kp = np.zeros((2, 17, 3))
        kp[:, 9] = (px + 0.5, py + 0.5, 1.0)  # left wrist at the dot's pixel centre
        out = transform_keypoints(kp, p)
        j = 10 if p.flip else 9
        for t in range(2):
            x, y, v = out[t, j]
            if v == 0:  # cropped out: the dot is gone too
                assert clip[t].max() == 0
                continue
            yy, xx = np.unravel_index(clip[t, 0].numpy().argmax(), (H, W))
            assert (xx, yy) == (int(np.floor(x * W)), int(np.floor(y * H)))


def test_test_transform_resizes_only():
    frames = _noise(3, t=2, h=64, w=32)
    clip, p = ClipTestTransform((H, W))(frames)
    assert clip.shape == (2, 3, H, W) and clip.dtype == torch.float32
    assert not p.flip and p.pad == 0 and not p.erased.any()
    # area resize by 2 == mean of 2x2 blocks
    ref = frames[0].astype(np.float64).reshape(H, 2, W, 2, 3).mean(axis=(1, 3)).transpose(2, 0, 1)
    assert np.abs(clip[0].numpy() - ref).max() <= 1.0
    same, _ = ClipTestTransform((64, 32))(frames)
    np.testing.assert_array_equal(same[1].numpy(), frames[1].transpose(2, 0, 1))


def test_frame_granularity_draws_each_frame_its_own_crop_flip_and_erase():
    # the public codes apply a torchvision transform to each frame in turn
    tf = ClipTrainTransform((H, W), padding=4, flip_prob=0.5, rea_prob=0.5, rea_value=(7, 7, 7),
                            granularity="frame")
    frames = _noise(7, t=6)
    rng = np.random.default_rng(8)
    differ = 0
    for _ in range(20):
        clip, p = tf(frames, rng)
        assert len(p.frame_crops) == len(p.frame_flips) == len(p.frame_rea) == 6
        for t in range(6):
            exp = _expected(frames[t], 4, *p.frame_crops[t], p.frame_flips[t])
            if p.frame_rea[t] is not None:
                y, x, h, w = p.frame_rea[t]
                exp[:, y:y + h, x:x + w] = 7
            np.testing.assert_array_equal(clip[t].numpy(), exp)
        differ += len(set(p.frame_crops)) > 1 and len(set(p.frame_flips)) > 1
        assert not p.erased.any()  # REA is unlabelled at either granularity
    assert differ > 10


def test_rea_spare_one_leaves_the_last_frame_clean_only_when_all_were_hit():
    frames = _noise(9) * 4
    tf = ClipTrainTransform((H, W), rea_prob=1.0, granularity="frame", rea_spare_one=True)
    for seed in range(10):
        _, p = tf(frames, np.random.default_rng(seed))
        assert all(r is not None for r in p.frame_rea[:3]) and p.frame_rea[3] is None
    # T = 1 (images): the rule needs T > 1, the single frame stays erased
    _, p = tf(frames[:1], np.random.default_rng(0))
    assert p.frame_rea[0] is not None
    # without the rule every frame is erased
    tf = ClipTrainTransform((H, W), rea_prob=1.0, granularity="frame")
    _, p = tf(frames, np.random.default_rng(0))
    assert all(r is not None for r in p.frame_rea)


def test_keypoints_follow_each_frames_own_crop_and_flip():
    kp = np.random.default_rng(11).uniform(0, 10, (3, 17, 3))
    crops, flips = ((1, 2), (5, 0), (3, 7)), (False, True, True)
    p = ClipParams(out_size=(40, 20), in_sizes=((20, 10),) * 3, pad=4, frame_crops=crops, frame_flips=flips)
    out = transform_keypoints(kp, p)
    for t in range(3):
        one = ClipParams(out_size=(40, 20), in_sizes=((20, 10),), pad=4, crop=crops[t], flip=flips[t])
        np.testing.assert_allclose(out[t], transform_keypoints(kp[t:t + 1], one)[0])


def test_unknown_granularity_raises():
    with pytest.raises(ValueError, match="AUG_GRANULARITY"):
        ClipTrainTransform((H, W), granularity="tracklet")


def test_torch_chw_input_matches_numpy():
    f = _noise(4)[0]
    a, _ = ClipTestTransform((H, W))([f])
    b, _ = ClipTestTransform((H, W))([torch.from_numpy(f).permute(2, 0, 1)])
    assert torch.equal(a, b)


def test_build_clip_transforms_from_cfg():
    cfg = get_cfg()
    cfg.INPUT.SIZE_TRAIN = [H, W]
    cfg.INPUT.SIZE_TEST = [H, W]
    tf = build_clip_transforms(cfg, is_train=True)
    assert tf.padding == 0 and tf.flip_prob == 0 and tf.rea_prob == 0 and tf.frame_erase_prob == 0
    cfg.INPUT.PADDING.ENABLED = True
    cfg.INPUT.FLIP.ENABLED = True
    cfg.INPUT.REA.ENABLED = True
    cfg.INPUT.VIDEO.FRAME_ERASE.ENABLED = True
    tf = build_clip_transforms(cfg, is_train=True)
    assert (tf.padding, tf.flip_prob, tf.rea_prob, tf.frame_erase_prob) == (10, 0.5, 0.5, 0.5)
    assert (tf.granularity, tf.rea_spare_one) == ("clip", False)
    cfg.INPUT.VIDEO.AUG_GRANULARITY = "frame"
    cfg.INPUT.VIDEO.REA_SPARE_ONE = True
    tf = build_clip_transforms(cfg, is_train=True)
    assert (tf.granularity, tf.rea_spare_one) == ("frame", True)
    assert isinstance(build_clip_transforms(cfg, is_train=False), ClipTestTransform)
    cfg.INPUT.CJ.ENABLED = True
    with pytest.raises(ValueError, match="CJ"):
        build_clip_transforms(cfg, is_train=True)


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="padding mode"):
        ClipTrainTransform((H, W), pad_mode="wrap")
    with pytest.raises(ValueError, match="uint8"):
        ClipTestTransform((H, W))([np.zeros((H, W, 3), np.float32)])
    p = ClipParams(out_size=(H, W), in_sizes=((H, W),))
    with pytest.raises(ValueError, match="17"):
        transform_keypoints(np.zeros((1, 18, 3)), p)
