"""The claims benchmark's protocol (benchmarks/claims): the verdict rule, sample statistics and
resumability (a saved (claim, row, seed) is not trained again), without training anything."""
import json
import math
import os
import shutil

import pytest

from benchmarks.claims import runner
from benchmarks.claims.claims import CLAIMS, get_claim
from benchmarks.claims.report import mean_std, verdict


def _records(claim, maps, extra=None):
    """``maps``: {row: [mAP per seed]}."""
    out = []
    for row, vals in maps.items():
        for seed, v in enumerate(vals):
            out.append({"row": row, "seed": seed, "mAP": v, "Rank-1": v / 2, "seconds": 1.0,
                        "diagnostics": {}, "extra": (extra or {}).get(row, [{}] * len(vals))[seed]})
    return out


def test_mean_and_sample_std():
    ms = mean_std([1.0, 2.0, 6.0])
    assert ms["mean"] == pytest.approx(3.0)
    assert ms["std"] == pytest.approx(math.sqrt(((1 - 3) ** 2 + (2 - 3) ** 2 + (6 - 3) ** 2) / 2))
    assert math.isnan(mean_std([4.0])["std"])


def test_holds_only_when_positive_in_every_seed():
    c = get_claim("mgre")
    good = verdict(c, _records(c, {"baseline": [10, 11, 12], "mgre_no_loc": [9, 9, 9], "mgre": [10.5, 11.5, 12.5]}))
    assert good["holds"]
    assert good["comparisons"][0]["paired_diff_mAP"] == pytest.approx([0.5, 0.5, 0.5])
    # a larger mean difference that is negative in one seed does not hold
    bad = verdict(c, _records(c, {"baseline": [10, 11, 12], "mgre_no_loc": [9, 9, 9], "mgre": [20, 21, 11.9]}))
    assert bad["comparisons"][0]["mean"] > 0 and not bad["holds"]
    # fewer than 3 seeds: not decided, never "holds"
    two = verdict(c, _records(c, {"baseline": [1, 1], "mgre_no_loc": [1, 1], "mgre": [5, 5]}))
    assert not two["holds"] and two["not_decided"]


def test_extra_check_must_pass_in_every_seed():
    c = get_claim("video_baseline")
    maps = {"avg": [1, 1, 1], "attention": [2, 2, 2]}
    below = {"att_on_corrupted": 0.2, "uniform_weight": 0.25}
    above = {"att_on_corrupted": 0.3, "uniform_weight": 0.25}
    assert verdict(c, _records(c, maps, {"attention": [below] * 3}))["holds"]
    v = verdict(c, _records(c, maps, {"attention": [below, above, below]}))
    assert not v["holds"] and v["checks"][0]["per_seed"] == [True, False, True]


def test_every_claim_is_well_formed():
    for c in CLAIMS:
        names = {r.name for r in c.rows}
        assert len(names) == len(c.rows)
        assert all(a in names and b in names for a, b in c.compare)
        assert all(ch in runner.EXTRA_CHECKS and runner.EXTRA_CHECKS[ch][0] in names for ch in c.checks)
        # the report names the granularity of every occluded-node check
        assert all(ch in runner.CHECK_GRANULARITY for ch in c.checks
                   if runner.EXTRA_CHECKS[ch][1] is runner.occluded_node_attention)
        assert c.statement and c.data["layout"]


def test_saved_results_are_skipped_and_stale_ones_redone(tmp_path, monkeypatch):
    claim = get_claim("video_baseline")
    row = claim.rows[0]
    calls = []

    class _Model:
        pass

    def fake_train(cfg, seed, backbone):
        calls.append(seed)
        os.makedirs(cfg.OUTPUT_DIR, exist_ok=True)
        return {"mAP": 10.0 + seed, "Rank-1": 5.0}, 0.1, _Model()

    monkeypatch.setattr(runner, "train_and_check", fake_train)
    monkeypatch.setattr(runner, "ensure_dataset", lambda data, cache: str(tmp_path / "root"))
    backbone = tmp_path / "bb.pth"
    backbone.write_bytes(b"x" * 10)
    out = str(tmp_path / "out")
    first = runner.run_one(claim, row, 1, "quick", out, str(tmp_path), str(backbone))
    again = runner.run_one(claim, row, 1, "quick", out, str(tmp_path), str(backbone))
    assert calls == [1] and again == first and first["mAP"] == 11.0
    path = runner.result_path(out, "quick", claim, row, 1)
    with open(path) as f:
        assert json.load(f)["key"] == first["key"]
    backbone.write_bytes(b"x" * 11)  # another backbone: the saved result is stale
    runner.run_one(claim, row, 1, "quick", out, str(tmp_path), str(backbone))
    assert calls == [1, 1]
    assert not os.path.exists(path + ".tmp")
    # an edited config file (same path, same overrides): stale too
    configs = tmp_path / "configs"
    shutil.copytree(os.path.dirname(os.path.dirname(runner.config_path(row))), configs)
    monkeypatch.setattr(runner, "REPO", str(tmp_path))
    runner.run_one(claim, row, 1, "quick", out, str(tmp_path), str(backbone))
    assert calls == [1, 1]  # the copy is the same config: the saved result is reused
    edited = configs / row.config
    text = edited.read_text()
    assert "  GAMMA: 0.1\n" in text
    edited.write_text(text.replace("  GAMMA: 0.1\n", "  GAMMA: 0.2\n"))
    runner.run_one(claim, row, 1, "quick", out, str(tmp_path), str(backbone))
    assert calls == [1, 1, 1]
    # a new config key at its default (e.g. a project adds an option): not stale
    from fastreid_ext.config import setup

    adders = setup.register_projects()

    def add_new_key(cfg):
        cfg.MODEL.SOME_NEW_OPTION = 0.5

    monkeypatch.setattr(setup, "register_projects", lambda: list(adders) + [add_new_key])
    runner.run_one(claim, row, 1, "quick", out, str(tmp_path), str(backbone))
    assert calls == [1, 1, 1]


def test_occluded_node_attention_reads_the_occluders_of_the_right_frames(tmp_path):
    """The MG-RAFA check's plumbing: test clips, their frames' marks and the node grid line up.
    Every occluded frame is repainted black inside its occluder box and white elsewhere, and a
    stand-in attention weighs each node by its brightness: the measure must then put much
    less than uniform weight on the occluded nodes and frames; the real model's uniform start
    must give exactly 1."""
    import dataclasses

    import cv2
    import torch
    import torch.nn.functional as F

    import fastreid_ext
    import mgrafa
    from fastreid.modeling import build_model
    from fastreid_ext.data.synthetic import generate
    from fastreid_ext.modeling.aggregation import AggregationOutput

    claim = get_claim("mgrafa")
    data = dict(claim.data, ids=6, cameras=2, min_len=4, max_len=5, part_occlusion=0.5, misalign=0.0)
    claim = dataclasses.replace(claim, data=data)
    root = tmp_path / "root"
    gen = dict(data)
    layout = gen.pop("layout")
    folder = os.path.join(str(root), runner.LAYOUT_DIRS[layout])
    generate(layout, folder, seed=0, **gen)
    with open(os.path.join(folder, "frame_marks.json")) as f:
        marks = json.load(f)
    occluded = {k: v["occluder"] for k, v in marks.items() if "occluder" in v and not v.get("corrupted")}
    assert occluded
    for rel, (x0, y0, x1, y1) in occluded.items():
        path = os.path.join(folder, rel)
        img = cv2.imread(path)
        img[:] = 255
        img[y0:y1, x0:x1] = 0
        cv2.imwrite(path, img)
    painted = 0
    for dirpath, _, files in os.walk(folder):  # every other frame all white
        for name in files:
            path = os.path.join(dirpath, name)
            if name.endswith((".jpg", ".png")) and os.path.relpath(path, folder) not in occluded:
                img = cv2.imread(path)
                img[:] = 255
                cv2.imwrite(path, img)
                painted += 1
    assert painted

    cfg = fastreid_ext.get_cfg()
    mgrafa.add_mgrafa_config(cfg)
    cfg.merge_from_list([
        "MODEL.META_ARCHITECTURE", "MGRAFANet", "MODEL.HEADS.NAME", "MGRAFAHead",
        "MODEL.BACKBONE.DEPTH", "18x", "MODEL.BACKBONE.FEAT_DIM", 512, "MODEL.BACKBONE.PRETRAIN", False,
        "MODEL.HEADS.NUM_CLASSES", 4, "MODEL.DEVICE", "cpu", "MODEL.MGRAFA.ATT_INIT", "uniform",
        "INPUT.SIZE_TRAIN", [64, 32], "INPUT.SIZE_TEST", [64, 32], "INPUT.VIDEO.SEQ_LEN", 4,
        "TEST.VIDEO.SEQ_LEN", 4, "TEST.VIDEO.MAX_CLIPS", 2, "DATASETS.ROOT", str(root),
        "DATASETS.TESTS", '("SyntheticMARS",)', "DATALOADER.NUM_WORKERS_TEST", 0])
    torch.manual_seed(0)
    model = build_model(cfg)
    real = runner.occluded_node_attention(model, cfg, str(root), claim)
    assert real["att_occluded_clips"] > 0
    assert real["att_occluded_nodes_g1"] == pytest.approx(1.0, abs=1e-6)

    def brightness_attention(images):  # (B, T, C, H, W) -> per group (B, 1, T, H_m, W_m)
        b, t = images.shape[:2]
        light = images.float().mean(dim=2)  # (B, T, H, W)
        out = []
        for hm, wm in model.heads.aggregation.sizes:
            cells = F.adaptive_avg_pool2d(light, (hm, wm)) + 1e-3  # (B, T, H_m, W_m)
            out.append((cells / cells.sum(dim=(1, 2, 3), keepdim=True))[:, None])
        return out

    model.frame_maps = lambda inputs: inputs["images"]
    model.heads.aggregation.forward = lambda maps: AggregationOutput(
        features=None, frame_weights=None, node_weights=brightness_attention(maps))
    fake = runner.occluded_node_attention(model, cfg, str(root), claim)
    assert fake["att_occluded_clips"] == real["att_occluded_clips"]
    # a node counts as occluded when its cell centre is in the box, so its cell may be partly
    # white (a 25-50 % occluder over a 2-column map): well below 1, not 0; misaligned marks
    # would give about 1
    assert fake["att_occluded_nodes_g1"] < 0.5 and fake["att_visible_nodes_g1"] > 1.0
    # frame level: a frame with a black box is darker than a clean (all white) one, at every
    # granularity, the 1x1 ones included; the uniform start gives exactly 1 to both
    last = len(model.heads.aggregation.sizes)
    for g in (1, last):
        assert fake[f"att_occluded_frames_g{g}"] < 1.0 < fake[f"att_clean_frames_g{g}"]
        assert real[f"att_occluded_frames_g{g}"] == pytest.approx(1.0, abs=1e-6)


def test_backbone_check_refuses_a_second_backbone_left_cold(tmp_path):
    """A row whose model holds a second complete backbone (FGReID's CNN_MARS) that did not get
    the pre-trained weights does not start as the others do: the check must refuse it."""
    import torch
    from torch import nn

    from benchmarks.claims.common import check_backbone_loaded

    def resnetish():
        block = nn.Module()
        block.conv1, block.conv2 = nn.Conv2d(3, 4, 3), nn.Conv2d(4, 4, 3)
        net = nn.Module()
        net.layer1 = nn.Sequential(block)
        return net

    pre = resnetish()
    path = str(tmp_path / "bb.pth")
    torch.save(pre.state_dict(), path)

    class TwoBackbones(nn.Module):
        def __init__(self):
            super().__init__()
            self.backbone, self.backbone_mars, self.head = resnetish(), resnetish(), nn.Linear(4, 2)

    m = TwoBackbones()
    with pytest.raises(RuntimeError, match="none of"):
        check_backbone_loaded(m, path)
    m.backbone.load_state_dict(pre.state_dict())
    with pytest.raises(RuntimeError, match="backbone_mars"):
        check_backbone_loaded(m, path)
    m.backbone_mars.load_state_dict(pre.state_dict())
    assert check_backbone_loaded(m, path) == 4
    # a partial copy (one block of the backbone's shape elsewhere, e.g. MGRe's FE module) is not a cold backbone
    one = nn.Module()
    one.backbone = resnetish()
    one.backbone.load_state_dict(pre.state_dict())
    one.fe = nn.Module()
    one.fe.conv1 = nn.Conv2d(3, 4, 3)
    assert check_backbone_loaded(one, path) == 2
