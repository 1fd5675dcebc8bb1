"""Reliability of the deployment tools, the data loaders and the split runner: each test
reproduces one reported fault (lost or stale results, unclear errors) on tiny data."""
import json
import logging
import multiprocessing as mp
import os
import os.path as osp
import re
import shutil
import time

import cv2
import numpy as np
import pytest
import torch
from conftest import REPO
from torch import nn

import fastreid_ext  # noqa: F401  (compat shims first)
from fastreid_ext.commands.errors import run_cli
from fastreid_ext.config import build_config
from fastreid_ext.deploy import FeaturesFile, GalleryIndex, load_features, save_features
from fastreid_ext.deploy.cli import build_index_main
from fastreid_ext.deploy.extractor import FeatureExtractor
from fastreid_ext.deploy.inputs import collect_inputs

TINY = os.path.join(REPO, "tests", "configs", "tiny_video.yml")


def _unit(x):
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def _feats(x, names, first=None, chash="h0"):
    return FeaturesFile(_unit(x), names, chash, first or [], meta={"metric": "cosine"})


def _write_png(path, seed, size=(40, 20)):
    rng = np.random.default_rng(seed)
    os.makedirs(osp.dirname(str(path)), exist_ok=True)
    assert cv2.imwrite(str(path), rng.integers(0, 256, (*size, 3), dtype=np.uint8))


# ---------------------------------------------------------------------------- gallery index
def _slow_add(delay):
    original = GalleryIndex.add

    def add(self, *a, **k):
        time.sleep(delay)  # widen the load -> save window, as a large --add would
        return original(self, *a, **k)

    GalleryIndex.add = add


def _add_worker(path, index, delay, start):
    _slow_add(delay)
    start.wait()
    build_index_main(["--features", path, "--index", index, "--add"])


def test_concurrent_adds_all_land(tmp_path):
    rng = np.random.default_rng(0)
    save_features(str(tmp_path / "base.npz"), _feats(rng.standard_normal((4, 8)), [f"b{i}" for i in range(4)]))
    index = str(tmp_path / "idx")
    build_index_main(["--features", str(tmp_path / "base.npz"), "--index", index])
    ctx = mp.get_context("fork")
    start = ctx.Event()
    procs = []
    for w in range(4):
        path = str(tmp_path / f"w{w}.npz")
        save_features(path, _feats(rng.standard_normal((3, 8)), [f"w{w}_{i}" for i in range(3)]))
        procs.append(ctx.Process(target=_add_worker, args=(path, index, 0.3, start)))
    for p in procs:
        p.start()
    start.set()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    got = GalleryIndex.load(index)
    assert len(got) == 4 + 4 * 3 and got.index.ntotal == len(got)
    assert sorted(got.names) == sorted([f"b{i}" for i in range(4)] + [f"w{w}_{i}" for w in range(4) for i in range(3)])


def test_a_crash_between_the_two_writes_of_save_keeps_the_old_index(tmp_path, monkeypatch):
    import fastreid_ext.deploy.gallery_index as gi

    rng = np.random.default_rng(1)
    folder = str(tmp_path / "idx")
    GalleryIndex.build(_feats(rng.standard_normal((5, 8)), list("abcde")), "flat").save(folder)
    grown = GalleryIndex.load(folder)
    grown.add(_feats(rng.standard_normal((2, 8)), ["f", "g"]))
    real_write = gi.atomic_write
    calls = []

    def dies_on_second_write(path, write, mode="wb"):
        calls.append(path)
        if len(calls) == 2:
            raise KeyboardInterrupt("killed between the index file and meta.json")
        return real_write(path, write, mode)

    monkeypatch.setattr(gi, "atomic_write", dies_on_second_write)
    with pytest.raises(KeyboardInterrupt):
        grown.save(folder)
    monkeypatch.setattr(gi, "atomic_write", real_write)
    again = GalleryIndex.load(folder)  # the old, consistent index
    assert again.names == list("abcde") and again.index.ntotal == 5


def _rc(argv, capsys):
    rc = run_cli(lambda: build_index_main(argv))
    return rc, capsys.readouterr()


def test_add_of_other_images_under_indexed_names_is_an_error(tmp_path, capsys):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((3, 8))
    save_features(str(tmp_path / "a.npz"), _feats(x, ["p1", "p2", "p3"], ["/data/A/p1.png", "/data/A/p2.png", "/data/A/p3.png"]))
    save_features(str(tmp_path / "b.npz"), _feats(rng.standard_normal((2, 8)), ["p1", "p9"], ["/data/B/p1.png", "/data/B/p9.png"]))
    idx = str(tmp_path / "idx")
    assert _rc(["--features", str(tmp_path / "a.npz"), "--index", idx], capsys)[0] == 0
    rc, out = _rc(["--features", str(tmp_path / "b.npz"), "--index", idx, "--add"], capsys)
    assert rc != 0 and "p1" in out.err and "--skip-existing" in out.err
    assert GalleryIndex.load(idx).names == ["p1", "p2", "p3"]  # nothing added
    # the same files again: nothing to add, not an error
    rc, out = _rc(["--features", str(tmp_path / "a.npz"), "--index", idx, "--add"], capsys)
    assert rc == 0 and "added 0 items" in out.out
    # asked for explicitly: the new name is added, the indexed p1 kept
    rc, out = _rc(["--features", str(tmp_path / "b.npz"), "--index", idx, "--add", "--skip-existing"], capsys)
    assert rc == 0 and GalleryIndex.load(idx).names == ["p1", "p2", "p3", "p9"]


def test_add_of_nan_rows_names_the_features_to_add(tmp_path, capsys):
    rng = np.random.default_rng(3)
    save_features(str(tmp_path / "a.npz"), _feats(rng.standard_normal((3, 8)), ["a", "b", "c"]))
    bad = rng.standard_normal((2, 8)).astype(np.float32)
    bad[1, 3] = np.nan
    save_features(str(tmp_path / "nan.npz"), FeaturesFile(bad, ["d", "e"], "h0", meta={"metric": "cosine"}))
    idx = str(tmp_path / "idx")
    _rc(["--features", str(tmp_path / "a.npz"), "--index", idx], capsys)
    rc, out = _rc(["--features", str(tmp_path / "nan.npz"), "--index", idx, "--add"], capsys)
    assert rc != 0 and "features to add" in out.err and "'e'" in out.err and "query" not in out.err


def test_truncated_index_file_is_a_clear_error(tmp_path):
    rng = np.random.default_rng(4)
    folder = tmp_path / "idx"
    GalleryIndex.build(_feats(rng.standard_normal((20, 8)), [f"g{i}" for i in range(20)]), "flat").save(str(folder))
    (index_file,) = [p for p in folder.iterdir() if p.suffix == ".faiss"]
    data = index_file.read_bytes()
    index_file.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=re.escape(str(index_file)) + ".*(damaged|truncated)"):
        GalleryIndex.load(str(folder))


# ---------------------------------------------------------------------------- extraction
@pytest.fixture(scope="module")
def extractor(tmp_path_factory):
    from fastreid_ext.engine import Trainer

    cfg = build_config(TINY, ["MODEL.HEADS.NUM_CLASSES", "8"])
    torch.manual_seed(0)
    model = Trainer.build_model(cfg)
    for m in model.modules():  # non-trivial BN statistics: the embedding depends on the input
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    path = tmp_path_factory.mktemp("w") / "model.pth"
    torch.save({"model": model.state_dict()}, path)
    return FeatureExtractor.from_files(TINY, str(path), [])


def test_resume_into_features_of_another_folder_is_refused(extractor, tmp_path, caplog):
    """Same names in another folder: the file records its input, so resuming from B refuses
    (before: the items were re-extracted and the file silently changed input)."""
    for i, name in enumerate(("x.png", "y.png")):
        _write_png(tmp_path / "A" / name, i)
        _write_png(tmp_path / "B" / name, 100 + i)  # same names, other images
    out = str(tmp_path / "f.npz")
    first = extractor.extract(collect_inputs(str(tmp_path / "A")), out, progress=False).features
    with pytest.raises(ValueError, match="another --output, or --no-resume"):
        extractor.extract(collect_inputs(str(tmp_path / "B")), out, progress=False)
    np.testing.assert_array_equal(load_features(out).embeddings, first.embeddings)  # A's file kept
    res = extractor.extract(collect_inputs(str(tmp_path / "B")), out, resume=False, progress=False)
    fresh = extractor.extract(collect_inputs(str(tmp_path / "B")), str(tmp_path / "ref.npz"), progress=False)
    got = load_features(out)
    order = [got.names.index(n) for n in fresh.features.names]
    np.testing.assert_allclose(got.embeddings[order], fresh.features.embeddings, atol=1e-5)
    # a frame rewritten in place is noticed and embedded again
    time.sleep(0.01)
    _write_png(tmp_path / "B" / "x.png", 7)
    with caplog.at_level(logging.WARNING):
        res = extractor.extract(collect_inputs(str(tmp_path / "B")), out, progress=False)
    assert res.num_resumed == 1 and res.num_stale == 1
    assert "extracted again" in caplog.text


def test_two_extractions_into_one_file_do_not_interleave(extractor, tmp_path):
    from fastreid_ext.utils.safe_io import LockBusy, file_lock

    _write_png(tmp_path / "A" / "x.png", 0)
    out = str(tmp_path / "f.npz")
    with file_lock(out):  # held by "another" extraction
        ctx = mp.get_context("fork")
        q = ctx.Queue()

        def other():
            try:
                extractor.extract(collect_inputs(str(tmp_path / "A")), out, progress=False)
                q.put("ran")
            except LockBusy as e:
                q.put(str(e))

        p = ctx.Process(target=other)
        p.start()
        msg = q.get(timeout=60)
        p.join(30)
    assert "in use by another process" in msg and "f.npz" in msg
    assert not os.path.exists(out)


# ---------------------------------------------------------------------------- data
def test_truncated_mat_file_error_names_the_file(tmp_path):
    from scipy.io import savemat

    from fastreid_ext.data.datasets.mars import read_mat

    path = str(tmp_path / "tracks_test_info.mat")
    savemat(path, {"track_test_info": np.arange(40).reshape(10, 4)})
    data = open(path, "rb").read()
    open(path, "wb").write(data[: len(data) // 2])
    with pytest.raises(ValueError, match=re.escape(path)):
        read_mat(path, "track_test_info")


def test_empty_tracklet_folder_is_found_when_the_dataset_loads(tiny_datasets_root, tmp_path, caplog):
    from fastreid_ext.data.datasets.synthetic import SyntheticMARS

    root = tmp_path / "root"
    shutil.copytree(tiny_datasets_root, root)
    full = SyntheticMARS(root=str(root))
    folder = osp.dirname(full.gallery[0][0][0])
    emptied = sum(1 for it in full.query + full.gallery if osp.dirname(it[0][0]) == folder)
    for f in os.listdir(folder):
        os.remove(osp.join(folder, f))
    with caplog.at_level(logging.WARNING):
        ds = SyntheticMARS(root=str(root))
    assert len(ds.query) + len(ds.gallery) == len(full.query) + len(full.gallery) - emptied
    assert re.search(rf"dropped {emptied} tracklet\(s\) of bbox_test none of whose frames", caplog.text)
    assert all(osp.isfile(it[0][0]) for it in ds.query + ds.gallery)


def test_generator_refuses_a_prid_set_without_usable_ids(tmp_path):
    from fastreid_ext.data.synthetic import generate

    with pytest.raises(ValueError, match="27 frames"):
        generate("prid2011", str(tmp_path / "prid"), ids=8, min_len=4, max_len=8, frame_size=(32, 16), workers=1)


def test_onnx_is_a_listed_requirement():
    # the [onnx] extra of pyproject.toml, which make test installs (requirements.txt: -e .[...,onnx,...])
    import tomllib

    with open(osp.join(REPO, "pyproject.toml"), "rb") as f:
        extras = tomllib.load(f)["project"]["optional-dependencies"]
    names = [re.split(r"[<>=!~ ;\[]", d)[0].lower() for d in extras["onnx"]]
    assert "onnx" in names and "onnxruntime" in names
    with open(osp.join(REPO, "requirements.txt")) as f:
        assert "onnx" in f.read()


# ---------------------------------------------------------------------------- run_splits
FAKE_TRAIN_NET = '''
import json, os, sys
argv = sys.argv[1:]
split = int(argv[argv.index("DATASETS.SPLIT") + 1])
out = argv[argv.index("OUTPUT_DIR") + 1]
os.makedirs(out, exist_ok=True)
with open(os.path.join(out, "argv.json"), "w") as f:
    json.dump(argv, f)
with open(os.path.join(out, "results.json"), "w") as f:
    json.dump({"Rank-1": 50.0 + split, "mAP": 40.0 + split, "complete": True}, f)
'''


def test_skip_done_does_not_take_a_killed_split_as_finished(tmp_path, capsys):
    from test_datasets import load_run_splits

    run_splits = load_run_splits()
    fake = tmp_path / "fake_train_net.py"
    fake.write_text(FAKE_TRAIN_NET)
    from fastreid_ext.config import build_config

    tiny = osp.join(REPO, "tests", "configs", "tiny_video.yml")
    base = tmp_path / "out"
    for split, complete in ((0, True), (1, False)):  # split 1 was killed after an intermediate evaluation
        (base / f"split_{split}").mkdir(parents=True)
        (base / f"split_{split}" / "results.json").write_text(
            json.dumps({"Rank-1": 1.0, "mAP": 2.0, "complete": complete}))
        cfg = build_config(tiny, ["DATASETS.SPLIT", str(split), "OUTPUT_DIR", str(base / f"split_{split}")])
        (base / f"split_{split}" / "config.yaml").write_text(cfg.dump())  # the settings it was run with
    (base / "split_1" / "last_checkpoint").write_text("model_0003.pth")
    out = run_splits.main(["--config-file", tiny, "--splits", "0-1", "--skip-done", "--train-script", str(fake),
                           "OUTPUT_DIR", str(base)])
    assert not (base / "split_0" / "argv.json").exists()  # finished: reused
    argv = json.loads((base / "split_1" / "argv.json").read_text())
    assert "--resume" in argv  # unfinished: run again, continuing from its checkpoint
    assert out["results"] == [{"Rank-1": 1.0, "mAP": 2.0}, {"Rank-1": 51.0, "mAP": 41.0}]


def test_an_index_on_a_read_only_location_still_loads(tmp_path, monkeypatch):
    import errno

    import fastreid_ext.utils.safe_io as safe_io

    folder = str(tmp_path / "idx")
    GalleryIndex.build(_feats(np.eye(4), list("abcd")), "flat").save(folder)
    os.remove(folder + ".lock")
    real_open = os.open

    def read_only(path, flags, *a):
        if str(path).endswith(".lock"):
            raise OSError(errno.EROFS, "Read-only file system", path)
        return real_open(path, flags, *a)

    monkeypatch.setattr(safe_io.os, "open", read_only)
    assert GalleryIndex.load(folder).names == list("abcd")  # readers need no lock file there
    with pytest.raises(OSError):
        GalleryIndex.build(_feats(np.eye(4), list("wxyz")), "flat").save(folder)  # writers do
