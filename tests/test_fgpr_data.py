"""The FGPR benchmark data: the generator's ``fgpr`` layout (groups, cameras, splits, the
"same clothes, different gait" appearance) and the ``FGPR`` / ``SyntheticFGPR`` loaders."""
import collections
import json
import os
import os.path as osp

import numpy as np
import pytest
from PIL import Image

import fastreid_ext  # noqa: F401
from fastreid_ext.data.datasets.fgpr import FGPR, FGPR_GROUP_CAMERAS, SyntheticFGPR
from fastreid_ext.data.synthetic import generate
from fastreid_ext.data.synthetic.identity import (
    GAIT_FIELDS,
    gait_only,
    group_template,
    make_identity,
)
from fastreid_ext.data.synthetic.layouts import fgpr_group_sizes, fgpr_splits, fgpr_test_counts

GROUP_CAMS = {"blue": (1, 2), "white": (2, 3), "green": (4, 5)}


def test_group_sizes_and_split_counts_of_the_real_protocol():
    sizes = fgpr_group_sizes(358)
    assert sizes == {"blue": 200, "white": 45, "green": 113}
    assert fgpr_test_counts(sizes) == {"blue": 60, "white": 10, "green": 30}
    pids, start = {}, 1
    for g, n in sizes.items():
        pids[g] = list(range(start, start + n))
        start += n
    splits = fgpr_splits(pids, seed=0)
    assert len(splits) == 10
    group_of = {p: g for g, ps in pids.items() for p in ps}
    tests = set()
    for s in splits:
        assert len(s["train"]) == 258 and len(s["test"]) == 100
        assert not set(s["train"]) & set(s["test"]) and set(s["train"]) | set(s["test"]) == set(group_of)
        assert collections.Counter(group_of[p] for p in s["test"]) == {"blue": 60, "white": 10, "green": 30}
        tests.add(tuple(s["test"]))
    assert len(tests) == 10  # ten different random splits
    small = fgpr_group_sizes(12)
    assert sum(small.values()) == 12 and min(small.values()) >= 2
    counts = fgpr_test_counts(small)
    assert all(1 <= counts[g] <= small[g] - 1 for g in small)
    with pytest.raises(ValueError):
        fgpr_group_sizes(5)


@pytest.fixture(scope="module")
def fgpr_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("fgpr_root")
    counts = generate("fgpr", str(root / "synthetic" / "fgpr"), ids=14, seed=2, min_len=3, max_len=4,
                      frame_size=(32, 16), workers=1)
    return str(root), counts


def test_generator_layout(fgpr_root):
    root, counts = fgpr_root
    data = osp.join(root, "synthetic", "fgpr")
    sizes = fgpr_group_sizes(14)
    assert counts["ids_per_group"] == sizes and counts["tracklets"] == 28
    seen = collections.defaultdict(set)
    for group, cams in GROUP_CAMS.items():
        assert sorted(os.listdir(osp.join(data, group))) == [f"cam{c}" for c in cams]
        for c in cams:
            ids = sorted(os.listdir(osp.join(data, group, f"cam{c}")))
            assert len(ids) == sizes[group]  # one sequence per id per camera
            for pid in ids:
                frames = os.listdir(osp.join(data, group, f"cam{c}", pid))
                assert 3 <= len(frames) <= 4
                seen[int(pid)].add(group)
    assert all(len(g) == 1 for g in seen.values()) and len(seen) == 14  # ids unique over groups
    splits = json.load(open(osp.join(data, "splits_fgpr.json")))
    assert len(splits) == 10
    groups = {int(k): v for k, v in json.load(open(osp.join(data, "groups.json"))).items()}
    want = fgpr_test_counts(sizes)
    for s in splits:
        assert collections.Counter(groups[p] for p in s["test"]) == want
    kp = json.load(open(osp.join(data, "keypoints.json")))
    assert len(kp) == counts["frames"]


def test_same_clothes_different_gait_identities():
    tmpl = group_template(0, seed=5)
    a, b = (gait_only(tmpl, make_identity(p, 0, seed=5)) for p in (3, 4))
    for f in ("skin", "hair", "hair_style", "shoe", "bag", "bag_color", "badge", "height", "shoulder", "hip",
              "leg", "head", "limb", "uniform"):
        assert getattr(a, f) == getattr(b, f) == getattr(tmpl, f)
    assert (a.pid, b.pid) == (3, 4)
    assert all(getattr(a, f) != getattr(b, f) for f in GAIT_FIELDS)
    assert a.gait_freq == make_identity(3, 0, seed=5).gait_freq


def test_generator_appearance_per_group(tmp_path):
    out = str(tmp_path / "g")
    c = generate("fgpr", out, ids=6, seed=1, min_len=2, max_len=2, frame_size=(32, 16), workers=1,
                 appearance="per_group")
    assert c["appearance"] == "per_group"
    marker = json.load(open(osp.join(out, ".synthetic_done.json")))
    assert marker["args"]["appearance"] == "per_group"
    with pytest.raises(ValueError, match="appearance"):
        generate("fgpr", str(tmp_path / "h"), ids=6, appearance="twins")
    with pytest.raises(ValueError, match="3 groups"):
        generate("fgpr", str(tmp_path / "h"), ids=6, groups=4)


def test_synthetic_fgpr_loader(fgpr_root):
    root, _ = fgpr_root
    groups = {int(k): v for k, v in json.load(open(osp.join(root, "synthetic", "fgpr", "groups.json"))).items()}
    splits = json.load(open(osp.join(root, "synthetic", "fgpr", "splits_fgpr.json")))
    for split in (0, 7):
        d = SyntheticFGPR(root=root, split=split)
        test_ids = set(splits[split]["test"])
        assert sorted(q[1] for q in d.query) == sorted(test_ids) == sorted(g[1] for g in d.gallery)
        assert len(d.train) == 2 * len(splits[split]["train"])
        for item in d.query + d.gallery:
            grp = groups[item[1]]
            assert item[3]["group"] == grp and item[3]["keypoints"].endswith("keypoints.json")
        # probe = second camera, gallery = first camera of the group (0-based camids)
        assert all(q[2] == FGPR_GROUP_CAMERAS[groups[q[1]]][1] - 1 for q in d.query)
        assert all(g[2] == FGPR_GROUP_CAMERAS[groups[g[1]]][0] - 1 for g in d.gallery)
        assert all(str(t[1]).startswith("synthetic_fgpr_") for t in d.train)
    assert SyntheticFGPR.eval_protocol == "fgpr"
    with pytest.raises(ValueError):
        SyntheticFGPR(root=root, split=10)


def _fake_fgpr(root: str, ids_by_group: dict, splits: list) -> None:
    img = Image.fromarray(np.zeros((8, 4, 3), np.uint8))
    for group, ids in ids_by_group.items():
        for c in GROUP_CAMS[group]:
            for pid in ids:
                d = osp.join(root, "fgpr", group, f"cam{c}", f"{pid:04d}")
                os.makedirs(d)
                for f in range(2):
                    img.save(osp.join(d, f"{f:05d}.jpg"))
    with open(osp.join(root, "fgpr", "splits_fgpr.json"), "w") as f:
        json.dump(splits, f)


def test_real_fgpr_loader_layout(tmp_path):
    root = str(tmp_path)
    ids = {"blue": [1, 2, 3], "white": [4, 5], "green": [6, 7]}
    _fake_fgpr(root, ids, [{"train": [1, 2, 4, 6], "test": [3, 5, 7]}])
    d = FGPR(root=root, split=0)
    assert [(q[1], q[2], q[3]["group"]) for q in d.query] == [(3, 1, "blue"), (5, 2, "white"), (7, 4, "green")]
    assert [(g[1], g[2]) for g in d.gallery] == [(3, 0), (5, 1), (7, 3)]
    assert len(d.train) == 8 and all("keypoints" not in t[3] for t in d.train)
    with pytest.raises(FileNotFoundError, match="splits_fgpr.json"):
        FGPR(root=str(tmp_path / "nowhere"))


def test_real_fgpr_loader_rejects_bad_splits(tmp_path):
    root = str(tmp_path)
    _fake_fgpr(root, {"blue": [1, 2], "white": [3], "green": [4]}, [{"train": [1, 2], "test": [2, 9]}])
    with pytest.raises(ValueError, match="both train and test"):
        FGPR(root=root, split=0)
