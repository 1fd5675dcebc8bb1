"""Auxiliary labels are checked (``docs/reliability.md``): train items whose keypoint entry is
missing, outside the frame or normalised are counted and logged; below
``INPUT.KEYPOINTS_MIN_MATCH`` training stops naming the file and an example."""
import json
import logging
import os
import shutil

import cv2
import numpy as np
import pytest

import fastreid_ext  # noqa: F401  (compat shims first)
from fastreid_ext.data import video_dataset
from fastreid_ext.data.keypoint_check import check_train_keypoints

W, H = 20, 40  # frame width, height


def _joints(x, y):
    return [[float(x), float(y), 1.0]] * 17


@pytest.fixture()
def frames(tmp_path):
    """Ten one-frame items under ``tmp_path/imgs``; the keypoint file goes in ``tmp_path``."""
    paths = []
    for i in range(10):
        p = tmp_path / "imgs" / f"{i}.jpg"
        p.parent.mkdir(exist_ok=True)
        assert cv2.imwrite(str(p), np.full((H, W, 3), 10 * i, np.uint8))
        paths.append(str(p))
    video_dataset._KEYPOINT_FILES.clear()
    yield paths
    video_dataset._KEYPOINT_FILES.clear()


def _items(tmp_path, paths, table):
    kp = tmp_path / "keypoints.json"
    kp.write_text(json.dumps(table))
    return [((p,), i, 0, {"keypoints": str(kp)}) for i, p in enumerate(paths)], str(kp)


@pytest.mark.parametrize("good, passes", [(6, True), (5, True), (4, False)])
def test_unmatched_keys_are_counted_and_refused_below_the_threshold(tmp_path, frames, caplog, good, passes):
    table = {f"imgs/{i}.jpg": _joints(5, 5) for i in range(good)}
    table.update({f"other_root/imgs/{i}.jpg": _joints(5, 5) for i in range(good, 10)})  # keys of another layout
    items, kp = _items(tmp_path, frames, table)
    if passes:
        with caplog.at_level(logging.INFO):
            report = check_train_keypoints(items, 0.5)
        assert report[kp]["ok"] == good and report[kp]["unmatched"] == 10 - good
        assert f"{good} of 10 train items" in caplog.text
    else:
        with pytest.raises(ValueError, match=f"{kp}.*only 4 of 10.*6 match no key, e.g. .*{good}.jpg"):
            check_train_keypoints(items, 0.5)


def test_coordinates_outside_the_frame_are_refused(tmp_path, frames):
    # pixels of a 4x larger original frame: most joints fall outside the 20x40 picture
    table = {f"imgs/{i}.jpg": _joints(15 * 4, 30 * 4) for i in range(10)}
    items, kp = _items(tmp_path, frames, table)
    with pytest.raises(ValueError, match=r"0 of 10.*10 have joints outside the frame, e.g. .*\(60.0, 120.0\)"):
        check_train_keypoints(items, 0.5)


def test_normalised_coordinates_are_refused(tmp_path, frames):
    table = {f"imgs/{i}.jpg": _joints(0.5, 0.4) for i in range(10)}
    items, _ = _items(tmp_path, frames, table)
    with pytest.raises(ValueError, match="normalised coordinates"):
        check_train_keypoints(items, 0.5)


def test_zero_threshold_only_counts(tmp_path, frames):
    items, kp = _items(tmp_path, frames, {})
    assert check_train_keypoints(items, 0.0)[kp]["unmatched"] == 10


def test_truncated_keypoint_file_names_it(tmp_path, frames):
    items, kp = _items(tmp_path, frames, {f"imgs/{i}.jpg": _joints(5, 5) for i in range(10)})
    text = open(kp).read()
    open(kp, "w").write(text[: len(text) // 2])
    with pytest.raises(ValueError, match=f"keypoint file '{kp}' is not valid JSON"):
        check_train_keypoints(items, 0.5)


def test_training_stops_before_the_first_iteration_on_unmatched_keypoints(tiny_datasets_root, tmp_path,
                                                                          monkeypatch):
    """The trainer builds its loader through the check: keypoints.json of another dataset layout
    (every key prefixed) stops it with the file's name (before: every item 'carried keypoints',
    all with v = 0)."""
    from conftest import REPO

    from fastreid_ext.config import build_config
    from fastreid_ext.engine import Trainer

    root = tmp_path / "data"
    shutil.copytree(tiny_datasets_root, root)
    kp = root / "synthetic" / "mars" / "keypoints.json"
    table = json.loads(kp.read_text())
    kp.write_text(json.dumps({"mars/" + k: v for k, v in table.items()}))
    monkeypatch.setenv("FASTREID_DATASETS", str(root))
    video_dataset._KEYPOINT_FILES.clear()
    cfg = build_config(os.path.join(REPO, "tests", "configs", "tiny_video.yml"),
                       ["OUTPUT_DIR", str(tmp_path / "out")])
    with pytest.raises(ValueError, match=f"keypoint file {kp}: only 0 of"):
        Trainer(cfg)


def test_entries_without_a_visible_joint_are_their_own_count(tmp_path, frames):
    table = {f"imgs/{i}.jpg": [[5.0, 5.0, 0.0]] * 17 for i in range(10)}
    items, kp = _items(tmp_path, frames, table)
    with pytest.raises(ValueError, match=r"10 have no visible joint \(v > 0\), e.g. imgs/0.jpg"):
        check_train_keypoints(items, 0.5)


@pytest.mark.parametrize("bad", [1.5, -0.1])
def test_threshold_outside_zero_one_is_refused(tmp_path, frames, bad):
    items, _ = _items(tmp_path, frames, {})
    with pytest.raises(ValueError, match="KEYPOINTS_MIN_MATCH must be a fraction in"):
        check_train_keypoints(items, bad)
