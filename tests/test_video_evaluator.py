"""VideoClipEvaluator, flip-test inference and rank-list pictures."""
from collections import OrderedDict

import cv2
import numpy as np
import pytest
import torch
from torch import nn

import fastreid_ext  # noqa: F401  (compat shims first)
from fastreid_ext import get_cfg
from fastreid_ext.evaluation.inference import inference_on_dataset
from fastreid_ext.evaluation.rerank import k_reciprocal_rerank
from fastreid_ext.evaluation.video_evaluator import VideoClipEvaluator
from fastreid_ext.evaluation.visualize import draw_rank_list


# ------------------------------------------------------------------ independent references
def hand_metrics(dist, qp, gp, qc, gc, max_rank=50):
    """Cross-camera CMC / mAP / mINP, one query at a time (Zheng et al. 2015 AP, Ye et al. INP)."""
    max_rank = min(max_rank, dist.shape[1])
    cmcs, aps, inps, skipped = [], [], [], 0
    for i in range(dist.shape[0]):
        order = np.argsort(dist[i], kind="stable")
        keep = ~((gp[order] == qp[i]) & (gc[order] == qc[i]))
        match = (gp[order] == qp[i])[keep]
        if not match.any():
            skipped += 1
            continue
        pos = np.flatnonzero(match)
        cmcs.append((np.arange(max_rank) >= pos[0]).astype(float))
        aps.append(np.mean([(j + 1) / (p + 1) for j, p in enumerate(pos)]))
        inps.append(len(pos) / (pos[-1] + 1))
    cmc = np.mean(cmcs, axis=0)
    return cmc, float(np.mean(aps)), float(np.mean(inps)), skipped


def expected_dict(dist, qp, gp, qc, gc):
    cmc, mAP, mINP, skipped = hand_metrics(dist, qp, gp, qc, gc)
    out = {f"Rank-{r}": cmc[min(r, len(cmc)) - 1] * 100 for r in (1, 5, 10, 20)}
    out.update(mAP=mAP * 100, mINP=mINP * 100, metric=(mAP + cmc[0]) / 2 * 100, num_skipped_queries=skipped)
    return out


def np_dist(q, g, metric):
    if metric == "cosine":
        q = q / np.linalg.norm(q, axis=1, keepdims=True)
        g = g / np.linalg.norm(g, axis=1, keepdims=True)
        return 1 - q @ g.T
    return np.sqrt(((q[:, None] - g[None]) ** 2).sum(-1))


# ------------------------------------------------------------------ fake clip stream
def make_tracklets(num_query=6, num_gallery=24, dim=8, seed=0):
    rng = np.random.default_rng(seed)
    n = num_query + num_gallery
    pids = np.concatenate([rng.permutation(6)[:num_query], rng.integers(0, 6, num_gallery)])
    camids = np.concatenate([np.zeros(num_query, int), rng.integers(0, 3, num_gallery)])
    centers = rng.normal(size=(6, dim))
    clips, track_of = [], []
    for t in range(n):
        for _ in range(rng.integers(1, 5)):  # 1..4 clips per tracklet
            clips.append(centers[pids[t]] + 0.9 * rng.normal(size=dim))
            track_of.append(t)
    clips, track_of = np.array(clips), np.array(track_of)
    perm = rng.permutation(len(clips))  # clips arrive in any order
    return pids, camids, clips[perm], track_of[perm]


def feed(ev, clips, track_of, batch=5):
    for s in range(0, len(clips), batch):
        ev.process({"track_idx": torch.from_numpy(track_of[s : s + batch])}, torch.from_numpy(clips[s : s + batch]).float())


def cfg_with(**kw):
    cfg = get_cfg()
    cfg.defrost()
    cfg.MODEL.DEVICE = "cpu"
    for key, val in kw.items():
        node = cfg
        *path, leaf = key.split(".")
        for p in path:
            node = node[p]
        node[leaf] = val
    return cfg


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_evaluator_matches_hand_computed_tracklet_metrics(metric):
    pids, camids, clips, track_of = make_tracklets()
    cfg = cfg_with(**{"TEST.METRIC": metric})
    ev = VideoClipEvaluator(cfg, 6, 30, pids, camids)
    feed(ev, clips, track_of)
    got = ev.evaluate()
    assert isinstance(got, OrderedDict)
    assert list(got)[:7] == ["Rank-1", "Rank-5", "Rank-10", "Rank-20", "mAP", "mINP", "metric"]
    tracks = np.stack([clips[track_of == t].mean(axis=0) for t in range(30)])
    exp = expected_dict(np_dist(tracks[:6], tracks[6:], metric), pids[:6], pids[6:], camids[:6], camids[6:])
    for key, val in exp.items():
        assert got[key] == pytest.approx(val, abs=1e-6), key
    # evaluate() twice gives the same answer; reset() forgets everything
    assert ev.evaluate() == got
    ev.reset()
    with pytest.raises(RuntimeError, match="no clip"):
        ev.evaluate()


def test_identical_clips_average_to_the_clip_and_cosine_normalises():
    pids, camids, _, _ = make_tracklets()
    rng = np.random.default_rng(4)
    tracks = rng.normal(size=(30, 8))
    track_of = np.repeat(np.arange(30), 3)  # three identical clips each
    ev = VideoClipEvaluator(cfg_with(**{"TEST.METRIC": "cosine"}), 6, 30, pids, camids)
    feed(ev, tracks[track_of], track_of, batch=7)
    feats = ev.tracklet_features().numpy()
    np.testing.assert_allclose(feats, tracks / np.linalg.norm(tracks, axis=1, keepdims=True), atol=1e-6)
    ev_e = VideoClipEvaluator(cfg_with(**{"TEST.METRIC": "euclidean"}), 6, 30, pids, camids)
    feed(ev_e, tracks[track_of], track_of)
    np.testing.assert_allclose(ev_e.tracklet_features().numpy(), tracks, atol=1e-6)


def test_max_clips_keeps_the_first_clips():
    pids, camids, _, _ = make_tracklets()
    rng = np.random.default_rng(5)
    clips = rng.normal(size=(30 * 4, 8))
    track_of = np.tile(np.arange(30), 4)  # clip c of every tracklet arrives in round c
    ev = VideoClipEvaluator(cfg_with(**{"TEST.METRIC": "euclidean", "TEST.VIDEO.MAX_CLIPS": 2}), 6, 30, pids, camids)
    feed(ev, clips, track_of, batch=11)
    expected = np.stack([clips[track_of == t][:2].mean(0) for t in range(30)])
    np.testing.assert_allclose(ev.tracklet_features().numpy(), expected, atol=1e-6)


def test_rerank_and_aqe_paths_use_the_tested_functions():
    pids, camids, clips, track_of = make_tracklets(seed=2)
    cfg = cfg_with(**{"TEST.METRIC": "euclidean", "TEST.RERANK.ENABLED": True, "TEST.RERANK.K1": 6, "TEST.RERANK.K2": 3})
    ev = VideoClipEvaluator(cfg, 6, 30, pids, camids)
    feed(ev, clips, track_of)
    got = ev.evaluate()
    tracks = np.stack([clips[track_of == t].mean(axis=0) for t in range(30)])
    d = k_reciprocal_rerank(torch.from_numpy(tracks[:6]), torch.from_numpy(tracks[6:]), 6, 3, cfg.TEST.RERANK.LAMBDA, "euclidean").numpy()
    exp = expected_dict(d, pids[:6], pids[6:], camids[:6], camids[6:])
    assert got["mAP"] == pytest.approx(exp["mAP"], abs=1e-4)
    assert got["Rank-1"] == pytest.approx(exp["Rank-1"], abs=1e-4)


def test_groupwise_is_the_mean_over_groups():
    pids, camids, clips, track_of = make_tracklets(num_query=6, num_gallery=24, seed=3)
    groups = pids % 2  # identity -> uniform group
    cfg = cfg_with(**{"TEST.METRIC": "euclidean"})
    ev = VideoClipEvaluator(cfg, 6, 30, pids, camids, groups=groups, protocol="groupwise")
    feed(ev, clips, track_of)
    got = ev.evaluate()
    tracks = np.stack([clips[track_of == t].mean(axis=0) for t in range(30)])
    maps, r1s = [], []
    for grp in (0, 1):
        qi = np.flatnonzero(groups[:6] == grp)
        gi = 6 + np.flatnonzero(groups[6:] == grp)
        cmc, mAP, _, _ = hand_metrics(np_dist(tracks[qi], tracks[gi], "euclidean"), pids[qi], pids[gi], camids[qi], camids[gi])
        maps.append(mAP)
        r1s.append(cmc[0])
    assert got["mAP"] == pytest.approx(np.mean(maps) * 100, abs=1e-6)
    assert got["Rank-1"] == pytest.approx(np.mean(r1s) * 100, abs=1e-6)


def test_evaluator_bad_input():
    pids, camids, clips, track_of = make_tracklets()
    cfg = cfg_with()
    ev = VideoClipEvaluator(cfg, 6, 30, pids, camids)
    with pytest.raises(KeyError, match="track_idx"):
        ev.process({"targets": torch.zeros(2)}, torch.zeros(2, 8))
    with pytest.raises(ValueError, match="out of range"):
        ev.process({"track_idx": torch.tensor([0, 30])}, torch.zeros(2, 8))
    missing = track_of != 7
    feed(ev, clips[missing], track_of[missing])
    with pytest.raises(ValueError, match="1 of 30 tracklets received no clip"):
        ev.evaluate()
    ev.reset()
    bad = clips.copy()
    bad[0, :3] = np.nan
    feed(ev, bad, track_of)
    with pytest.raises(ValueError, match="3 NaN and 0 inf entries in 1 of 30 tracklets"):
        ev.evaluate()
    with pytest.raises(ValueError, match="groupwise"):
        VideoClipEvaluator(cfg, 6, 30, pids, camids, protocol="groupwise")
    with pytest.raises(ValueError, match="num_query"):
        VideoClipEvaluator(cfg, 30, 30, pids, camids)


# ------------------------------------------------------------------ inference / flip test
class RecordingModel(nn.Module):
    """Normalises its input *in place* like the host's Baseline (``baseline.py:130``) and embeds
    it linearly, recording (copies of) what it was given."""

    def __init__(self, dim_in):
        super().__init__()
        self.proj = nn.Linear(dim_in, 4, bias=False)
        self.register_buffer("mean", torch.tensor(100.0))
        self.seen = []

    def forward(self, batch):
        images = batch["images"]
        self.seen.append(images.clone())
        images.sub_(self.mean).div_(50.0)  # in place, as the host does
        if images.dim() == 5:
            images = images.mean(dim=1)  # (B, T, C, H, W) -> (B, C, H, W)
        return self.proj(images.flatten(1))


class ListEvaluator:
    def reset(self):
        self.got = []

    def process(self, inputs, outputs):
        self.got.append((inputs, outputs))

    def evaluate(self):
        return None


@pytest.mark.parametrize("shape", [(3, 2, 4, 5), (3, 2, 2, 4, 5)])
def test_flip_test_averages_once_and_does_not_mutate(shape):
    torch.manual_seed(0)
    images = torch.rand(shape) * 255
    batch = {"images": images, "targets": torch.arange(3), "track_idx": torch.arange(3)}
    pristine = images.clone()
    c, h, w = shape[-3:]
    model = RecordingModel(c * h * w)
    ev = ListEvaluator()
    out = inference_on_dataset(model, [batch], ev, flip_test=True, progress=False)
    assert out == {}
    assert torch.equal(batch["images"], pristine), "the caller's batch was mutated"
    assert len(model.seen) == 2
    assert torch.equal(model.seen[0], pristine)
    assert torch.equal(model.seen[1], pristine.flip(-1))  # width flipped, not re-normalised

    def embed(x):  # float64 re-computation of the model
        x = (x.double() - 100.0) / 50.0
        if x.dim() == 5:
            x = x.mean(dim=1)
        return x.flatten(1) @ model.proj.weight.double().t()

    expected = (embed(pristine) + embed(pristine.flip(-1))) / 2
    (inputs, outputs), = ev.got
    assert inputs is batch
    torch.testing.assert_close(outputs.double(), expected, atol=1e-4, rtol=1e-5)
    assert model.training  # inference_context restored the mode


def test_no_flip_is_plain_forward():
    images = torch.rand(2, 3, 4, 6) * 255
    model = RecordingModel(3 * 4 * 6)
    ev = ListEvaluator()
    inference_on_dataset(model, [{"images": images}], ev, flip_test=False, progress=False)
    assert len(model.seen) == 1
    with torch.no_grad():
        ref = model.proj(((images - 100) / 50).flatten(1))
    torch.testing.assert_close(ev.got[0][1], ref)


# ------------------------------------------------------------------ pictures
def test_draw_rank_list_borders(tmp_path):
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 255, (20, 10, 3), dtype=np.uint8) for _ in range(5)]
    out = tmp_path / "row.png"
    canvas = draw_rank_list(frames, [frames[0], [frames[1], frames[2]]], [0.1, 0.7], [True, False], str(out), cell_size=(32, 16), border=3)
    img = cv2.cvtColor(cv2.imread(str(out)), cv2.COLOR_BGR2RGB)
    assert np.array_equal(img, canvas)
    strip_w = 4 * 16 + 2 * 3  # 4 query frames (max_query_frames) + borders
    first = strip_w + 12  # after the gap
    assert tuple(canvas[0, first]) == (0, 200, 0)  # correct: green
    second = first + 16 + 6 + 12 // 3
    assert tuple(canvas[0, second]) == (220, 0, 0)  # wrong: red


def test_evaluator_writes_rank_lists(tmp_path):
    pids, camids, clips, track_of = make_tracklets()
    frame_dir = tmp_path / "frames"
    frame_dir.mkdir()
    items = []
    for t in range(30):
        paths = []
        for f in range(2):
            p = frame_dir / f"t{t}_{f}.png"
            cv2.imwrite(str(p), np.full((16, 8, 3), t * 8, np.uint8))
            paths.append(str(p))
        items.append((tuple(paths), int(pids[t]), int(camids[t])))
    cfg = cfg_with(**{"TEST.VIS.ENABLED": True, "TEST.VIS.NUM_QUERIES": 3, "TEST.VIS.TOPK": 4})
    ev = VideoClipEvaluator(cfg, 6, 30, pids, camids, output_dir=str(tmp_path / "out"), items=items)
    feed(ev, clips, track_of)
    ev.evaluate()
    pngs = sorted((tmp_path / "out" / "rank_lists").glob("*.png"))
    assert len(pngs) == 3
    assert all(cv2.imread(str(p)) is not None for p in pngs)


def test_approximate_index_recall_reported_next_to_exact():
    pids, camids, clips, track_of = make_tracklets()
    cfg = cfg_with(**{"TEST.METRIC": "cosine", "TEST.RETRIEVAL.APPROX": "ivf", "TEST.RETRIEVAL.NLIST": 2,
                      "TEST.RETRIEVAL.NPROBE": 2})
    ev = VideoClipEvaluator(cfg, 6, 30, pids, camids)
    feed(ev, clips, track_of)
    got = ev.evaluate()
    assert got["ivf_recall@10"] == pytest.approx(100.0)  # nprobe == nlist: exhaustive
    exact = VideoClipEvaluator(cfg_with(**{"TEST.METRIC": "cosine"}), 6, 30, pids, camids)
    feed(exact, clips, track_of)
    assert {k: got[k] for k in exact.evaluate()} == exact.evaluate()
