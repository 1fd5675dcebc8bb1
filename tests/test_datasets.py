"""Tracklet dataset loaders on tiny hand-made trees in the official layouts (and, when the
generator exists, on generator-written trees)."""
import json
import logging
import os
import os.path as osp

import numpy as np
import pytest
import scipy.io

import fastreid_ext  # noqa: F401  (compat shims + registration)
from fastreid.data.datasets import DATASET_REGISTRY
from fastreid_ext.data.datasets import (
    CUHK01,
    MARS,
    PRID2011,
    SyntheticCUHK01,
    SyntheticMarket1501,
    SyntheticMARS,
    TrackletDataset,
    iLIDSVID,
)
from fastreid_ext.data.datasets.cuhk01 import NUM_SPLITS, SPLIT_SEED
from fastreid_ext.data.items import Item


def touch(path, image=True):
    """Write a tiny 4x2 image (or an empty file) at ``path``."""
    os.makedirs(osp.dirname(path), exist_ok=True)
    if image:
        import cv2

        cv2.imwrite(path, np.full((4, 2, 3), 128, np.uint8))
    else:
        open(path, "wb").close()


# ---------------------------------------------------------------- MARS
# (folder, camera, tracklet, n_frames) of the test rows, in track_test_info order.
MARS_TRAIN_ROWS = [(1, 1, 1, 3), (2, 2, 1, 2)]
MARS_TEST_ROWS = [
    (3, 1, 1, 2),   # row 1: query
    (3, 2, 1, 3),   # row 2: gallery, cross-camera match of row 1
    (4, 1, 1, 1),   # row 3: query
    (4, 3, 1, 2),   # row 4: gallery
    (0, 2, 1, 2),   # row 5: distractor (pid 0), kept
    (-1, 1, 1, 1),  # row 6: junk (pid -1)
    (3, 1, 2, 1),   # row 7: gallery, same pid and camera as query row 1
]
MARS_QUERY_IDX = [1, 3]  # 1-based


def mars_folder(pid):
    return "00-1" if pid == -1 else f"{pid:04d}"


def write_mars(base, empty_train_row=True):
    """Official MARS layout under ``base``; names of each tracklet are written in *reverse*
    frame order so that sorting is observable. Returns nothing; the rows are the constants above."""
    info = osp.join(base, "info")
    os.makedirs(info, exist_ok=True)
    for subset, rows, key in (("train", MARS_TRAIN_ROWS, "track_train_info"),
                              ("test", MARS_TEST_ROWS, "track_test_info")):
        names, track = [], []
        for pid, cam, tr, n in rows:
            start = len(names) + 1
            for f in reversed(range(1, n + 1)):
                name = f"{mars_folder(pid)}C{cam}T{tr:04d}F{f:03d}.jpg"
                names.append(name)
                touch(osp.join(base, f"bbox_{subset}", mars_folder(pid), name))
            track.append([start, len(names), pid, cam])
        if subset == "train" and empty_train_row:
            track.append([len(names) + 1, len(names), 7, 1])  # end < start: empty tracklet
        with open(osp.join(info, f"{subset}_name.txt"), "w") as f:
            f.write("\n".join(names) + "\n")
        scipy.io.savemat(osp.join(info, f"tracks_{subset}_info.mat"), {key: np.array(track, dtype=np.float64)})
    scipy.io.savemat(osp.join(info, "query_IDX.mat"), {"query_IDX": np.array([MARS_QUERY_IDX], dtype=np.float64)})


def test_mars_standard_protocol(tmp_path, caplog):
    write_mars(str(tmp_path / "mars"))
    with caplog.at_level(logging.WARNING, logger="fastreid_ext.data.datasets.mars"):
        ds = DATASET_REGISTRY.get("MARS")(root=str(tmp_path), split=3, combineall=False)
    assert isinstance(ds, TrackletDataset) and ds.eval_protocol == "cross_camera" and ds.dataset_name == "mars"
    # empty tracklet dropped with a warning that counts it
    assert any("dropped 1 empty tracklet" in r.getMessage() for r in caplog.records)

    # hand-checked train tracklet: folder 0001, camera 1 -> 0, frames F001..F003 sorted
    d = str(tmp_path / "mars" / "bbox_train" / "0001")
    assert ds.train[0] == Item(tuple(osp.join(d, f"0001C1T0001F00{i}.jpg") for i in (1, 2, 3)), "mars_1", "mars_0", {})
    assert [(t[1], t[2]) for t in ds.train] == [("mars_1", "mars_0"), ("mars_2", "mars_1")]

    # query = query_IDX rows (1 and 3), ints, 0-based cameras
    assert [(len(q[0]), q[1], q[2]) for q in ds.query] == [(2, 3, 0), (1, 4, 0)]
    q0 = str(tmp_path / "mars" / "bbox_test" / "0003")
    assert ds.query[0][0] == (osp.join(q0, "0003C1T0001F001.jpg"), osp.join(q0, "0003C1T0001F002.jpg"))
    # gallery = other rows; junk (pid -1) dropped, distractor (pid 0) kept
    assert [(len(g[0]), g[1], g[2]) for g in ds.gallery] == [(3, 3, 1), (2, 4, 2), (2, 0, 1), (1, 3, 0)]
    assert all(osp.isfile(p) for item in ds.train + ds.query + ds.gallery for p in item[0])


def test_mars_official_protocol(tmp_path):
    write_mars(str(tmp_path / "mars"))
    ds = MARS(root=str(tmp_path), protocol="official")
    assert ds.eval_protocol == "mars_official" and MARS.eval_protocol == "cross_camera"
    assert [(q[1], q[2]) for q in ds.query] == [(3, 0), (4, 0)]
    # every test row, queries included, junk kept as pid -1
    expected = [(pid, cam - 1, n) for pid, cam, _, n in MARS_TEST_ROWS]
    assert [(g[1], g[2], len(g[0])) for g in ds.gallery] == expected
    assert ds.gallery[0] == ds.query[0] and ds.gallery[2] == ds.query[1]
    # DATASETS.COMBINEALL: test rows 1-4 and 7 join train once each; distractor and junk do not
    combined = MARS(root=str(tmp_path), protocol="official", combineall=True).train
    assert combined[:2] == ds.train
    assert [(t[1], t[2], len(t[0])) for t in combined[2:]] == [
        ("mars_test_3", "mars_test_0", 2), ("mars_test_4", "mars_test_0", 1), ("mars_test_3", "mars_test_1", 3),
        ("mars_test_4", "mars_test_2", 2), ("mars_test_3", "mars_test_0", 1)]


def test_mars_unknown_protocol_and_missing_root(tmp_path, monkeypatch):
    write_mars(str(tmp_path / "mars"))
    with pytest.raises(ValueError, match="unknown protocol 'p486'"):
        MARS(root=str(tmp_path), protocol="p486")
    with pytest.raises(FileNotFoundError) as err:
        MARS(root=str(tmp_path / "nowhere"))
    msg = str(err.value)
    assert "FASTREID_DATASETS" in msg and "bbox_train" in msg and "query_IDX" in msg
    assert osp.join(str(tmp_path / "nowhere"), "mars") in msg


def test_mars_bad_row_raises(tmp_path):
    base = str(tmp_path / "mars")
    write_mars(base)
    # a row whose pid does not match its frames' folder is bad input, not silently loaded
    scipy.io.savemat(osp.join(base, "info", "tracks_train_info.mat"),
                     {"track_train_info": np.array([[1, 3, 2, 1]], dtype=np.float64)})
    with pytest.raises(ValueError, match="pid 2"):
        MARS(root=str(tmp_path))


# ---------------------------------------------------------------- iLIDS-VID
ILIDS_PERSONS = ["person001", "person002", "person005", "person007"]  # sorted index != number


def write_ilids(base, ls_set, frames=(3, 2)):
    for cam, n in zip((1, 2), frames):
        for p in ILIDS_PERSONS:
            for f in reversed(range(n)):
                touch(osp.join(base, "i-LIDS-VID", "sequences", f"cam{cam}", p, f"cam{cam}_{p}_{f:05d}.png"))
    split_dir = osp.join(base, "train-test people splits")
    os.makedirs(split_dir, exist_ok=True)
    scipy.io.savemat(osp.join(split_dir, "train_test_splits_ilidsvid.mat"), {"ls_set": np.asarray(ls_set, np.float64)})


def test_ilidsvid_split(tmp_path):
    ls_set = [[1, 2, 3, 4]] * 10
    ls_set = [list(r) for r in ls_set]
    ls_set[4] = [3, 1, 4, 2]  # test = sorted persons #3, #1 -> person005, person001
    write_ilids(str(tmp_path / "ilids-vid"), ls_set)
    ds = iLIDSVID(root=str(tmp_path), split=4, protocol="standard")
    assert ds.dataset_name == "ilidsvid" and ds.eval_protocol == "cross_camera"
    assert [(q[1], q[2]) for q in ds.query] == [(1, 0), (5, 0)]
    assert [(g[1], g[2]) for g in ds.gallery] == [(1, 1), (5, 1)]
    assert sorted((t[1], t[2]) for t in ds.train) == [
        ("ilidsvid_2", "ilidsvid_0"), ("ilidsvid_2", "ilidsvid_1"), ("ilidsvid_7", "ilidsvid_0"), ("ilidsvid_7", "ilidsvid_1")]
    d = str(tmp_path / "ilids-vid" / "i-LIDS-VID" / "sequences" / "cam1" / "person005")
    assert ds.query[1][0] == tuple(osp.join(d, f"cam1_person005_{f:05d}.png") for f in range(3))
    assert len(ds.gallery[1][0]) == 2
    # split 0: test = persons #1, #2
    assert [q[1] for q in iLIDSVID(root=str(tmp_path)).query] == [1, 2]


def test_ilidsvid_bad_split_and_missing_split_file(tmp_path):
    base = str(tmp_path / "ilids-vid")
    write_ilids(base, [[1, 2, 3, 4]] * 10)
    for bad in (10, -1, "1"):
        with pytest.raises(ValueError, match="split must be an int in 0..9"):
            iLIDSVID(root=str(tmp_path), split=bad)
    split_path = osp.join(base, "train-test people splits", "train_test_splits_ilidsvid.mat")
    os.remove(split_path)
    with pytest.raises(FileNotFoundError) as err:
        iLIDSVID(root=str(tmp_path))
    assert split_path in str(err.value) and "ls_set" in str(err.value)


# ---------------------------------------------------------------- PRID-2011
def write_prid(base, splits, cam_a=(1, 2, 3, 4), cam_b=(1, 2, 3)):
    for cam, persons in (("a", cam_a), ("b", cam_b)):
        for p in persons:
            for f in (2, 1, 3):
                touch(osp.join(base, "prid_2011", "multi_shot", f"cam_{cam}", f"person_{p:04d}", f"{f:04d}.png"))
    with open(osp.join(base, "splits_prid2011.json"), "w") as f:
        json.dump(splits, f)


def test_prid2011_split_and_cameras(tmp_path, caplog):
    splits = [{"train": [1, 2], "test": [3, 4]}] * 9 + [{"train": ["person_0003", 4], "test": ["person_0001", 2]}]
    write_prid(str(tmp_path / "prid2011"), splits)
    with caplog.at_level(logging.WARNING, logger="fastreid_ext.data.datasets.prid2011"):
        ds = PRID2011(root=str(tmp_path), split=0)
    # person 4 lacks cam_b: skipped (counted), only person 3 is tested
    assert any("skipped 1 test id" in r.getMessage() for r in caplog.records)
    assert [(q[1], q[2]) for q in ds.query] == [(3, 0)] and [(g[1], g[2]) for g in ds.gallery] == [(3, 1)]
    d = str(tmp_path / "prid2011" / "prid_2011" / "multi_shot" / "cam_b" / "person_0003")
    assert ds.gallery[0][0] == tuple(osp.join(d, f"{f:04d}.png") for f in (1, 2, 3))
    assert sorted((t[1], t[2]) for t in ds.train) == [
        ("prid2011_1", "prid2011_0"), ("prid2011_1", "prid2011_1"), ("prid2011_2", "prid2011_0"), ("prid2011_2", "prid2011_1")]
    ds9 = PRID2011(root=str(tmp_path), split=9)
    assert [q[1] for q in ds9.query] == [1, 2] and sorted({t[1] for t in ds9.train}) == ["prid2011_3"]
    with pytest.raises(ValueError, match="0..9"):
        PRID2011(root=str(tmp_path), split=10)
    os.remove(str(tmp_path / "prid2011" / "splits_prid2011.json"))
    with pytest.raises(FileNotFoundError, match="splits_prid2011.json"):
        PRID2011(root=str(tmp_path))


# ---------------------------------------------------------------- CUHK01
def write_cuhk01(base, n_ids, image=False):
    for pid in range(1, n_ids + 1):
        for img in (4, 1, 3, 2):
            touch(osp.join(base, "campus", f"{pid:04d}{img:03d}.png"), image=image)


def test_cuhk01_protocols_and_splits(tmp_path):
    write_cuhk01(str(tmp_path / "cuhk01"), 202)
    pids = list(range(1, 203))
    for protocol, num_test in (("p486", 101), ("standard", 101), ("p100", 100)):
        ds = CUHK01(root=str(tmp_path), protocol=protocol, split=2)
        # independent re-draw of the documented split rule
        rng = np.random.default_rng(SPLIT_SEED)
        perm = [rng.permutation(len(pids)) for _ in range(NUM_SPLITS)][2]
        test_ids = sorted(pids[i] for i in perm[:num_test])
        assert sorted({q[1] for q in ds.query}) == test_ids == sorted({g[1] for g in ds.gallery})
        assert len(ds.query) == len(ds.gallery) == 2 * num_test
        assert {q[2] for q in ds.query} == {0} and {g[2] for g in ds.gallery} == {1}
        train_ids = {int(t[1].split("_")[1]) for t in ds.train}
        assert train_ids == set(pids) - set(test_ids) and len(ds.train) == 4 * len(train_ids)
    # a hand-checked item: images 001-002 camera A (query), 003-004 camera B (gallery)
    q = ds.query[0]
    assert q == Item((str(tmp_path / "cuhk01" / "campus" / f"{q[1]:04d}001.png"),), q[1], 0, {})
    assert ds.gallery[0] == Item((str(tmp_path / "cuhk01" / "campus" / f"{q[1]:04d}003.png"),), q[1], 1, {})
    # splits differ, and are reproducible
    assert {q[1] for q in CUHK01(root=str(tmp_path), split=0).query} != {q[1] for q in CUHK01(root=str(tmp_path), split=1).query}
    assert CUHK01(root=str(tmp_path), split=1).query == CUHK01(root=str(tmp_path), split=1).query
    with pytest.raises(ValueError, match="unknown protocol"):
        CUHK01(root=str(tmp_path), protocol="official")
    with pytest.raises(ValueError, match="0..9"):
        CUHK01(root=str(tmp_path), split=10)


# ---------------------------------------------------------------- synthetic variants
def test_synthetic_mars_extras(tmp_path):
    base = str(tmp_path / "synthetic" / "mars")
    write_mars(base, empty_train_row=False)
    kp = {"bbox_train/0001/0001C1T0001F001.jpg": [[0.5, 0.5, 1.0]] * 17}
    with open(osp.join(base, "keypoints.json"), "w") as f:
        json.dump(kp, f)
    with open(osp.join(base, "groups.json"), "w") as f:
        json.dump({"1": "blue", "2": "white", "3": "blue", "4": "green"}, f)
    ds = DATASET_REGISTRY.get("SyntheticMARS")(root=str(tmp_path), protocol="standard")
    assert isinstance(ds, MARS) and ds.dataset_name == "synthetic_mars"
    assert ds.groups == {1: "blue", 2: "white", 3: "blue", 4: "green"}
    kp_path = osp.join(base, "keypoints.json")
    assert ds.train[0][1:] == ("synthetic_mars_1", "synthetic_mars_0", {"keypoints": kp_path, "group": "blue"})
    assert ds.train[1][3]["group"] == "white" and ds.query[1][3]["group"] == "green"
    # the distractor has no group, still its keypoints file
    assert [g[3] for g in ds.gallery if g[1] == 0] == [{"keypoints": kp_path}]
    # without the side files: empty extras, no groups
    os.remove(osp.join(base, "keypoints.json"))
    os.remove(osp.join(base, "groups.json"))
    ds = SyntheticMARS(root=str(tmp_path))
    assert ds.groups is None and all(t.extras == {} for t in ds.train + ds.query + ds.gallery)
    with pytest.raises(FileNotFoundError, match="synthetic/mars"):
        SyntheticMARS(root=str(tmp_path / "nowhere"))


def test_synthetic_market1501_one_frame_tracklets(tmp_path):
    base = tmp_path / "synthetic" / "market1501"
    data = base / "Market-1501-v15.09.15"
    for sub, names in (("bounding_box_train", ["0002_c2s1_000301_01.jpg", "0001_c1s1_000151_01.jpg"]),
                       ("query", ["0003_c1s1_000451_00.jpg"]),
                       ("bounding_box_test", ["0003_c3s1_000551_01.jpg", "-1_c1s1_000001_00.jpg", "0000_c2s1_000002_00.jpg"])):
        for n in names:
            touch(str(data / sub / n))
    with open(base / "groups.json", "w") as f:
        json.dump({"1": "a", "2": "b", "3": "a"}, f)
    ds = SyntheticMarket1501(root=str(tmp_path), split=0, protocol="standard")
    assert ds.dataset_name == "synthetic_market1501" and ds.eval_protocol == "cross_camera"
    assert ds.train == [((str(data / "bounding_box_train" / "0001_c1s1_000151_01.jpg"),), "synthetic_market1501_1",
                         "synthetic_market1501_0", {"group": "a"}),
                        ((str(data / "bounding_box_train" / "0002_c2s1_000301_01.jpg"),), "synthetic_market1501_2",
                         "synthetic_market1501_1", {"group": "b"})]
    assert [(q[1], q[2]) for q in ds.query] == [(3, 0)]
    assert sorted((g[1], g[2]) for g in ds.gallery) == [(0, 1), (3, 2)]  # junk dropped, distractor kept
    with pytest.raises(FileNotFoundError, match="FASTREID_DATASETS"):
        SyntheticMarket1501(root=str(tmp_path / "nowhere"))
    # the generator's flat layout (folders directly in the dataset folder): same items, side files there
    os.rename(str(data), str(tmp_path / "flat"))
    os.rename(str(tmp_path / "flat"), str(base / "moved"))
    for sub in ("bounding_box_train", "query", "bounding_box_test"):
        os.rename(str(base / "moved" / sub), str(base / sub))
    flat = SyntheticMarket1501(root=str(tmp_path))
    assert [t[0][0] for t in flat.train] == [str(base / "bounding_box_train" / n) for n in
                                              ("0001_c1s1_000151_01.jpg", "0002_c2s1_000301_01.jpg")]
    assert [t[1:] for t in flat.train] == [t[1:] for t in ds.train] and len(flat.gallery) == 2


def test_synthetic_cuhk01_reads_its_own_folder(tmp_path):
    write_cuhk01(str(tmp_path / "synthetic" / "cuhk01"), 6)
    ds = SyntheticCUHK01(root=str(tmp_path))
    assert ds.num_test_ids == 3 and len(ds.query) == 6 and len(ds.train) == 12
    assert all("synthetic" in q[0][0] for q in ds.query)
    with pytest.raises(FileNotFoundError):
        CUHK01(root=str(tmp_path))


def test_all_registered_with_class_attributes():
    for name in ("MARS", "iLIDSVID", "PRID2011", "CUHK01", "SyntheticMARS", "SyntheticILIDSVID",
                 "SyntheticPRID2011", "SyntheticCUHK01", "SyntheticMarket1501"):
        cls = DATASET_REGISTRY.get(name)
        assert issubclass(cls, TrackletDataset)
        assert "dataset_name" in vars(cls) and "eval_protocol" in vars(cls), name


# ---------------------------------------------------------------- multi-split runs
from fastreid_ext.data.datasets.splits import parse_splits  # noqa: E402
from fastreid_ext.evaluation.split_stats import summarize_split_metrics  # noqa: E402

METRICS = ("Rank-1", "Rank-5", "Rank-10", "Rank-20", "mAP", "mINP")


def test_parse_splits():
    assert parse_splits("0-9") == list(range(10))
    assert parse_splits("0,3,5-7") == [0, 3, 5, 6, 7]
    assert parse_splits("4") == [4]
    for bad in ("", "5-3", "a", "1,1", "-1", "0-"):
        with pytest.raises(ValueError):
            parse_splits(bad)


def test_summarize_split_metrics_matches_numpy():
    rng = np.random.default_rng(3)
    values = rng.uniform(0, 100, size=(7, len(METRICS)))
    results = [dict(zip(METRICS, map(float, row)), metric=float(row[0] + row[4]) / 2, dataset="x") for row in values]
    summary = summarize_split_metrics(results)
    assert set(summary) == set(METRICS) | {"metric"}  # the non-numeric "dataset" is not a metric
    for j, key in enumerate(METRICS):
        np.testing.assert_allclose(summary[key]["mean"], values[:, j].mean(dtype=np.float64), rtol=1e-12)
        np.testing.assert_allclose(summary[key]["std"], values[:, j].std(dtype=np.float64, ddof=1), rtol=1e-12)
    # per-dataset nesting is kept
    nested = summarize_split_metrics([{"A": r, "B": {"mAP": 2 * r["mAP"]}} for r in results])
    np.testing.assert_allclose(nested["B"]["mAP"]["std"], (2 * values[:, 4]).std(ddof=1), rtol=1e-12)
    np.testing.assert_allclose(nested["A"]["Rank-5"]["mean"], values[:, 1].mean(), rtol=1e-12)
    with pytest.raises(ValueError, match="mAP"):
        summarize_split_metrics([{"mAP": 1.0, "Rank-1": 2.0}, {"Rank-1": 3.0}])
    with pytest.raises(ValueError):
        summarize_split_metrics([])


FAKE_TRAIN_NET = '''
import json, os, sys
argv = sys.argv[1:]
split = int(argv[argv.index("DATASETS.SPLIT") + 1])
out = argv[argv.index("OUTPUT_DIR") + 1]
os.makedirs(out, exist_ok=True)
with open(os.path.join(out, "argv.json"), "w") as f:
    json.dump(argv, f)
with open(os.path.join(out, "results.json"), "w") as f:
    json.dump({"Rank-1": 50.0 + 10 * split, "Rank-5": 90.0, "Rank-10": 95.0, "Rank-20": 99.0,
               "mAP": 40.0 + split ** 2, "mINP": 10.0, "metric": 45.0}, f)
'''


def load_run_splits():
    import importlib.util

    path = osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))), "tools", "run_splits.py")
    spec = importlib.util.spec_from_file_location("run_splits", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_run_splits_end_to_end(tmp_path, capsys):
    run_splits = load_run_splits()
    fake = tmp_path / "fake_train_net.py"
    fake.write_text(FAKE_TRAIN_NET)
    base = str(tmp_path / "out")
    out = run_splits.main(["--config-file", "cfg.yml", "--splits", "0,2-3", "--num-gpus", "2",
                           "--train-script", str(fake), "SOLVER.MAX_EPOCH", "1", "OUTPUT_DIR", base])
    assert out["splits"] == [0, 2, 3]
    rank1, mAP = np.array([50.0, 70.0, 80.0]), np.array([40.0, 44.0, 49.0])
    with open(osp.join(base, "splits_summary.json")) as f:
        saved = json.load(f)
    for summary in (out["summary"], saved["summary"]):
        np.testing.assert_allclose(summary["Rank-1"]["mean"], rank1.mean())
        np.testing.assert_allclose(summary["Rank-1"]["std"], rank1.std(ddof=1))
        np.testing.assert_allclose(summary["mAP"]["std"], mAP.std(ddof=1))
    with open(osp.join(base, "split_2", "argv.json")) as f:
        argv = json.load(f)
    assert argv == ["--config-file", "cfg.yml", "--num-gpus", "2", "SOLVER.MAX_EPOCH", "1",
                    "DATASETS.SPLIT", "2", "OUTPUT_DIR", osp.join(base, "split_2")]
    printed = capsys.readouterr().out
    assert "mean" in printed and "std" in printed and f"{rank1.mean():.2f}" in printed
    # DATASETS.SPLIT is owned by the tool
    with pytest.raises(ValueError, match="DATASETS.SPLIT"):
        run_splits.main(["--config-file", "cfg.yml", "--train-script", str(fake), "DATASETS.SPLIT", "1",
                         "OUTPUT_DIR", base])


# ---------------------------------------------------------------- generator-written trees
GEN_ARGS = {
    "mars": dict(min_len=2, max_len=3),
    "ilidsvid": dict(min_len=2, max_len=3),
    "prid2011": dict(min_len=27, max_len=28),  # the split file keeps ids with >= 27 frames
    "market1501": dict(min_len=1, max_len=2),
    "cuhk01": {},
}


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    """Every layout written by the generator under ``<root>/synthetic/<layout>`` (market1501 in
    its ``Market-1501-v15.09.15`` subfolder); returns (root, {layout: counts})."""
    try:
        from fastreid_ext.data.synthetic import generate
    except ImportError as e:
        pytest.skip(f"synthetic generator not available: {e}")
    root = tmp_path_factory.mktemp("gen_root")
    counts = {}
    for layout, kw in GEN_ARGS.items():
        out = root / "synthetic" / layout
        if layout == "market1501":
            out = out / "Market-1501-v15.09.15"
        counts[layout] = generate(layout, str(out), ids=10, seed=0, frame_size=(32, 16), workers=1, **kw)
    return str(root), counts


def check_side_files(ds, counts):
    """Every item points at the keypoints file, which has an entry for each of its frames, and
    carries its id's group; group sizes match the generator's."""
    with open(ds.keypoints_path) as f:
        keypoints = json.load(f)
    folder = osp.dirname(ds.keypoints_path)
    for item in ds.train + ds.query + ds.gallery:
        assert item[3]["keypoints"] == ds.keypoints_path
        assert all(osp.relpath(p, folder) in keypoints for p in item[0])
        assert all(osp.isfile(p) for p in item[0])
    sizes = {}
    for group in ds.groups.values():
        sizes[group] = sizes.get(group, 0) + 1
    assert sizes == counts["groups"]


def test_generated_mars(generated):
    root, counts = generated
    c = counts["mars"]
    ds = DATASET_REGISTRY.get("SyntheticMARS")(root=root)
    assert len(ds.train) == c["train_tracklets"] and len({t[1] for t in ds.train}) == c["train_ids"]
    assert len(ds.query) == c["query"] and len({q[1] for q in ds.query}) == c["test_ids"]
    assert len(ds.gallery) == c["gallery"] - c["junk_tracklets"]
    assert sum(g[1] == 0 for g in ds.gallery) == c["distractor_tracklets"] and all(g[1] != -1 for g in ds.gallery)
    official = SyntheticMARS(root=root, protocol="official")
    assert len(official.gallery) == c["test_tracklets"] and sum(g[1] == -1 for g in official.gallery) == c["junk_tracklets"]
    assert TrackletDataset.num_frames(ds.train) + TrackletDataset.num_frames(official.gallery) == c["frames"]
    for item in ds.train + ds.query + ds.gallery:
        pid = int(str(item[1]).rsplit("_", 1)[-1])  # "synthetic_mars_3" -> 3
        assert item[3].get("group") == ds.groups.get(pid) and (pid > 0) == ("group" in item[3])
    check_side_files(ds, c)


def test_generated_ilidsvid(generated):
    root, counts = generated
    c = counts["ilidsvid"]
    for split in (0, 9):
        ds = DATASET_REGISTRY.get("SyntheticILIDSVID")(root=root, split=split)
        assert len(ds.query) == len(ds.gallery) == c["test_ids_per_split"]
        assert len(ds.train) == 2 * c["train_ids_per_split"]
        assert TrackletDataset.num_frames(ds.train + ds.query + ds.gallery) == c["frames"]
    check_side_files(ds, c)


def test_generated_prid2011(generated):
    root, counts = generated
    c = counts["prid2011"]
    ds = DATASET_REGISTRY.get("SyntheticPRID2011")(root=root, split=3)
    assert len(ds.query) == len(ds.gallery) == c["test_ids_per_split"]
    assert len(ds.train) == 2 * (c["usable_ids"] - c["test_ids_per_split"])
    assert {q[1] for q in ds.query} == {g[1] for g in ds.gallery}
    check_side_files(ds, c)


def test_generated_market1501(generated):
    root, counts = generated
    c = counts["market1501"]
    ds = DATASET_REGISTRY.get("SyntheticMarket1501")(root=root)
    assert len(ds.train) == c["train_images"] and len({t[1] for t in ds.train}) == c["train_ids"]
    assert len(ds.query) == c["query_images"]
    assert len(ds.gallery) == c["gallery_images"] - c["junk_images"]
    assert sum(g[1] == 0 for g in ds.gallery) == c["distractor_images"]
    assert all(len(item[0]) == 1 for item in ds.train + ds.query + ds.gallery)
    check_side_files(ds, c)


def test_generated_cuhk01(generated):
    root, counts = generated
    c = counts["cuhk01"]
    ds = DATASET_REGISTRY.get("SyntheticCUHK01")(root=root, protocol="p100", split=5)
    n_test = min(100, c["ids"] // 2)
    assert len(ds.query) == len(ds.gallery) == 2 * n_test and len(ds.train) == 4 * (c["ids"] - n_test)
    check_side_files(ds, c)
