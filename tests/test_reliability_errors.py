"""Crashes become one-line errors naming the file (``docs/reliability.md``): each test feeds
the damaged input a user could have and checks the message (and that nothing is lost)."""
import importlib.util
import json
import logging
import os
import shutil

import numpy as np
import pytest
import torch
from conftest import REPO
from scipy.io import loadmat, savemat

import fastreid_ext  # noqa: F401  (compat shims first)
from fastreid_ext.commands.errors import run_cli
from fastreid_ext.engine.checkpoint import AtomicCheckpointer


def _tool(name):
    spec = importlib.util.spec_from_file_location(f"tool_{name}", os.path.join(REPO, "tools", f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_transposed_track_info_names_its_file(tiny_datasets_root, tmp_path):
    from fastreid_ext.data.datasets.synthetic import SyntheticMARS

    root = tmp_path / "data"
    shutil.copytree(tiny_datasets_root, root)
    path = root / "synthetic" / "mars" / "info" / "tracks_test_info.mat"
    rows = loadmat(str(path))["track_test_info"]
    savemat(str(path), {"track_test_info": rows.T})  # (4, N): the rows are columns
    with pytest.raises(ValueError, match=r"tracks_test_info.mat'.*shape \(4, \d+\).*transposed") as e:
        SyntheticMARS(root=str(root))
    assert "query_IDX" not in str(e.value)


def test_last_checkpoint_that_is_not_utf8_resumes_from_the_newest_checkpoint(tmp_path, caplog):
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    ck = AtomicCheckpointer(model, str(tmp_path))
    ck.save("model_0000", epoch=0)
    with torch.no_grad():
        model.weight.add_(1.0)
    ck.save("model_0001", epoch=1)
    os.utime(tmp_path / "model_0000.pth", (1, 1))  # older
    saved = model.weight.detach().clone()
    (tmp_path / "last_checkpoint").write_bytes(b"\xff\xfe\x00garbage")
    fresh = torch.nn.Linear(3, 2)
    with caplog.at_level(logging.WARNING):
        data = AtomicCheckpointer(fresh, str(tmp_path)).resume_or_load("", resume=True)
    assert data["epoch"] == 1 and torch.equal(fresh.weight, saved)
    assert "last_checkpoint" in caplog.text and "damaged" in caplog.text


def test_last_checkpoint_not_utf8_without_checkpoints_is_an_error(tmp_path):
    (tmp_path / "last_checkpoint").write_bytes(b"\xff\xfe")
    with pytest.raises(ValueError, match="last_checkpoint.*damaged.*no .pth"):
        AtomicCheckpointer(torch.nn.Linear(3, 2), str(tmp_path)).resume_or_load("", resume=True)


def test_show_results_reads_a_run_folder_and_flags_incomplete_results(tmp_path, capsys):
    show = _tool("show_results")
    (tmp_path / "results.json").write_text(json.dumps({"mAP": 12.5, "Rank-1": 20.0, "dataset": "X",
                                                       "complete": False}))
    assert show.main([str(tmp_path)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("INCOMPLETE") and "results.json" in out[0]
    assert any("12.50" in ln for ln in out)
    (tmp_path / "results.json").write_text(json.dumps({"mAP": 12.5, "dataset": "X", "complete": True}))
    assert show.main([str(tmp_path / "results.json")]) == 0
    assert "INCOMPLETE" not in capsys.readouterr().out


@pytest.mark.parametrize("content, words", [(None, "does not exist"), ('{"mAP": 1', "truncated or not JSON"),
                                            ("[1, 2]", "not a results file")])
def test_show_results_bad_file_is_one_line_exit_2(tmp_path, capsys, content, words):
    show = _tool("show_results")
    if content is not None:
        (tmp_path / "results.json").write_text(content)
    assert show.main([str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and words in err[0] and "results.json" in err[0]


def test_max_clips_zero_means_all_clips(datasets_env, tmp_path, monkeypatch):
    from fastreid_ext.config import build_config, validate_config
    from fastreid_ext.data.clip_sampler import dense_clips
    from fastreid_ext.engine import Trainer

    cfg = build_config(os.path.join(REPO, "tests", "configs", "tiny_video.yml"),
                       ["TEST.VIDEO.MAX_CLIPS", "0", "OUTPUT_DIR", str(tmp_path)])
    validate_config(cfg)  # accepted (before: "must be an int >= 1")
    assert len(dense_clips(23, 4, cfg.TEST.VIDEO.MAX_CLIPS)) == 6  # ceil(23 / 4): every clip
    with pytest.raises(ValueError, match="MAX_CLIPS must be an int >= 0"):
        Trainer(build_config(os.path.join(REPO, "tests", "configs", "tiny_video.yml"),
                             ["TEST.VIDEO.MAX_CLIPS", "-1", "OUTPUT_DIR", str(tmp_path)]))


def test_build_index_checks_the_output_before_building(tmp_path, monkeypatch, capsys):
    from fastreid_ext.deploy import cli, features_file

    def no_loading(*a, **k):
        raise AssertionError("features were loaded before the output path was checked")

    monkeypatch.setattr(features_file, "load_features", no_loading)
    (tmp_path / "idx").write_text("a file where the index folder should go")
    rc = run_cli(lambda: cli.build_index_main(["--features", str(tmp_path / "g.npz"),
                                                   "--index", str(tmp_path / "idx")]))
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "is a file" in err[0] and "idx" in err[0]


def test_hash_mismatch_names_each_side_with_its_own_hash(tmp_path):
    from fastreid_ext.deploy.features_file import ConfigHashMismatch, FeaturesFile, save_features
    from fastreid_ext.deploy.gallery_index import GalleryIndex
    from fastreid_ext.deploy.query import query_features

    def feats(h):
        return FeaturesFile(np.eye(3, dtype=np.float32), ["a", "b", "c"], h, meta={"metric": "cosine"})

    index = GalleryIndex.build(feats("1111111111111111"), "flat")
    q = save_features(str(tmp_path / "q.npz"), feats("2222222222222222"))
    with pytest.raises(ConfigHashMismatch) as e:
        query_features(index, q)
    msg = str(e.value)
    # the query file has the query's hash, the index has the index's (before: "the model in use")
    assert msg.index("q.npz") < msg.index("2222222222222222") < msg.index("gallery index") < \
        msg.index("1111111111111111")


def test_export_onnx_to_a_folder_is_refused_before_building(tmp_path, monkeypatch):
    from fastreid_ext.deploy import extractor, onnx_export

    def no_model(*a, **k):
        raise AssertionError("the model was built before the output was checked")

    monkeypatch.setattr(extractor.FeatureExtractor, "from_files", no_model)
    with pytest.raises(ValueError, match="is a folder; name the .onnx file"):
        onnx_export.export_from_files("cfg.yml", "w.pth", str(tmp_path))


def test_build_index_with_one_features_file_twice_names_it(tmp_path, capsys):
    from fastreid_ext.deploy import cli

    rc = run_cli(lambda: cli.build_index_main(["--features", str(tmp_path / "g.npz"), str(tmp_path / "g.npz"),
                                                   "--index", str(tmp_path / "idx")]))
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "more than once" in err[0] and "g.npz" in err[0]
