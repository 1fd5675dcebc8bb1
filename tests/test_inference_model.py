"""build_inference_model: config + weights -> eval model; the classifier's size comes from the
config, the run's saved config.yaml, the training datasets, or a placeholder (in that order)."""
import os

import pytest
import torch
from conftest import REPO

import fastreid_ext  # noqa: F401  (compat shims first)
from fastreid_ext.config import build_config
from fastreid_ext.engine import build_inference_model
from fastreid_ext.engine.inference_model import inference_num_classes

TINY = os.path.join(REPO, "tests", "configs", "tiny_video.yml")
TRAIN_IDS = 8  # conftest's tiny synthetic MARS: 8 train + 8 test identities


def _cfg(*opts):
    return build_config(TINY, list(opts))


def test_number_of_classes_sources_in_order(datasets_env, tmp_path, monkeypatch):
    weights = tmp_path / "run" / "model_final.pth"
    weights.parent.mkdir()
    weights.write_bytes(b"")
    assert inference_num_classes(_cfg("MODEL.HEADS.NUM_CLASSES", "5"), str(weights)) == (5, "config")
    # no run config: the training dataset's identities
    assert inference_num_classes(_cfg(), str(weights)) == (TRAIN_IDS, "the training datasets")
    (weights.parent / "config.yaml").write_text("MODEL:\n  HEADS:\n    NUM_CLASSES: 7\n")
    assert inference_num_classes(_cfg(), str(weights)) == (7, "the run's config.yaml")
    monkeypatch.setenv("FASTREID_DATASETS", str(tmp_path / "nothing_here"))
    assert inference_num_classes(_cfg(), None) == (1, "placeholder")


def test_loads_the_run_weights_classifier_included(tmp_path, monkeypatch):
    monkeypatch.setenv("FASTREID_DATASETS", str(tmp_path / "nothing_here"))
    torch.manual_seed(0)
    trained, _ = build_inference_model(_cfg("MODEL.HEADS.NUM_CLASSES", "6"), allow_untrained=True)
    run = tmp_path / "run"
    run.mkdir()
    torch.save({"model": trained.state_dict()}, run / "model_final.pth")
    (run / "config.yaml").write_text("MODEL:\n  HEADS:\n    NUM_CLASSES: 6\n")
    torch.manual_seed(1)
    model, cfg = build_inference_model(_cfg("MODEL.WEIGHTS", str(run / "model_final.pth")))
    assert not model.training and cfg.MODEL.HEADS.NUM_CLASSES == 6 and cfg.is_frozen()
    assert cfg.MODEL.BACKBONE.PRETRAIN is False
    got, ref = model.state_dict(), trained.state_dict()
    assert got.keys() == ref.keys()
    for k in ref:  # every tensor, the 6-class classifier included, is the checkpoint's
        assert torch.equal(got[k], ref[k]), k


def test_missing_or_absent_weights(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        build_inference_model(_cfg(), str(tmp_path / "nope.pth"))
    with pytest.raises(ValueError, match="no weights"):
        build_inference_model(_cfg("MODEL.HEADS.NUM_CLASSES", "3"))


def test_class_count_from_the_checkpoint_without_run_config_or_dataset(tmp_path, monkeypatch, caplog):
    """Weights copied away from their run (no config.yaml) and no dataset on disk: the classifier's
    size is read from the checkpoint, every tensor loads, and nothing is logged about datasets."""
    monkeypatch.setenv("FASTREID_DATASETS", str(tmp_path / "nothing_here"))
    torch.manual_seed(0)
    trained, _ = build_inference_model(_cfg("MODEL.HEADS.NUM_CLASSES", "11"), allow_untrained=True)
    weights = tmp_path / "copied.pth"
    torch.save({"model": trained.state_dict()}, weights)
    assert inference_num_classes(_cfg(), str(weights)) == (11, "the checkpoint's classifier")
    with caplog.at_level("INFO"):
        model, cfg = build_inference_model(_cfg("MODEL.WEIGHTS", str(weights)))
    assert cfg.MODEL.HEADS.NUM_CLASSES == 11
    for k, v in trained.state_dict().items():
        assert torch.equal(model.state_dict()[k], v), k
    assert not [r for r in caplog.records if "dataset" in r.getMessage().lower()]
