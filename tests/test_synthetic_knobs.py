"""The synthetic generator's mechanism knobs (corrupt, part_occlusion, misalign, scale_var,
pose_var): each changes what it says, only where it says, records it, and is deterministic."""
import json
import os

import numpy as np
import pytest

from fastreid_ext.data.synthetic import DONE_FILE, MARKS_FILE, generate
from fastreid_ext.data.synthetic.identity import make_identities
from fastreid_ext.data.synthetic.render import TrackletSpec, knob_frames, render_tracklet_marked

H, W = 64, 32


def _spec(pid=3, n=8, **knobs):
    ident = make_identities(list(range(1, 7)), 0, 3)[pid]
    return TrackletSpec(ident, pid % 4, n, (0, 9, pid), (), occlusion=0.0, **knobs)


def _render(**knobs):
    return render_tracklet_marked(_spec(**knobs), 0, H, W)


def test_knobs_off_leave_frames_unchanged_and_unmarked():
    clean, kp0, marks = _render()
    assert marks == [None] * 8
    same, kp1, _ = _render(corrupt=0.0, part_occlusion=0.0, misalign=0.0, scale_var=0.0, pose_var=0.0)
    assert all(np.array_equal(a, b) for a, b in zip(clean, same))
    assert np.array_equal(kp0, kp1)


def test_corrupt_replaces_a_block_of_the_marked_frames_only():
    clean, kp0, _ = _render()
    bad, kp1, marks = _render(corrupt=0.5)
    marked = [t for t, m in enumerate(marks) if m]
    assert len(marked) == 4
    for t, (a, b, m) in enumerate(zip(clean, bad, marks)):
        if m is None:
            assert np.array_equal(a, b)
            continue
        assert m["corrupted"] is True
        x0, y0, x1, y1 = m["block"]
        area = (x1 - x0) * (y1 - y0) / (H * W)
        assert 0.55 <= area <= 0.92, area
        outside = np.ones((H, W), bool)
        outside[y0:y1, x0:x1] = False
        assert np.array_equal(a[outside], b[outside])
        assert np.abs(a[~outside].astype(int) - b[~outside].astype(int)).mean() > 20
        inside = (kp0[t, :, 0] >= x0) & (kp0[t, :, 0] < x1) & (kp0[t, :, 1] >= y0) & (kp0[t, :, 1] < y1)
        assert (kp1[t, inside, 2] == 0).all()


def test_knob_frames_counts():
    r = np.random.default_rng(0)
    assert len(knob_frames(r, 0.5, 8)) == 4
    assert len(knob_frames(r, 0.01, 8)) == 1  # some frame as soon as the knob is on
    assert len(knob_frames(r, 0.99, 8)) == 7  # and a clean frame left
    assert len(knob_frames(r, 1.0, 8)) == 8
    assert len(knob_frames(r, 0.0, 8)) == 0


def test_part_occlusion_box_hides_its_keypoints_and_changes_only_near_it():
    clean, kp0, _ = _render()
    occ, kp1, marks = _render(part_occlusion=0.5)
    marked = [t for t, m in enumerate(marks) if m]
    assert len(marked) == 4
    for t in marked:
        x0, y0, x1, y1 = marks[t]["occluder"]
        side_w, side_h = (x1 - x0) / W, (y1 - y0) / H
        assert (side_w == 1.0 and 0.24 <= side_h <= 0.51) or (side_h == 1.0 and 0.24 <= side_w <= 0.51)
        inside = np.zeros((H, W), bool)
        inside[y0:y1, x0:x1] = True
        far = np.ones((H, W), bool)  # beyond the reach of the camera blur / resampling
        far[max(0, y0 - 8):y1 + 8, max(0, x0 - 8):x1 + 8] = False
        assert np.array_equal(clean[t][far], occ[t][far])
        k_in = (kp0[t, :, 0] >= x0) & (kp0[t, :, 0] < x1) & (kp0[t, :, 1] >= y0) & (kp0[t, :, 1] < y1)
        assert (kp1[t, k_in, 2] == 0).all()
        assert np.array_equal(kp1[t, ~k_in, 2], kp0[t, ~k_in, 2])
    for t in set(range(8)) - set(marked):
        assert np.array_equal(clean[t], occ[t])


def test_misalign_shift_is_recorded_exactly():
    _, kp0, _ = _render()
    _, kp1, marks = _render(misalign=0.05)
    dxs = []
    for t, m in enumerate(marks):
        dx, dy, log_s = m["shift"]
        dxs.append(dx)
        # the hip midpoint projects at cx (x = 0 in the body frame): it moves by dx exactly
        mid0 = kp0[t, 11:13, 0].mean()
        mid1 = kp1[t, 11:13, 0].mean()
        if 1 < mid0 < W - 2 and 1 < mid1 < W - 2:  # not clipped at the border
            assert mid1 - mid0 == pytest.approx(dx, abs=0.06)
    assert np.std(dxs) > 0.3  # ~ 0.05 * W = 1.6 px


def _log_heights(scale_var):
    out = []
    for pid in range(1, 7):
        for cam in range(4):
            ident = make_identities(list(range(1, 7)), 0, 3)[pid]
            spec = TrackletSpec(ident, cam, 1, (0, 9, pid, cam), (), occlusion=0.0, scale_var=scale_var)
            _, kp, _ = render_tracklet_marked(spec, 0, 128, 64)
            out.append(np.log(kp[0, 15:17, 1].mean() - kp[0, 0:5, 1].min() + 1e-3))
    return np.asarray(out)


def test_scale_var_spreads_person_sizes():
    assert _log_heights(0.5).std() > 1.5 * _log_heights(0.0).std()


def test_pose_var_turns_the_person():
    """Same tracklet, yaw offset: shoulder width in the image (|x_left - x_right|) changes."""
    widths = {}
    for pv in (0.0, 1.0):
        _, kp, _ = _render(pose_var=pv)
        widths[pv] = np.abs(kp[:, 5, 0] - kp[:, 6, 0])
    assert not np.allclose(widths[0.0], widths[1.0], atol=0.5)


def _tree_bytes(root):
    out = {}
    for d, _, files in os.walk(root):
        for f in files:
            if f == DONE_FILE:
                continue
            with open(os.path.join(d, f), "rb") as fh:
                out[os.path.relpath(os.path.join(d, f), root)] = fh.read()
    return out


def test_mars_corrupt_marks_test_frames_only_deterministically(tmp_path):
    kw = dict(ids=6, min_len=4, max_len=6, frame_size=(32, 16), cameras=2, corrupt=0.5, part_occlusion=0.25)
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    generate("mars", a, seed=3, workers=1, **kw)
    generate("mars", b, seed=3, workers=2, **kw)
    assert _tree_bytes(a) == _tree_bytes(b)
    with open(os.path.join(a, MARKS_FILE)) as f:
        marks = json.load(f)
    with open(os.path.join(a, DONE_FILE)) as f:
        args = json.load(f)["args"]
    assert args["corrupt"] == 0.5 and args["part_occlusion"] == 0.25 and "misalign" not in args
    frames = {}
    for split in ("bbox_train", "bbox_test"):
        for d, _, files in os.walk(os.path.join(a, split)):
            for f in files:
                frames.setdefault((split, f[:11]), []).append(os.path.relpath(os.path.join(d, f), a))
    assert set(marks) <= {p for v in frames.values() for p in v}
    for (split, _), paths in frames.items():
        n_corrupt = sum(bool(marks.get(p, {}).get("corrupted")) for p in paths)
        n_occ = sum("occluder" in marks.get(p, {}) for p in paths)
        assert n_corrupt == (0 if split == "bbox_train" else min(max(round(0.5 * len(paths)), 1), len(paths) - 1))
        assert n_occ == max(round(0.25 * len(paths)), 1)


def test_default_generation_writes_an_empty_marks_file(tmp_path):
    out = str(tmp_path / "d")
    generate("ilidsvid", out, ids=4, min_len=2, max_len=3, frame_size=(32, 16), workers=1)
    with open(os.path.join(out, MARKS_FILE)) as f:
        assert json.load(f) == {}
    with open(os.path.join(out, DONE_FILE)) as f:
        assert not set(json.load(f)["args"]) & {"corrupt", "part_occlusion", "misalign", "scale_var", "pose_var"}


@pytest.mark.parametrize("knob, value", [("corrupt", 1.5), ("part_occlusion", -0.1), ("misalign", 0.3),
                                         ("scale_var", 2.0), ("pose_var", 1.2)])
def test_out_of_range_knobs_are_errors(tmp_path, knob, value):
    with pytest.raises(ValueError, match=knob):
        generate("mars", str(tmp_path / "x"), ids=4, **{knob: value})


def test_occluder_clothes_paints_two_garment_colours_in_the_same_boxes():
    """``occluder_clothes``: the same frames and boxes as the grey occluders (its draws come
    from their own stream), the box now holds two differently coloured bands, the rest of the
    frame and the other frames are unchanged, and the marks say which occluders are clothes."""
    grey, _, grey_marks = _render(part_occlusion=0.5)
    cloth, _, marks = _render(part_occlusion=0.5, occluder_clothes=1.0)
    assert [m and m.get("occluder") for m in marks] == [m and m.get("occluder") for m in grey_marks]
    occluded = [t for t, m in enumerate(marks) if m]
    assert occluded and all(marks[t].get("occluder_clothes") for t in occluded)
    for t, (a, b) in enumerate(zip(grey, cloth)):
        if t not in occluded:
            assert np.array_equal(a, b)
            continue
        x0, y0, x1, y1 = marks[t]["occluder"]
        far = np.ones((H, W), bool)  # beyond the camera blur's reach of the box
        far[max(0, y0 - 8):y1 + 8, max(0, x0 - 8):x1 + 8] = False
        assert np.array_equal(a[far], b[far])
        box = b[y0 + 1:y1 - 1, x0 + 1:x1 - 1].reshape(-1, 3).astype(float)
        grey_box = a[y0 + 1:y1 - 1, x0 + 1:x1 - 1].reshape(-1, 3).astype(float)
        # grey: R > G > B in fixed ratios, one colour; clothes: the colour spread across the box
        assert box.std(axis=0).max() > grey_box.std(axis=0).max() + 5.0
    none, _, none_marks = _render(part_occlusion=0.5, occluder_clothes=0.0)
    assert all(np.array_equal(a, b) for a, b in zip(grey, none))
    assert not any(m and m.get("occluder_clothes") for m in none_marks)
