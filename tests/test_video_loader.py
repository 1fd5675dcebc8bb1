"""Identity sampler, frame reading with skips, datasets and loaders end to end, on a tiny tree
of JPEG frames written to a temp dir (fastreid_ext.data.{samplers,frame_io,video_dataset,build})."""
import json
import logging
import os
from collections import Counter

import cv2
import numpy as np
import pytest
import torch

import fastreid_ext  # noqa: F401  (compat shims first)
from fastreid.data.datasets import DATASET_REGISTRY
from fastreid_ext.config import get_cfg
from fastreid_ext.data import frame_io
from fastreid_ext.data.build import build_video_test_loader, build_video_train_loader
from fastreid_ext.data.clip_sampler import dense_clips, evenly
from fastreid_ext.data.datasets.tracklet_dataset import TrackletDataset
from fastreid_ext.data.samplers import IdentityBalancedSampler
from fastreid_ext.data.transforms import ClipTestTransform
from fastreid_ext.data.video_dataset import VideoTestDataset, VideoTrainDataset, collate_video_batch

H, W = 32, 16


# --------------------------------------------------------------------------- tiny dataset
def _scan(folder, train):
    items = []
    for name in sorted(os.listdir(folder)):
        d = os.path.join(folder, name)
        if not os.path.isdir(d):
            continue
        pid, cam, _ = (int(v) for v in name.split("_"))
        frames = tuple(sorted(os.path.join(d, f) for f in os.listdir(d) if f.endswith(".jpg")))
        extras = {"keypoints": os.path.join(folder, "keypoints.json")}
        if train:
            items.append((frames, f"tiny_{pid}", f"tiny_{cam}", extras))
        else:
            items.append((frames, pid, cam))
    return items


class TinyVideoLoaderTest(TrackletDataset):
    dataset_name = "tiny"

    def __init__(self, root="datasets", split=0, protocol="standard", **kwargs):
        base = os.path.join(root, "tiny")
        super().__init__(
            _scan(os.path.join(base, "train"), True),
            _scan(os.path.join(base, "query"), False),
            _scan(os.path.join(base, "gallery"), False),
            **kwargs,
        )


if "TinyVideoLoaderTest" not in DATASET_REGISTRY._obj_map:
    DATASET_REGISTRY.register(TinyVideoLoaderTest)


def _write_tracklet(folder, pid, cam, k, n, rng, kp_table=None, rel_root=None):
    d = os.path.join(folder, f"{pid}_{cam}_{k}")
    os.makedirs(d)
    for j in range(n):
        img = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
        p = os.path.join(d, f"f{j:03d}.jpg")
        cv2.imwrite(p, img)
        if kp_table is not None:
            joints = np.zeros((17, 3))
            joints[:, 0] = np.arange(17) * 0.5 + j  # x in input pixels
            joints[:, 1] = pid + 1.0  # y
            joints[:, 2] = 1.0
            kp_table[os.path.relpath(p, rel_root)] = joints.tolist()


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("tinyvid")
    rng = np.random.default_rng(0)
    train = os.path.join(root, "tiny", "train")
    table = {}
    for pid in range(4):
        for cam in range(2):
            for k in range(1 + (pid % 2)):  # pids 1, 3 have 2 tracklets per camera
                _write_tracklet(train, pid, cam, k, 3 + (pid + cam + k) % 5, rng, table, train)
    with open(os.path.join(train, "keypoints.json"), "w") as f:
        json.dump(table, f)
    for sub, cam in (("query", 0), ("gallery", 1)):
        for pid in range(3):
            _write_tracklet(os.path.join(root, "tiny", sub), pid, cam, 0, 2 + 4 * pid, rng)  # 2, 6, 10 frames
    return str(root)


def _cfg(root, workers=0):
    cfg = get_cfg()
    cfg.DATASETS.ROOT = root
    cfg.DATASETS.NAMES = ("TinyVideoLoaderTest",)
    cfg.INPUT.SIZE_TRAIN = [H, W]
    cfg.INPUT.SIZE_TEST = [H, W]
    cfg.INPUT.VIDEO.SEQ_LEN = 3
    cfg.INPUT.VIDEO.SAMPLER = "evenly"
    cfg.TEST.VIDEO.SEQ_LEN = 4
    cfg.TEST.VIDEO.MAX_CLIPS = 2
    cfg.TEST.IMS_PER_BATCH = 3
    cfg.SOLVER.IMS_PER_BATCH = 4
    cfg.DATALOADER.NUM_INSTANCE = 2
    cfg.DATALOADER.SAMPLER_TRAIN = "NaiveIdentitySampler"
    cfg.DATALOADER.NUM_WORKERS = workers
    cfg.DATALOADER.NUM_WORKERS_TEST = workers
    return cfg


def _rgb(path):
    return cv2.cvtColor(cv2.imread(path), cv2.COLOR_BGR2RGB).transpose(2, 0, 1).astype(np.float32)


# --------------------------------------------------------------------------- sampler
def _items(counts):
    """counts[pid] tracklets for each pid."""
    return [((f"x{p}_{k}",), f"d_{p}", "c0") for p, n in enumerate(counts) for k in range(n)]


def test_identity_sampler_p_by_k():
    items = _items([1, 2, 5, 3, 7, 4, 2, 1])
    P, K = 4, 3
    s = IdentityBalancedSampler(items, P * K, K, seed=1, rank=0, world_size=1)
    batches = s.take(30)
    for b in batches:
        assert len(b) == P * K
        pids = [items[i][1] for i in b]
        # K consecutive entries per identity, P distinct identities
        blocks = [pids[j:j + K] for j in range(0, P * K, K)]
        assert all(len(set(bl)) == 1 for bl in blocks)
        assert len({bl[0] for bl in blocks}) == P
        for j in range(0, P * K, K):  # no repeated tracklet unless the identity has < K
            if len(s.pid_index[pids[j]]) >= K:
                assert len(set(b[j:j + K])) == K
    # seeded and reproducible
    assert IdentityBalancedSampler(items, P * K, K, seed=1, rank=0, world_size=1).take(30) == batches
    assert IdentityBalancedSampler(items, P * K, K, seed=2, rank=0, world_size=1).take(30) != batches
    # every identity shows up
    assert {items[i][1] for b in batches for i in b} == {f"d_{p}" for p in range(8)}


def test_identity_sampler_distributed_split():
    items = _items([3, 2, 5, 3, 7, 4, 2, 6, 2, 3])
    P, K = 4, 2
    full = IdentityBalancedSampler(items, P * K, K, seed=3, rank=0, world_size=1).take(20)
    r0 = IdentityBalancedSampler(items, P * K, K, seed=3, rank=0, world_size=2).take(20)
    r1 = IdentityBalancedSampler(items, P * K, K, seed=3, rank=1, world_size=2).take(20)
    for g, a, b in zip(full, r0, r1):
        assert len(a) == len(b) == P * K // 2
        assert a + b == g  # together they are the global batch
        pa, pb = {items[i][1] for i in a}, {items[i][1] for i in b}
        assert not pa & pb and len(pa) == len(pb) == P // 2  # disjoint identities
        assert Counter(items[i][1] for i in a) == Counter({p: K for p in pa})


def test_identity_sampler_bad_config():
    items = _items([2, 2, 2, 2])
    with pytest.raises(ValueError, match="multiple of the world size"):
        IdentityBalancedSampler(items, 6, 2, seed=0, rank=0, world_size=2)
    with pytest.raises(ValueError, match="identities"):
        IdentityBalancedSampler(items, 10, 2, seed=0, rank=0, world_size=1)
    with pytest.raises(ValueError, match="NUM_INSTANCE"):
        IdentityBalancedSampler(items, 5, 2, seed=0)


# --------------------------------------------------------------------------- frame reading
def test_corrupt_and_missing_frames_skipped_and_counted(tmp_path, caplog):
    rng = np.random.default_rng(1)
    paths = []
    for j in range(4):
        p = str(tmp_path / f"f{j}.jpg")
        cv2.imwrite(p, rng.integers(0, 256, (H, W, 3), dtype=np.uint8))
        paths.append(p)
    data = open(paths[1], "rb").read()
    with open(paths[1], "wb") as f:
        f.write(data[: len(data) // 2])  # truncated JPEG
    paths.append(str(tmp_path / "missing.jpg"))  # index 4: missing
    frame_io.reset_skipped_frames()
    with pytest.raises(frame_io.FrameReadError, match="truncated"):
        frame_io.read_frame(paths[1])
    with caplog.at_level(logging.WARNING, logger="fastreid_ext.data.frame_io"):
        frames, used, skipped = frame_io.load_clip(paths, [0, 1, 2, 4], "trk")
        assert used == [0, 2, 2, 3] and skipped == 2  # 1 -> 2 (i+1 first), 4 -> 3
        np.testing.assert_array_equal(frames[1], _rgb(paths[2]).transpose(1, 2, 0))
        frames, used, skipped = frame_io.load_clip(paths, [1, 1], "trk")
        assert used == [2, 2] and skipped == 2
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2  # once per bad file, not per read
    assert any("f1.jpg" in r.getMessage() for r in warnings)
    assert any("missing.jpg" in r.getMessage() for r in warnings)
    assert frame_io.skipped_frame_count() == 4
    # the dataset item reports the skips too
    ds = VideoTestDataset([(tuple(paths[:3]), 5, 1)], ClipTestTransform((H, W)), seq_len=3)
    assert ds[0]["skipped_frames"] == 1
    with pytest.raises(frame_io.FrameReadError, match="none of its 2 frames"):
        frame_io.load_clip([paths[1], paths[4]], [0], "all_bad")
    frame_io.reset_skipped_frames()


# --------------------------------------------------------------------------- datasets
def test_image_items_are_one_frame_tracklets(tmp_path):
    p = str(tmp_path / "a.jpg")
    cv2.imwrite(p, np.random.default_rng(2).integers(0, 256, (H, W, 3), dtype=np.uint8))
    items = [(p, "m_1", "m_0"), (p, "m_0", "m_1")]
    ds = VideoTrainDataset(items, ClipTestTransform((H, W)), evenly, seq_len=3)
    assert items[0][0] == p  # input not modified
    out = ds[0]
    assert out["images"].shape == (3, 3, H, W)
    for t in range(3):
        np.testing.assert_array_equal(out["images"][t].numpy(), _rgb(p))
    assert (out["targets"], out["camids"]) == (1, 0) and ds.num_classes == 2 and ds.num_cameras == 2
    assert ds.pid_dict == {"m_0": 0, "m_1": 1}
    assert VideoTrainDataset(items, ClipTestTransform((H, W)), evenly, seq_len=1)[1]["images"].shape == (1, 3, H, W)


def test_relabel_ids_is_the_train_sets_relabelling():
    from fastreid_ext.data.image_dataset import ImageTrainDataset
    from fastreid_ext.data.items import relabel_ids

    items = [(("a.jpg",), "m_7", "c2"), ("b.jpg", "m_3", "c0", {"group": "x"}), (("c.jpg", "d.jpg"), "m_7", "c0")]
    before = [tuple(i) for i in items]
    pids, cams, pid_dict, cam_dict = relabel_ids(items)
    assert pids == ["m_3", "m_7"] and cams == ["c0", "c2"]  # sorted, distinct
    assert pid_dict == {"m_3": 0, "m_7": 1} and cam_dict == {"c0": 0, "c2": 1}
    assert [tuple(i) for i in items] == before  # pure
    assert relabel_ids([(("x.jpg",), 5, 1), (("y.jpg",), 2, 1)])[2:] == ({2: 0, 5: 1}, {1: 0})
    assert relabel_ids([]) == ([], [], {}, {})
    # both train sets use it: the same maps; relabel=False keeps the raw ids and no maps
    video = VideoTrainDataset(items, ClipTestTransform((H, W)), evenly, seq_len=1)
    image = ImageTrainDataset([("a.jpg", "m_7", "c2"), ("b.jpg", "m_3", "c0"), ("c.jpg", "m_7", "c0")], lambda im: im)
    for ds in (video, image):
        assert (ds.pids, ds.cams, ds.pid_dict, ds.cam_dict) == (pids, cams, pid_dict, cam_dict)
    raw = VideoTrainDataset(items, ClipTestTransform((H, W)), evenly, seq_len=1, relabel=False)
    assert raw.pids == pids and not hasattr(raw, "pid_dict")


def test_train_dataset_keypoints(tiny_root):
    data = TinyVideoLoaderTest(root=tiny_root)
    ds = VideoTrainDataset(data.train, ClipTestTransform((H, W)), evenly, seq_len=2)
    for k in (0, 5):
        item = ds.items[k]
        out = ds[k]
        n = len(item[0])
        idx = evenly(n, 2)
        pid = int(item[1].split("_")[1])
        kp = out["keypoints"].numpy()
        assert kp.shape == (2, 17, 3) and kp.dtype == np.float32
        for t, j in enumerate(idx):
            np.testing.assert_allclose(kp[t, :, 0], (np.arange(17) * 0.5 + j) / W, atol=1e-6)
            np.testing.assert_allclose(kp[t, :, 1], (pid + 1.0) / H, atol=1e-6)
            np.testing.assert_array_equal(kp[t, :, 2], 1.0)
            np.testing.assert_array_equal(out["images"][t].numpy(), _rgb(item[0][j]))


def test_collate_fills_missing_keypoints():
    a = {"images": torch.zeros(2, 3, H, W), "targets": 1, "camids": 0, "erased": torch.zeros(2, dtype=torch.bool),
         "img_paths": "a", "skipped_frames": 0, "keypoints": torch.ones(2, 17, 3)}
    b = {k: v for k, v in a.items() if k != "keypoints"}
    out = collate_video_batch([a, b])
    assert out["keypoints"].shape == (2, 2, 17, 3)
    assert out["keypoints"][0].eq(1).all() and out["keypoints"][1].eq(0).all()
    assert out["images"].shape == (2, 2, 3, H, W) and out["targets"].dtype == torch.int64


# --------------------------------------------------------------------------- loaders
@pytest.mark.parametrize("workers", [0, 2])
def test_train_loader_end_to_end(tiny_root, workers):
    cfg = _cfg(tiny_root, workers)
    loader = build_video_train_loader(cfg)
    assert isinstance(loader, torch.utils.data.DataLoader)
    ds = loader.dataset
    assert ds.num_classes == 4 and len(ds) == 12
    it = iter(loader)
    for _ in range(3):
        batch = next(it)
        assert batch["images"].shape == (4, 3, 3, H, W) and batch["images"].dtype == torch.uint8
        assert batch["erased"].shape == (4, 3) and batch["erased"].dtype == torch.bool
        assert batch["keypoints"].shape == (4, 3, 17, 3)
        t = batch["targets"].tolist()
        assert t[0] == t[1] and t[2] == t[3] and t[0] != t[2]  # P=2 x K=2
        assert batch["skipped_frames"].tolist() == [0] * 4
        for b, path in enumerate(batch["img_paths"]):
            item = next(i for i in ds.items if i[0][0] == path)
            assert ds.pid_dict[item[1]] == t[b]
            idx = evenly(len(item[0]), 3)
            for f, j in enumerate(idx):  # no augmentation configured: the exact frames
                np.testing.assert_array_equal(batch["images"][b, f].numpy(), _rgb(item[0][j]))
    del it


def test_test_loader_end_to_end_two_workers(tiny_root):
    cfg = _cfg(tiny_root, workers=2)
    loader, num_query, data = build_video_test_loader(cfg, "TinyVideoLoaderTest")
    assert num_query == len(data.query) == 3
    items = data.query + data.gallery
    seen = Counter()
    for batch in loader:
        assert batch["images"].shape[1:] == (4, 3, H, W) and batch["images"].shape[0] <= 3
        for b, k in enumerate(batch["track_idx"].tolist()):
            frames, pid, cam = items[k]
            assert batch["targets"][b].item() == pid and batch["camids"][b].item() == cam
            clip = dense_clips(len(frames), 4, 2)[seen[k]]  # clips arrive in order
            for f, j in enumerate(clip):
                np.testing.assert_array_equal(batch["images"][b, f].numpy(), _rgb(frames[j]))
            seen[k] += 1
    assert seen == Counter({k: len(dense_clips(len(items[k][0]), 4, 2)) for k in range(len(items))})
    assert max(seen.values()) == 2  # the 10-frame tracklets (3 clips) were capped at MAX_CLIPS=2


def test_unknown_names_raise(tiny_root):
    cfg = _cfg(tiny_root)
    with pytest.raises(KeyError, match="TinyVideoLoaderTest"):
        build_video_test_loader(cfg, "NoSuchDataset")
    cfg.DATALOADER.SAMPLER_TRAIN = "Nope"
    with pytest.raises(KeyError, match="NaiveIdentitySampler"):
        build_video_train_loader(cfg)
