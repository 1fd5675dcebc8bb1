"""Records carry their provenance (``docs/reliability.md``): a split is reused only when it was
made with the requested settings, a features file only resumes from its own input, an
``--output`` folder is an error, a failed extraction leaves no file."""
import json
import os
import os.path as osp

import numpy as np
import pytest
import torch
from conftest import REPO
from test_datasets import load_run_splits
from test_reliability_deploy import FAKE_TRAIN_NET, _write_png, extractor  # noqa: F401 (fixture)

import fastreid_ext  # noqa: F401  (compat shims first)
from fastreid_ext.config import build_config
from fastreid_ext.deploy.features_file import load_features
from fastreid_ext.deploy.inputs import collect_inputs

TINY = osp.join(REPO, "tests", "configs", "tiny_video.yml")


# ---------------------------------------------------------------------------- run_splits --skip-done
def _finished_split(base, split, opts):
    folder = base / f"split_{split}"
    folder.mkdir(parents=True)
    (folder / "results.json").write_text(json.dumps({"Rank-1": 1.0, "mAP": 2.0, "complete": True}))
    cfg = build_config(TINY, [*opts, "DATASETS.SPLIT", str(split), "OUTPUT_DIR", str(folder)])
    (folder / "config.yaml").write_text(cfg.dump())


def test_skip_done_does_not_reuse_a_split_made_with_other_settings(tmp_path):
    run_splits = load_run_splits()
    fake = tmp_path / "fake_train_net.py"
    fake.write_text(FAKE_TRAIN_NET)
    base = tmp_path / "out"
    _finished_split(base, 0, ["SOLVER.MAX_EPOCH", "30", "SOLVER.BASE_LR", "0.001"])
    cmd = ["--config-file", TINY, "--splits", "0", "--skip-done", "--train-script", str(fake)]
    wanted = ["SOLVER.MAX_EPOCH", "60", "SOLVER.BASE_LR", "0.01", "OUTPUT_DIR", str(base)]
    with pytest.raises(SystemExit, match=r"SOLVER.BASE_LR: 0.001 -> 0.01; SOLVER.MAX_EPOCH: 30 -> 60"):
        run_splits.main(cmd + wanted)
    assert not (base / "split_0" / "argv.json").exists() and not (base / "splits_summary.json").exists()
    # the same settings: reused
    out = run_splits.main(cmd + ["SOLVER.MAX_EPOCH", "30", "SOLVER.BASE_LR", "0.001", "OUTPUT_DIR", str(base)])
    assert out["results"] == [{"Rank-1": 1.0, "mAP": 2.0}] and not (base / "split_0" / "argv.json").exists()
    # --overwrite: trained again (train_net.py moves the old run aside)
    out = run_splits.main(cmd[:4] + ["--skip-done", "--overwrite", "--train-script", str(fake)] + wanted)
    argv = json.loads((base / "split_0" / "argv.json").read_text())
    assert "--overwrite" in argv and out["results"] == [{"Rank-1": 50.0, "mAP": 40.0}]


def test_skip_done_does_not_reuse_a_split_without_its_config(tmp_path):
    run_splits = load_run_splits()
    fake = tmp_path / "fake_train_net.py"
    fake.write_text(FAKE_TRAIN_NET)
    base = tmp_path / "out"
    _finished_split(base, 0, [])
    os.remove(base / "split_0" / "config.yaml")
    with pytest.raises(SystemExit, match="no .*config.yaml"):
        run_splits.main(["--config-file", TINY, "--splits", "0", "--skip-done", "--train-script", str(fake),
                         "OUTPUT_DIR", str(base)])


# ---------------------------------------------------------------------------- features files
def _query_gallery(tmp_path):
    """The issue's case: query and gallery lists over one image folder."""
    for i in range(4):
        _write_png(tmp_path / "imgs" / f"{i}.png", i)
    (tmp_path / "query.txt").write_text("imgs/0.png\nimgs/1.png\n")
    (tmp_path / "gallery.txt").write_text("imgs/2.png\nimgs/3.png\n")
    return str(tmp_path / "query.txt"), str(tmp_path / "gallery.txt")


def test_a_features_file_does_not_resume_from_another_input(extractor, tmp_path):  # noqa: F811
    query, gallery = _query_gallery(tmp_path)
    out = str(tmp_path / "feats.npz")
    first = extractor.extract(collect_inputs(query), out, progress=False, input_spec=query).features
    assert load_features(out).meta["input"]["list"] == osp.abspath(query)
    with pytest.raises(ValueError, match="query.txt.*gallery.txt.*--no-resume"):
        extractor.extract(collect_inputs(gallery), out, progress=False, input_spec=gallery)
    kept = load_features(out)
    assert kept.names == first.names  # no gallery item mixed into the query file
    np.testing.assert_array_equal(kept.embeddings, first.embeddings)


def test_a_features_file_does_not_resume_with_items_its_input_lacks(extractor, tmp_path):  # noqa: F811
    """A file without an input record (or one whose input lost items) is not silently mixed."""
    for i in range(3):
        _write_png(tmp_path / "g" / f"{i}.png", i)
    out = str(tmp_path / "f.npz")
    extractor.extract(collect_inputs(str(tmp_path / "g")), out, progress=False)
    os.remove(tmp_path / "g" / "2.png")
    with pytest.raises(ValueError, match="'2.png' not in this input"):
        extractor.extract(collect_inputs(str(tmp_path / "g")), out, progress=False)
    assert len(load_features(out)) == 3


def test_an_output_folder_is_an_error(extractor, tmp_path):  # noqa: F811
    _write_png(tmp_path / "g" / "0.png", 0)
    (tmp_path / "feats").mkdir()
    with pytest.raises(ValueError, match="is a folder"):
        extractor.extract(collect_inputs(str(tmp_path / "g")), str(tmp_path / "feats"), progress=False)
    assert sorted(os.listdir(tmp_path)) == ["feats", "g"]  # no sibling feats.npz


def test_a_failed_extraction_leaves_no_file(extractor, tmp_path, monkeypatch):  # noqa: F811
    _write_png(tmp_path / "g" / "0.png", 0)
    out = str(tmp_path / "f.npz")

    def broken(*a, **k):
        raise RuntimeError("model failure")
        yield  # pragma: no cover

    monkeypatch.setattr(type(extractor), "iter_embeddings", broken)
    with pytest.raises(RuntimeError, match="model failure"):
        extractor.extract(collect_inputs(str(tmp_path / "g")), out, progress=False)
    assert not osp.exists(out)


def test_an_extraction_without_a_readable_item_writes_no_file(extractor, tmp_path):  # noqa: F811
    (tmp_path / "g").mkdir()
    (tmp_path / "g" / "0.png").write_bytes(b"not a png")
    out = str(tmp_path / "f.npz")
    with pytest.raises(ValueError, match="no item of the input could be embedded.*0.png"):
        extractor.extract(collect_inputs(str(tmp_path / "g")), out, progress=False)
    assert not osp.exists(out)


def test_extract_cli_reports_an_output_folder_in_one_line(extractor, tmp_path, capsys):  # noqa: F811
    from fastreid_ext.commands.errors import run_cli
    from fastreid_ext.deploy.cli import extract_main

    _write_png(tmp_path / "g" / "0.png", 0)
    weights = tmp_path / "w.pth"
    torch.save({"model": extractor.model.state_dict()}, weights)
    (tmp_path / "out").mkdir()
    rc = run_cli(lambda: extract_main(["--input", str(tmp_path / "g"), "--output", str(tmp_path / "out"),
                                       "--config-file", TINY, "--weights", str(weights), "--no-progress"]))
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "is a folder" in err[0]
