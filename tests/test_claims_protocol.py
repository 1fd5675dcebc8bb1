"""The claims benchmark's protocol (benchmarks/claims): resumability (a saved (claim, row, seed)
is not trained again), the mechanism checks' plumbing and the backbone check, without training."""
import json
import os
import shutil

import pytest

from benchmarks.claims import runner
from benchmarks.claims.claims import get_claim


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
    data = dict(claim.data, ids=6, cameras=2, frame_size=(64, 32), min_len=4, max_len=5, part_occlusion=0.5,
                misalign=0.0)
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
    from mgrafa.claims_checks import occluded_node_attention

    def measure():
        return occluded_node_attention(model, lambda: runner.marked_test_clips(model, cfg, str(root), claim), data)

    real = measure()
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
    fake = measure()
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


def _fake_training(calls):
    """A stand-in for train + test: writes ``model_final.pth`` holding (row folder, seed, call
    number) and remembers what each run started from."""
    def fake_train(cfg, seed, backbone):
        row = os.path.basename(os.path.dirname(cfg.OUTPUT_DIR))
        starts = {}
        for key, value in (("MODEL.WEIGHTS", cfg.MODEL.WEIGHTS), ("MARS_WEIGHTS", cfg.MODEL.FGREID.MARS_WEIGHTS)):
            if value and os.path.isfile(value):
                with open(value) as f:
                    starts[key] = f.read()
        calls.append((row, seed, starts))
        os.makedirs(cfg.OUTPUT_DIR, exist_ok=True)
        with open(os.path.join(cfg.OUTPUT_DIR, "model_final.pth"), "w") as f:
            f.write(f"{row}/seed{seed}/call{len(calls)}")
        return {"mAP": 10.0 + len(calls), "Rank-1": 5.0}, 0.1, object()
    return fake_train


def _setup(tmp_path, monkeypatch, calls):
    monkeypatch.setattr(runner, "train_and_check", _fake_training(calls))
    monkeypatch.setattr(runner, "ensure_dataset", lambda data, cache: str(tmp_path / "root"))
    backbone = tmp_path / "bb.pth"
    backbone.write_bytes(b"x" * 10)
    return str(tmp_path / "out"), str(backbone)


def test_staged_rows_start_from_their_source_checkpoint_of_the_same_seed(tmp_path, monkeypatch):
    """FGReID's rows: stage 1 trained once per seed; the continued baseline (MODEL.WEIGHTS) and
    FGReID (MODEL.FGREID.MARS_WEIGHTS) start from that seed's stage-1 checkpoint; a stage 1 run
    again makes both run again; a missing checkpoint makes the source run again."""
    calls = []
    out, backbone = _setup(tmp_path, monkeypatch, calls)
    claim = get_claim("fgreid")
    assert [r.name for r in runner.ordered_rows(claim)][0] == "stage1"
    with pytest.raises(RuntimeError, match="source row 'stage1'"):
        runner.run_one(claim, claim.row("fgreid"), 0, "quick", out, str(tmp_path), backbone)
    runner.run_claim(claim, [0, 1], "quick", out, str(tmp_path), backbone, log=lambda s: None)
    started = {(row, seed): s for row, seed, s in calls}
    for seed, call in ((0, 1), (1, 4)):
        stage = f"stage1/seed{seed}/call{call}"
        assert started[("stage1", seed)] == {}
        assert started[("video_baseline", seed)] == {"MODEL.WEIGHTS": stage}
        assert started[("fgreid", seed)] == {"MARS_WEIGHTS": stage}
    assert len(calls) == 6
    runner.run_claim(claim, [0, 1], "quick", out, str(tmp_path), backbone, log=lambda s: None)
    assert len(calls) == 6  # all saved: nothing trained
    os.remove(runner.checkpoint_path(out, "quick", claim, claim.row("stage1"), 1))
    runner.run_claim(claim, [0, 1], "quick", out, str(tmp_path), backbone, log=lambda s: None)
    assert [(r, s) for r, s, _ in calls[6:]] == [("stage1", 1), ("video_baseline", 1), ("fgreid", 1)]
    assert calls[7][2] == {"MODEL.WEIGHTS": "stage1/seed1/call7"}


def test_unfinished_or_other_design_records_are_not_counted(tmp_path, monkeypatch):
    """A record without ``complete: true`` is trained again and never counted; a complete
    record of another design is not counted by the report."""
    import json as _json

    from benchmarks.claims.report import complete_records, verdict

    calls = []
    out, backbone = _setup(tmp_path, monkeypatch, calls)
    claim = get_claim("mgre")
    runner.run_claim(claim, [0, 1], "quick", out, str(tmp_path), backbone, log=lambda s: None)
    recs = [_json.load(open(runner.result_path(out, "quick", claim, r, s))) for r in claim.rows for s in (0, 1)]
    assert len(complete_records(claim, recs, "quick")) == 8
    assert verdict(claim, recs, "quick")["seeds"] == [0, 1]
    path = runner.result_path(out, "quick", claim, claim.row("mgre"), 1)
    unfinished = dict(recs[5], complete=False)
    with open(path, "w") as f:
        _json.dump(unfinished, f)
    recs[5] = unfinished
    v = verdict(claim, recs, "quick")
    assert v["seeds"] == [0] and v["comparisons"][0]["n"] == 1
    other = [dict(r, design="another") for r in recs]
    assert complete_records(claim, other, "quick") == []
    n = len(calls)
    runner.run_one(claim, claim.row("mgre"), 1, "quick", out, str(tmp_path), backbone)
    assert len(calls) == n + 1 and _json.load(open(path))["complete"] is True


def test_list_names_each_claims_design(capsys):
    from benchmarks.claims.__main__ import main
    from benchmarks.claims.claims import CLAIMS, expected_test_size

    assert main(["--list"]) == 0
    text = capsys.readouterr().out
    for c in CLAIMS:
        block = text[text.index(f"\n{c.name}  ["):]
        block = block[:block.index("\n\n")] if "\n\n" in block else block
        assert c.statement in block
        for comp in c.comparisons:
            assert comp.source in block
            if comp.sesoi is not None:
                assert f"SESOI {comp.sesoi:+.1f} mAP" in block
        assert all(f"row {r.name}:" in block for r in c.rows)
        size = expected_test_size(c.data)
        assert f"{size['test_ids']} test ids, {size['queries']} queries" in block
        assert f"seeds 0..{c.seeds - 1};" in block and f"input {c.size[0]}x{c.size[1]}" in block


def test_expected_test_sizes_meet_the_design():
    """Every claim tests on >= 200 test ids and >= 600 queries, FGPose on FGPR's 358 ids with
    100 test ids per split (expected values of the generator's plan)."""
    from benchmarks.claims.claims import CLAIMS, expected_test_size

    for c in CLAIMS:
        size = expected_test_size(c.data)
        if c.data["layout"] == "fgpr":
            assert c.data["ids"] == 358 and size["test_ids"] == 100 and c.protocol == "fgpr"
        else:
            assert size["test_ids"] >= 200 and size["queries"] >= 600, c.name
        assert not (c.name.startswith("mgrafa") or c.name.startswith("fgpose")) or c.size[0] >= 128


def test_plan_scales_measured_times_and_states_unreachable_mde(tmp_path):
    """--plan: iterations = epochs x (training items // batch), seconds = iterations x s/iteration
    + evaluations x test items x s/item; a comparison whose MDE exceeds its SESOI names the seeds
    it needs."""
    from benchmarks.claims import plan
    from benchmarks.claims.claims import expected_test_size
    from benchmarks.claims.common import write_json_atomic
    from benchmarks.claims.stats import mde, seeds_for_mde

    claim = get_claim("video_baseline")
    key = plan.timing_key(claim)
    write_json_atomic(plan.timing_path(str(tmp_path), claim.name), {
        r.name: {"cpu_s_per_iter": 0.5, "eval_cpu_s_per_item": 0.01, "wall_s_per_iter": 1.5, "load_average": 3.0,
                 "threads": 1, "design": key}
        for r in claim.rows})
    est = plan.estimate(claim, plan._read_timings(str(tmp_path)))
    size = expected_test_size(claim.data)
    iters = claim.epochs * (size["train_items"] // 16)
    assert est["rows"]["avg"]["iterations"] == iters
    assert est["rows"]["avg"]["seconds"] == pytest.approx(iters * 0.5 + size["test_items"] * 0.01)
    points = claim.epochs // runner.curve_period(claim.epochs)
    assert est["rows"][claim.curve_row]["seconds"] == pytest.approx(iters * 0.5 + points * size["test_items"] * 0.01)
    text = plan.plan_text([claim], str(tmp_path), str(tmp_path / "out"))
    sd = plan.PRIOR_SD[claim.name]
    assert mde(sd, claim.seeds) > 1.7
    assert f"needs {seeds_for_mde(sd, 1.7)} seeds" in text and "load average 3.0-3.0" in text
    assert plan.estimate(get_claim("mgre"), plan._read_timings(str(tmp_path))) is None  # not probed


def test_learning_curve_reads_the_evaluations_and_adds_the_final_one(tmp_path):
    """The host's writer logs every evaluation but the last (written before it, at the same
    iteration): the curve takes the logged ones and the run's final result at the last
    iteration; the report's plateau test compares the last quarter's move with the half-width."""
    from benchmarks.claims.report import plateau

    lines = [{"iteration": i, "total_loss": 1.0} for i in range(12)]
    lines[3]["mAP"], lines[3]["Rank-1"] = 10.0, 20.0
    lines[7]["mAP"], lines[7]["Rank-1"] = 30.0, 40.0
    (tmp_path / "metrics.json").write_text("".join(json.dumps(x) + "\n" for x in lines))
    curve = runner.learning_curve(str(tmp_path), {"mAP": 34.0, "Rank-1": 50.0})
    assert [(p["iteration"], p["mAP"]) for p in curve] == [(4, 10.0), (8, 30.0), (12, 34.0)]
    # last quarter: 12 -> 9 iterations; mAP at 9 interpolated 30 + 4 x 1/4 = 31: move +3
    p = plateau([curve], half_width=5.0)
    assert p["mean_move"] == pytest.approx(3.0) and p["plateau"] is True
    assert plateau([curve], half_width=2.0)["plateau"] is False


def test_design_key_follows_what_moves_a_run(monkeypatch):
    """The key the report filters on changes with a row's settings, the epochs, the runner's
    added settings and the mode, and not with the statement or the seeds."""
    import dataclasses

    claim = get_claim("fgreid")
    key = runner.design_key(claim, "full")
    assert runner.design_key(dataclasses.replace(claim, statement="x", seeds=9), "full") == key
    assert runner.design_key(dataclasses.replace(claim, epochs=claim.epochs + 1), "full") != key
    rows = (dataclasses.replace(claim.rows[0], opts=("MODEL.X", "1")),) + claim.rows[1:]
    assert runner.design_key(dataclasses.replace(claim, rows=rows), "full") != key
    assert runner.design_key(claim, "quick") != key
    real = runner.budget_opts
    monkeypatch.setattr(runner, "budget_opts", lambda *a: real(*a) + ["SOLVER.SCHED", "CosineAnnealingLR"])
    assert runner.design_key(claim, "full") != key
