"""The claims benchmark's protocol (benchmarks/claims): the verdict rule, sample statistics and
resumability (a saved (claim, row, seed) is not trained again), without training anything."""
import json
import math
import os

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
