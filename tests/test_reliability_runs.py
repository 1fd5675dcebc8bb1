"""A run's folder has an owner (``docs/reliability.md``): a new run refuses a folder holding a
run unless ``--overwrite`` (which moves it aside), ``--resume`` refuses settings it cannot honour
before writing anything and applies the ones it can (the optimizer's learning rate included).

Runs go through ``tools/train_net.py``'s ``cli`` in-process on the tiny synthetic MARS set."""
import hashlib
import importlib.util
import math
import os
import shutil

import pytest
import torch
from conftest import REPO, TINY_MARS

import fastreid_ext  # noqa: F401  (compat shims first)
from fastreid_ext.engine.checkpoint import ResumeMismatch
from fastreid_ext.engine.run_folder import RunFolderError, compare_configs, holds_run

TINY = os.path.join(REPO, "tests", "configs", "tiny_video.yml")
COSINE = ["SOLVER.SCHED", "CosineAnnealingLR", "SOLVER.ETA_MIN_LR", "0.0", "SOLVER.OPT", "SGD",
          "SOLVER.MOMENTUM", "0.0", "SOLVER.BASE_LR", "0.001"]


@pytest.fixture(scope="module")
def train_net():
    spec = importlib.util.spec_from_file_location("train_net_round2", os.path.join(REPO, "tools", "train_net.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _digests(folder):
    out = {}
    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name)
        if os.path.isfile(path) and not name.endswith(".lock"):
            with open(path, "rb") as f:
                out[name] = hashlib.sha256(f.read()).hexdigest()
    return out


@pytest.fixture(scope="module")
def finished(train_net, tiny_datasets_root, tmp_path_factory):
    """A finished 2-epoch cosine run (one iteration per epoch)."""
    old = os.environ.get("FASTREID_DATASETS")
    os.environ["FASTREID_DATASETS"] = tiny_datasets_root
    out = str(tmp_path_factory.mktemp("runs") / "run")
    try:
        train_net.cli(["--config-file", TINY, *COSINE, "SOLVER.MAX_EPOCH", "2", "OUTPUT_DIR", out])
    finally:
        if old is None:
            os.environ.pop("FASTREID_DATASETS")
        else:
            os.environ["FASTREID_DATASETS"] = old
    return out


def _copy(src, dst):
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("*.lock"))
    return str(dst)


def test_a_new_run_refuses_a_folder_holding_a_finished_run(train_net, finished, datasets_env, tmp_path):
    out = _copy(finished, tmp_path / "run")
    before = _digests(out)
    assert holds_run(out) and "model_final.pth" in before
    with pytest.raises(RunFolderError, match="--resume.*--overwrite"):
        train_net.cli(["--config-file", TINY, *COSINE, "SOLVER.MAX_EPOCH", "1", "OUTPUT_DIR", out])
    assert _digests(out) == before  # model_final.pth, results.json, config.yaml, log.txt untouched


def test_a_new_run_refuses_an_unfinished_run_too(train_net, finished, datasets_env, tmp_path):
    out = _copy(finished, tmp_path / "run")
    os.remove(os.path.join(out, "model_final.pth"))
    with open(os.path.join(out, "last_checkpoint"), "w") as f:
        f.write("model_0000.pth")
    before = _digests(out)
    with pytest.raises(RunFolderError, match="unfinished"):
        train_net.cli(["--config-file", TINY, *COSINE, "SOLVER.MAX_EPOCH", "1", "OUTPUT_DIR", out])
    assert _digests(out) == before


def test_overwrite_moves_the_old_run_aside(train_net, finished, datasets_env, tmp_path):
    out = _copy(finished, tmp_path / "run")
    before = _digests(out)
    train_net.cli(["--config-file", TINY, "--overwrite", *COSINE, "SOLVER.MAX_EPOCH", "1", "OUTPUT_DIR", out])
    aside = [d for d in os.listdir(tmp_path) if d.startswith("run.old-")]
    assert len(aside) == 1
    assert _digests(os.path.join(tmp_path, aside[0])) == before  # every old file, byte for byte
    assert os.path.isfile(os.path.join(out, "model_final.pth"))
    saved = torch.load(os.path.join(out, "model_final.pth"), map_location="cpu", weights_only=False)
    assert saved["epoch"] == 0  # the new 1-epoch run


@pytest.mark.parametrize("opts, key", [
    (["INPUT.SIZE_TRAIN", "[64, 32]"], "INPUT.SIZE_TRAIN"),
    (["MODEL.TEMPORAL.AGG", "attention"], "MODEL.TEMPORAL.AGG"),  # other parameter groups
    (["DATASETS.NAMES", '("SyntheticPRID2011",)'], "DATASETS.NAMES"),
    (["SOLVER.OPT", "Adam"], "SOLVER.OPT"),
])
def test_resume_refuses_settings_it_cannot_honour_before_writing(train_net, finished, datasets_env, tmp_path,
                                                                 opts, key):
    out = _copy(finished, tmp_path / "run")
    before = _digests(out)
    with pytest.raises(RunFolderError, match=key):
        train_net.cli(["--config-file", TINY, "--resume", *COSINE, "SOLVER.MAX_EPOCH", "4", *opts,
                       "OUTPUT_DIR", out])
    assert _digests(out) == before  # config.yaml and log.txt too: nothing written


def test_resume_applies_a_new_learning_rate_and_schedule_length(train_net, finished, datasets_env, tmp_path,
                                                                 monkeypatch):
    """Cosine from 0.001 over 2 epochs, resumed at epoch 2 with BASE_LR 0.01 over 4 epochs: the
    groups' learning rate must be 0.01 * (1 + cos(pi * 2 / 4)) / 2 = 0.005 (times each group's
    factor), not the finished schedule's value (0 at its end)."""
    out = _copy(finished, tmp_path / "run")
    old_config = open(os.path.join(out, "config.yaml"), "rb").read()
    seen = {}

    def fake_train(self):
        seen["lrs"] = [g["lr"] for g in self.optimizer.param_groups]
        seen["factors"] = [g["initial_lr"] / 0.01 for g in self.optimizer.param_groups]
        seen["start"] = self.start_epoch
        return {}

    monkeypatch.setattr(train_net.Trainer, "train", fake_train)
    train_net.cli(["--config-file", TINY, "--resume", *COSINE, "SOLVER.MAX_EPOCH", "4", "SOLVER.BASE_LR", "0.01",
                   "TEST.EVAL_PERIOD", "3", "OUTPUT_DIR", out])
    assert seen["start"] == 2
    expected = 0.01 * (1 + math.cos(math.pi * 2 / 4)) / 2
    for lr, factor in zip(seen["lrs"], seen["factors"]):
        assert abs(lr - expected * factor) < 1e-12
    kept = [n for n in os.listdir(out) if n.startswith("config.") and n != "config.yaml"]
    assert len(kept) == 1 and open(os.path.join(out, kept[0]), "rb").read() == old_config
    assert "BASE_LR: 0.01" in open(os.path.join(out, "config.yaml")).read()


def test_resume_lists_the_honoured_differences():
    from fastreid_ext.config import build_config

    saved = {"SOLVER.BASE_LR": 0.001, "SOLVER.MAX_EPOCH": 2, "TEST.EVAL_PERIOD": 100, "MODEL.HEADS.NUM_CLASSES": 8,
             "MODEL.BACKBONE.DEPTH": "18x", "OUTPUT_DIR": "elsewhere"}
    cfg = build_config(TINY, ["SOLVER.BASE_LR", "0.01", "SOLVER.MAX_EPOCH", "4", "TEST.EVAL_PERIOD", "1"])
    refused, honoured = compare_configs(saved, cfg)
    assert refused == []
    assert honoured == ["SOLVER.BASE_LR: 0.001 -> 0.01", "SOLVER.MAX_EPOCH: 2 -> 4", "TEST.EVAL_PERIOD: 100 -> 1"]


def test_resume_on_data_with_another_identity_count_is_refused(train_net, finished, tmp_path, monkeypatch):
    from fastreid_ext.data.synthetic import generate

    params = dict(TINY_MARS, ids=12)
    root = tmp_path / "other"
    generate(params.pop("layout"), str(root / "synthetic" / "mars"), workers=1, **params)
    monkeypatch.setenv("FASTREID_DATASETS", str(root))
    out = _copy(finished, tmp_path / "run")
    before = {k: v for k, v in _digests(out).items() if not k.startswith("events.")}
    with pytest.raises(ResumeMismatch, match="8 identities in the checkpoint.*6"):
        train_net.cli(["--config-file", TINY, "--resume", *COSINE, "SOLVER.MAX_EPOCH", "4", "OUTPUT_DIR", out])
    after = {k: v for k, v in _digests(out).items() if not k.startswith("events.") and k != "log.txt"}
    before.pop("log.txt")
    assert after == before  # config.yaml put back, no checkpoint touched, no kept copy left


def test_checkpoint_with_other_optimizer_groups_is_refused_before_loading(finished, datasets_env, tmp_path):
    from fastreid_ext.config import build_config
    from fastreid_ext.engine import Trainer

    out = _copy(finished, tmp_path / "run")
    path = os.path.join(out, "model_final.pth")
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    ckpt["optimizer"]["param_groups"] = ckpt["optimizer"]["param_groups"][:-1]  # one group fewer
    torch.save(ckpt, path)
    trainer = Trainer(build_config(TINY, [*COSINE, "SOLVER.MAX_EPOCH", "4", "OUTPUT_DIR", out]))
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    with pytest.raises(ResumeMismatch, match="parameter groups"):
        trainer.resume_or_load(resume=True)
    for k, v in trainer.model.state_dict().items():
        assert torch.equal(v, before[k]), f"{k} was loaded before the refusal"


def test_output_dir_that_is_a_file_is_one_clear_error(train_net, tmp_path):
    path = tmp_path / "out"
    path.write_text("not a folder")
    with pytest.raises(RunFolderError, match="is a file"):
        train_net.cli(["--config-file", TINY, "OUTPUT_DIR", str(path)])
    assert path.read_text() == "not a folder"


def test_resume_without_the_runs_config_applies_the_requested_schedule(train_net, finished, datasets_env, tmp_path,
                                                                       monkeypatch):
    """No config.yaml to compare with: the requested learning rate is applied (and said), not the
    checkpoint's silently kept."""
    out = _copy(finished, tmp_path / "run")
    os.remove(os.path.join(out, "config.yaml"))
    seen = {}
    monkeypatch.setattr(train_net.Trainer, "train",
                        lambda self: seen.update(lrs=[g["lr"] / g["initial_lr"] * 0.01 for g in self.optimizer.param_groups],
                                                 base=[g["initial_lr"] for g in self.optimizer.param_groups]) or {})
    train_net.cli(["--config-file", TINY, "--resume", *COSINE, "SOLVER.MAX_EPOCH", "4", "SOLVER.BASE_LR", "0.01",
                   "OUTPUT_DIR", out])
    expected = 0.01 * (1 + math.cos(math.pi * 2 / 4)) / 2
    assert all(abs(lr - expected) < 1e-12 for lr in seen["lrs"])
