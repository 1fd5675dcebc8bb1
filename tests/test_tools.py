"""Small user tools: chance level of a random ranking, results table."""
import importlib.util
import json
import os

import pytest
from conftest import REPO


def _load(name):
    spec = importlib.util.spec_from_file_location(name, os.path.join(REPO, "tools", f"{name}.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_chance_level_matches_the_expected_random_rank():
    chance = _load("chance_level")
    # one query, a gallery of N items from another camera, exactly one of them a match: the match
    # lands uniformly at rank r in 1..N, so E[AP] = H_N / N and E[Rank-1] = 1 / N
    n = 8
    g_pids = [1] + [2 + i for i in range(n - 1)]
    res = chance.chance_metrics([1], g_pids, [0], [1] * n, seeds=4000)
    harmonic = sum(1.0 / r for r in range(1, n + 1))
    assert res["mAP"] == pytest.approx(100 * harmonic / n, abs=1.5)
    assert res["Rank-1"] == pytest.approx(100 / n, abs=1.5)


def test_show_results_table(tmp_path, capsys):
    show = _load("show_results")
    path = tmp_path / "results.json"
    path.write_text(json.dumps({"Rank-1": 50.0, "Rank-5": 75.0, "Rank-10": 80.0, "Rank-20": 90.0,
                                "mAP": 41.234, "mINP": 20.0, "dataset": "X"}))
    show.main([str(path)])
    out = capsys.readouterr().out
    assert "41.23" in out and "| X " in out and "mINP" in out
    with pytest.raises(SystemExit):
        show.main([])


def test_show_results_image_and_video_sets(tmp_path, capsys):
    """An image set reports the host's keys (no Rank-20): its cell is '-', never 'nan', and a
    column nobody reports is left out."""
    show = _load("show_results")
    path = tmp_path / "results.json"
    path.write_text(json.dumps({"Market1501": {"Rank-1": 60.0, "Rank-5": 80.0, "Rank-10": 85.0, "mAP": 40.0},
                                "MARS": {"Rank-1": 50.0, "Rank-5": 70.0, "Rank-10": 75.0, "Rank-20": 90.0,
                                         "mAP": 30.0},
                                "complete": True}))
    show.main([str(path)])
    out = capsys.readouterr().out
    assert "nan" not in out and "mINP" not in out and "Rank-20" in out
    market = next(line for line in out.splitlines() if "Market1501" in line)
    assert [c.strip() for c in market.strip("|").split("|")] == ["Market1501", "60.00", "80.00", "85.00", "-",
                                                                   "40.00"]
