"""Tests of the procedural synthetic dataset generator (``fastreid_ext.data.synthetic``).

Every layout is generated once (tiny: few ids, short tracklets, 64x32 frames) and read back with
independent tools: ``os.walk``, regular expressions for the official names, ``scipy.io.loadmat``,
``json`` and the host's own ``Market1501`` class.
"""
from __future__ import annotations

import filecmp
import json
import os
import os.path as osp
import re

import numpy as np
import pytest
from scipy.io import loadmat

import fastreid_ext  # noqa: F401  (compat shims before fastreid.data)
from fastreid.data.datasets.market1501 import Market1501
from fastreid_ext.data.synthetic import COCO_JOINTS, DONE_FILE, LAYOUTS, PARTIAL_FILE, generate
from fastreid_ext.data.synthetic.__main__ import main as cli_main
from fastreid_ext.data.synthetic.identity import UNIFORM_NAMES, make_identities

H, W = 64, 32
SMALL = dict(frame_size=(H, W), workers=1)
MARS_NAME = re.compile(r"^(\d{4}|00-1)C(\d)T(\d{4})F(\d{3})\.jpg$")


def files_under(root: str, exts=(".jpg", ".png")) -> list:
    out = []
    for d, _, names in os.walk(root):
        out += [osp.relpath(osp.join(d, n), root) for n in names if n.endswith(exts)]
    return sorted(out)


@pytest.fixture(scope="module")
def trees(tmp_path_factory):
    base = tmp_path_factory.mktemp("synthetic")
    args = {
        "mars": dict(ids=12, min_len=3, max_len=6),
        "ilidsvid": dict(ids=10, min_len=4, max_len=7),
        "prid2011": dict(ids=20, min_len=28, max_len=30),
        "market1501": dict(ids=12),
        "cuhk01": dict(ids=8),
        "fgpr": dict(ids=8, min_len=3, max_len=4),
        "vehicleid": dict(ids=8),
    }
    out, counts = {}, {}
    for layout, kw in args.items():
        d = base / layout / ("Market-1501-v15.09.15" if layout == "market1501" else "")
        out[layout] = str(d)
        counts[layout] = generate(layout, str(d), seed=3, **SMALL, **kw)
    return out, counts


def test_unknown_layout_and_option_raise(tmp_path):
    with pytest.raises(ValueError) as e:
        generate("duke", str(tmp_path / "x"), ids=4)
    assert all(name in str(e.value) for name in LAYOUTS)
    with pytest.raises(TypeError):
        generate("mars", str(tmp_path / "x"), ids=4, colour="red")
    with pytest.raises(ValueError):
        generate("ilidsvid", str(tmp_path / "x"), ids=4, cameras=3)
    assert not osp.exists(tmp_path / "x")


def test_deterministic_across_runs_and_workers(tmp_path):
    kw = dict(ids=6, min_len=2, max_len=4, frame_size=(H, W))
    a, b, c = (str(tmp_path / n) for n in "abc")
    generate("mars", a, seed=7, workers=1, **kw)
    generate("mars", b, seed=7, workers=2, **kw)
    generate("mars", c, seed=8, workers=1, **kw)
    fa, fb = files_under(a, exts=("",)), files_under(b, exts=("",))
    fa = [f for f in fa if f != DONE_FILE]
    assert fa == [f for f in fb if f != DONE_FILE] and len(fa) > 20
    _, mismatch, errors = filecmp.cmpfiles(a, b, fa, shallow=False)
    assert mismatch == [] and errors == []
    common = sorted(set(fa) & set(files_under(c, exts=("",))))
    _, mismatch_c, _ = filecmp.cmpfiles(a, c, [f for f in common if f.endswith(".jpg")], shallow=False)
    assert len(mismatch_c) > 0


def test_mars_layout(trees):
    root, counts = trees[0]["mars"], trees[1]["mars"]
    info = osp.join(root, "info")
    pids = {}
    for split in ("train", "test"):
        names = open(osp.join(info, f"{split}_name.txt")).read().split()
        assert names == sorted(names)
        mat = loadmat(osp.join(info, f"tracks_{split}_info.mat"))[f"track_{split}_info"].astype(np.int64)
        assert mat.ndim == 2 and mat.shape[1] == 4
        assert mat[0, 0] == 1 and mat[-1, 1] == len(names) and np.all(mat[1:, 0] == mat[:-1, 1] + 1)
        on_disk = files_under(osp.join(root, f"bbox_{split}"))
        assert sorted(osp.basename(f) for f in on_disk) == names
        for f in on_disk:
            assert osp.dirname(f) == osp.basename(f)[:4]
        for start, end, pid, cam in mat:
            frames = names[start - 1:end]
            parsed = {MARS_NAME.match(n).group(1, 2, 3) for n in frames}
            assert len(parsed) == 1  # one tracklet per row
            folder, c, _ = parsed.pop()
            assert int(c) == cam and 1 <= cam <= counts["cameras"]
            assert folder == ("00-1" if pid == -1 else f"{pid:04d}")
            assert [int(n[-7:-4]) for n in frames] == list(range(1, len(frames) + 1))
        pids[split] = mat
    train_ids = set(pids["train"][:, 2]) - {0, -1}
    test = pids["test"]
    assert len(train_ids) == counts["train_ids"] and {0, -1}.isdisjoint(pids["train"][:, 2])
    assert train_ids.isdisjoint(set(test[:, 2]))
    assert (test[:, 2] == 0).sum() > 0 and (test[:, 2] == -1).sum() > 0
    q = loadmat(osp.join(info, "query_IDX.mat"))["query_IDX"].reshape(-1).astype(np.int64)
    assert len(q) == counts["query"] and q.min() >= 1 and q.max() <= len(test)
    qrows = test[q - 1]
    assert np.all(qrows[:, 2] > 0)
    assert set(qrows[:, 2]) == set(test[:, 2]) - {0, -1}  # every test id has a query
    gallery = np.delete(test, q - 1, axis=0)
    cross = [np.any((gallery[:, 2] == p) & (gallery[:, 3] != c)) for _, _, p, c in qrows]
    assert np.mean(cross) > 0.5


def test_ilidsvid_layout(trees):
    root, counts = trees[0]["ilidsvid"], trees[1]["ilidsvid"]
    seq = osp.join(root, "i-LIDS-VID", "sequences")
    assert sorted(os.listdir(seq)) == ["cam1", "cam2"]
    persons = sorted(os.listdir(osp.join(seq, "cam1")))
    assert persons == sorted(os.listdir(osp.join(seq, "cam2"))) and len(persons) == 10
    for cam in ("cam1", "cam2"):
        for p in persons:
            assert re.fullmatch(r"person\d{3}", p)
            frames = sorted(os.listdir(osp.join(seq, cam, p)))
            assert 4 <= len(frames) <= 7
            assert all(re.fullmatch(rf"{cam}_{p}_\d{{5}}\.png", f) for f in frames)
    ls = loadmat(osp.join(root, "train-test people splits", "train_test_splits_ilidsvid.mat"))["ls_set"]
    assert ls.shape == (10, 10)
    for row in ls.astype(np.int64):
        assert sorted(row.tolist()) == list(range(1, 11))
    assert len({tuple(r) for r in ls.astype(np.int64).tolist()}) > 1
    assert counts["test_ids_per_split"] == 5


def test_prid2011_layout(trees):
    root = trees[0]["prid2011"]
    ms = osp.join(root, "prid_2011", "multi_shot")
    a = sorted(os.listdir(osp.join(ms, "cam_a")))
    b = sorted(os.listdir(osp.join(ms, "cam_b")))
    assert set(b) < set(a)  # some ids only in cam_a
    length = {}
    for cam, persons in (("cam_a", a), ("cam_b", b)):
        for p in persons:
            assert re.fullmatch(r"person_\d{4}", p)
            frames = sorted(os.listdir(osp.join(ms, cam, p)))
            assert frames == [f"{i:04d}.png" for i in range(1, len(frames) + 1)]
            length[(cam, int(p[7:]))] = len(frames)
    assert min(length.values()) < 27
    splits = json.load(open(osp.join(root, "splits_prid2011.json")))
    assert isinstance(splits, list) and len(splits) == 10
    usable = {p for p in b if min(length[("cam_a", int(p[7:]))], length[("cam_b", int(p[7:]))]) >= 27}
    for s in splits:
        assert set(s) == {"train", "test"}
        # the public file's format: person folder names, as deep-person-reid reads them
        assert all(isinstance(x, str) and re.fullmatch(r"person_\d{4}", x) for x in s["train"] + s["test"])
        assert s["train"] == sorted(s["train"]) and s["test"] == sorted(s["test"])
        assert set(s["train"]).isdisjoint(s["test"]) and set(s["train"]) | set(s["test"]) == usable
        assert len(s["test"]) == len(usable) // 2


def test_market1501_read_by_host_class(trees):
    root, counts = trees[0]["market1501"], trees[1]["market1501"]
    name = re.compile(r"^(-1|\d{4})_c([1-6])s([1-6])_(\d{6})_(\d{2})\.jpg$")
    listing = {d: sorted(os.listdir(osp.join(root, d))) for d in ("bounding_box_train", "bounding_box_test", "query")}
    for names in listing.values():
        assert all(name.match(n) for n in names)
    ds = Market1501(root=osp.dirname(root), verbose=False)
    assert len(ds.train) == len(listing["bounding_box_train"]) == counts["train_images"]
    assert len(ds.query) == len(listing["query"]) == counts["query_images"]
    junk = [n for n in listing["bounding_box_test"] if n.startswith("-1_")]
    assert len(junk) > 0 and any(n.startswith("0000_") for n in listing["bounding_box_test"])
    assert len(ds.gallery) == len(listing["bounding_box_test"]) - len(junk)
    train_pids = {p for _, p, _ in ds.train}
    test_pids = {p for _, p, _ in ds.gallery} - {0}
    assert len(train_pids) == counts["train_ids"] == 6
    assert {p for _, p, _ in ds.query} <= test_pids and len(test_pids) == counts["test_ids"]
    assert {int(p.split("_")[-1]) for p in train_pids}.isdisjoint(test_pids)
    query_names = set(listing["query"])
    assert query_names.isdisjoint(listing["bounding_box_test"])


def test_cuhk01_layout(trees):
    root = trees[0]["cuhk01"]
    names = sorted(os.listdir(osp.join(root, "campus")))
    assert names == [f"{p:04d}{i:03d}.png" for p in range(1, 9) for i in range(1, 5)]


@pytest.mark.parametrize("layout", LAYOUTS)
def test_keypoints_cover_frames_inside_image(trees, layout):
    root = trees[0][layout]
    kp = json.load(open(osp.join(root, "keypoints.json")))
    assert sorted(kp) == files_under(root)
    arr = np.asarray(list(kp.values()), np.float64)
    assert arr.shape == (len(kp), len(COCO_JOINTS), 3)
    assert np.all((arr[..., 0] >= 0) & (arr[..., 0] <= W - 1) & (arr[..., 1] >= 0) & (arr[..., 1] <= H - 1))
    assert set(np.unique(arr[..., 2]).tolist()) <= {0.0, 1.0} and arr[..., 2].mean() > 0.5
    # image y grows downwards: visible ankles lie below visible shoulders, which lie below the nose
    sh, ank = arr[:, 5:7], arr[:, 15:17]
    both = (sh[..., 2].min(1) > 0) & (ank[..., 2].min(1) > 0)
    assert both.sum() > 0 and np.all(ank[both, :, 1].mean(1) > sh[both, :, 1].mean(1))


@pytest.mark.parametrize("layout", ["mars", "market1501"])
def test_groups_share_uniforms(trees, layout):
    root = trees[0][layout]
    groups = {int(k): v for k, v in json.load(open(osp.join(root, "groups.json"))).items()}
    assert set(groups) == set(range(1, 13)) and set(groups.values()) <= set(UNIFORM_NAMES)
    sizes = np.bincount([UNIFORM_NAMES.index(g) for g in groups.values()])
    assert sizes.max() >= 2 and np.count_nonzero(sizes) == 6  # 6 groups (default), shared uniforms


def test_same_uniform_identities_differ_in_details():
    idents = make_identities(range(1, 41), seed=0, n_groups=3)
    by_group = {}
    for ident in idents.values():
        by_group.setdefault(ident.group, []).append(ident)
    assert len(by_group) == 3 and min(len(v) for v in by_group.values()) >= 2
    for members in by_group.values():
        assert len({m.uniform for m in members}) == 1
        details = {(m.skin, m.hair, m.hair_style, m.shoe, m.bag, m.bag_color, m.badge, round(m.height, 3))
                   for m in members}
        assert len(details) == len(members)


def test_skip_force_and_interrupted(tmp_path, capsys):
    out = str(tmp_path / "c")
    argv = ["--layout", "cuhk01", "--out", out, "--ids", "3", "--frame-size", str(H), str(W), "--workers", "1"]
    assert cli_main(argv) == 0
    assert "written" in capsys.readouterr().out
    marker = json.load(open(osp.join(out, DONE_FILE)))
    assert marker["args"]["ids"] == 3 and marker["counts"]["images"] == 12
    stamp = os.stat(osp.join(out, "campus", "0001001.png")).st_mtime_ns
    assert cli_main(argv) == 0
    assert "skipped" in capsys.readouterr().out
    assert os.stat(osp.join(out, "campus", "0001001.png")).st_mtime_ns == stamp
    with pytest.raises(FileExistsError):  # other args, no --force
        generate("cuhk01", out, ids=2, frame_size=(H, W), workers=1)
    counts = generate("cuhk01", out, ids=2, frame_size=(H, W), workers=1, force=True)
    assert not counts.get("skipped") and len(os.listdir(osp.join(out, "campus"))) == 8
    # an interrupted run (marker missing, partial flag present) is regenerated, not skipped
    os.remove(osp.join(out, DONE_FILE))
    open(osp.join(out, PARTIAL_FILE), "w").close()
    counts = generate("cuhk01", out, ids=2, frame_size=(H, W), workers=1)
    assert not counts.get("skipped") and osp.isfile(osp.join(out, DONE_FILE))
    assert not osp.exists(osp.join(out, PARTIAL_FILE))
    # a folder not written by the generator is never overwritten without force
    foreign = tmp_path / "real"
    (foreign / "campus").mkdir(parents=True)
    with pytest.raises(FileExistsError):
        generate("cuhk01", str(foreign), ids=2, frame_size=(H, W), workers=1)


def test_occluded_joints_are_marked_hidden():
    from fastreid_ext.data.synthetic.render import TrackletSpec, render_tracklet

    idents = make_identities(range(1, 21), seed=0, n_groups=4)
    core = [5, 6, 11, 12, 13, 14]  # shoulders, hips, knees: inside the frame for a normal walker
    hidden_tracks = 0
    for pid, ident in idents.items():
        for occlusion in (0.0, 1.0):
            spec = TrackletSpec(ident, pid % 6, 4, (0, 9, pid), (), occlusion=occlusion)
            frames, kps = render_tracklet(spec, 0, 128, 64)
            assert len(frames) == 4 and frames[0].shape == (128, 64, 3) and frames[0].dtype == np.uint8
            if occlusion == 0.0:
                assert np.all(kps[:, core, 2] == 1)
            else:
                hidden_tracks += bool(np.any(kps[:, core, 2] == 0))
    assert hidden_tracks >= 10


def test_vehicleid_layout(trees):
    """``image/<7 digits>.jpg`` + the host's lists: train and test vehicles disjoint, every image
    listed once, the Small / Medium / Large test lists nested, the 13164 list all test vehicles."""
    root, counts = trees[0]["vehicleid"], trees[1]["vehicleid"]
    split = osp.join(root, "train_test_split")

    def read(name):
        pairs = [line.split() for line in open(osp.join(split, name)).read().splitlines()]
        return {img: int(vid) for img, vid in pairs}

    train, tests = read("train_list.txt"), {n: read(f"test_list_{n}.txt") for n in (800, 1600, 2400, 13164)}
    images = sorted(f[:-4] for f in os.listdir(osp.join(root, "image")))
    assert all(re.fullmatch(r"\d{7}", i) for i in images) and sorted({**train, **tests[13164]}) == images
    assert not set(train.values()) & set(tests[13164].values())
    assert set(tests[800].items()) < set(tests[1600].items()) < set(tests[2400].items()) == set(tests[13164].items())
    assert len(set(train.values())) == counts["train_ids"] and len(set(tests[13164].values())) == counts["test_ids"]
