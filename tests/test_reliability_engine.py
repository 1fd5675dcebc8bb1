"""Reliability of the training engine (issue "no crash after training, no silent loss, no
silent wrong answer"): each test reproduces one reported fault on tiny data.

One tiny run (ResNet-18 at 32x16, one iteration per epoch, SGD without momentum so checkpoints
stay small) is trained once per module and copied where a test damages it."""
import json
import logging
import os
import shutil
import stat
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import REPO
from torch import nn

import fastreid_ext  # noqa: F401  (compat shims first)
from fastreid_ext.config import build_config
from fastreid_ext.engine import Trainer
from fastreid_ext.engine.checkpoint import AtomicCheckpointer

TINY = os.path.join(REPO, "tests", "configs", "tiny_video.yml")
TRAIN_NET = os.path.join(REPO, "tools", "train_net.py")
FAST = ["SOLVER.OPT", "SGD", "SOLVER.MOMENTUM", "0.0", "SOLVER.BASE_LR", "0.01", "SOLVER.IMS_PER_BATCH", "16",
        "SOLVER.CHECKPOINT_PERIOD", "1", "TEST.EVAL_PERIOD", "1"]


def _cfg(out, *opts):
    os.makedirs(out, exist_ok=True)  # as default_setup does
    return build_config(TINY, [*FAST, "OUTPUT_DIR", str(out), *opts])


def _results(out):
    with open(os.path.join(out, "results.json")) as f:
        return json.load(f)


@pytest.fixture(scope="module")
def finished_run(tiny_datasets_root, tmp_path_factory):
    """A finished 2-epoch run with one iteration per epoch (the host's metric printer divided by
    zero there, ``fastreid/utils/events.py:220``)."""
    old = os.environ.get("FASTREID_DATASETS")
    os.environ["FASTREID_DATASETS"] = tiny_datasets_root
    out = tmp_path_factory.mktemp("run")
    try:
        torch.manual_seed(0)
        trainer = Trainer(_cfg(out, "SOLVER.MAX_EPOCH", "2"))
        trainer.resume_or_load(resume=False)
        results = trainer.train()
    finally:
        if old is None:
            os.environ.pop("FASTREID_DATASETS")
        else:
            os.environ["FASTREID_DATASETS"] = old
    return str(out), trainer.iters_per_epoch, results


def _copy_run(src, dst):
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("*.lock", "events.*"))
    return str(dst)


def test_one_iteration_per_epoch_trains_to_the_end(finished_run):
    out, iters, results = finished_run
    assert iters == 1
    assert os.path.isfile(os.path.join(out, "model_final.pth"))
    saved = _results(out)
    assert saved["complete"] is True  # a finished run says so
    assert abs(saved["mAP"] - results["mAP"]) < 1e-9


def test_resume_of_a_finished_run_evaluates_instead_of_crashing(finished_run, datasets_env, caplog):
    out = finished_run[0]
    before = _results(out)
    trainer = Trainer(_cfg(out, "SOLVER.MAX_EPOCH", "2"))
    trainer.resume_or_load(resume=True)
    assert trainer.start_epoch == 2
    with caplog.at_level(logging.WARNING):
        results = trainer.train()
    assert "Nothing to train" in caplog.text
    assert abs(results["mAP"] - before["mAP"]) < 1e-6  # the same finished model, evaluated again
    assert _results(out)["complete"] is True


def test_max_epoch_zero_evaluates_the_initial_model(datasets_env, tmp_path):
    trainer = Trainer(_cfg(tmp_path / "z", "SOLVER.MAX_EPOCH", "0"))
    trainer.resume_or_load(resume=False)
    results = trainer.train()
    assert 0.0 <= results["mAP"] <= 100.0
    assert not os.path.exists(tmp_path / "z" / "model_final.pth")


@pytest.mark.parametrize("epochs,evaluations,builds", [("2", 2, 2), ("0", 1, 1)])
def test_the_test_sets_built_at_startup_serve_the_first_evaluation(datasets_env, tmp_path, monkeypatch,
                                                                   epochs, evaluations, builds):
    """The trainer builds the test sets at startup (bad ones fail before training); the first
    evaluation uses those instead of building them again (before: startup + every evaluation);
    MAX_EPOCH 0 evaluates the initial model with them too."""
    from fastreid_ext.data import build
    from fastreid_ext.evaluation import inference

    built, evaluated = [], []
    real_build, real_inference = build.build_reid_test_loader, inference.inference_on_dataset
    monkeypatch.setattr(build, "build_reid_test_loader", lambda cfg, name: built.append(name) or real_build(cfg, name))
    monkeypatch.setattr(inference, "inference_on_dataset",
                        lambda model, loader, ev, **kw: evaluated.append(ev) or real_inference(model, loader, ev, **kw))
    trainer = Trainer(_cfg(tmp_path / "run", "SOLVER.MAX_EPOCH", epochs))  # TEST.EVAL_PERIOD 1
    startup = list(trainer._startup_test_sets.values())
    assert built == ["SyntheticMARS"] and len(startup) == 1
    trainer.resume_or_load(resume=False)
    results = trainer.train()
    assert 0.0 <= results["mAP"] <= 100.0
    assert len(evaluated) == evaluations and evaluated[0] is startup[0][1]
    assert len(built) == builds and not trainer._startup_test_sets  # used once, then dropped


def test_truncated_last_checkpoint_falls_back_to_the_previous_one(finished_run, datasets_env, tmp_path, caplog):
    out = _copy_run(finished_run[0], tmp_path / "copy")
    assert open(os.path.join(out, "last_checkpoint")).read() == "model_final.pth"
    final = os.path.join(out, "model_final.pth")
    with open(final, "rb") as f:
        head = f.read(4096)
    with open(final, "wb") as f:  # a truncated file (disk full, copy interrupted)
        f.write(head)
    os.remove(os.path.join(out, "model_best.pth"))  # only model_0000 is readable now
    trainer = Trainer(_cfg(out, "SOLVER.MAX_EPOCH", "3"))
    with caplog.at_level(logging.WARNING):
        trainer.resume_or_load(resume=True)
    assert trainer.start_epoch == 1  # model_0000.pth holds epoch 0
    assert "model_final.pth" in caplog.text and "model_0000.pth" in caplog.text
    saved = torch.load(os.path.join(out, "model_0000.pth"), map_location="cpu", weights_only=False)
    for k, v in trainer.model.state_dict().items():
        torch.testing.assert_close(v, saved["model"][k])


def test_resume_keeps_the_best_metric(finished_run, datasets_env, tmp_path):
    out = _copy_run(finished_run[0], tmp_path / "copy")
    best_path = os.path.join(out, "model_best.pth")
    best = torch.load(best_path, map_location="cpu", weights_only=False)
    best["metric"] = 1e6  # a best model no later epoch can beat
    torch.save(best, best_path)
    trainer = Trainer(_cfg(out, "SOLVER.MAX_EPOCH", "4"))
    trainer.resume_or_load(resume=True)
    assert trainer.start_epoch == 2
    trainer.train()
    after = torch.load(best_path, map_location="cpu", weights_only=False)
    assert after["metric"] == 1e6 and after["epoch"] == best["epoch"]
    assert os.path.isfile(os.path.join(out, "model_final.pth"))


def test_eval_only_of_a_run_keeps_its_config_and_results(finished_run, tiny_datasets_root, tmp_path):
    out = _copy_run(finished_run[0], tmp_path / "copy")
    files = {n: open(os.path.join(out, n), "rb").read() for n in ("config.yaml", "results.json")}
    env = dict(os.environ, FASTREID_DATASETS=tiny_datasets_root, OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, TRAIN_NET, "--config-file", os.path.join(out, "config.yaml"),
                           "--eval-only", "MODEL.WEIGHTS", os.path.join(out, "model_final.pth"), "OUTPUT_DIR", out],
                          env=env, capture_output=True, text=True, timeout=600, cwd="/")
    assert proc.returncode == 0, proc.stderr[-3000:]
    for n, content in files.items():
        assert open(os.path.join(out, n), "rb").read() == content, f"{n} of the run was overwritten"
    ev = _results(os.path.join(out, "eval"))
    assert abs(ev["mAP"] - json.loads(files["results.json"])["mAP"]) < 1e-6


def test_rank_pictures_of_a_run_keep_its_config_and_results(finished_run, datasets_env, tmp_path):
    """tools/visualize_ranks.py on a run's own folder draws into <run>/eval/ and leaves the
    run's config.yaml and results.json (read by run_splits --skip-done) as they were, also
    when it draws an untrained model (no MODEL.WEIGHTS), whose metrics differ."""
    import runpy

    out = _copy_run(finished_run[0], tmp_path / "copy")
    files = {n: open(os.path.join(out, n), "rb").read() for n in ("config.yaml", "results.json")}
    tool = runpy.run_path(os.path.join(REPO, "tools", "visualize_ranks.py"))
    tool["main"](["--config-file", os.path.join(out, "config.yaml"), "--num-queries", "2", "--topk", "3",
                  "MODEL.WEIGHTS", "", "OUTPUT_DIR", out])
    for n, content in files.items():
        assert open(os.path.join(out, n), "rb").read() == content, f"{n} of the run was overwritten"
    assert os.listdir(os.path.join(out, "eval", "rank_lists"))


@pytest.mark.parametrize("opts, error, words", [
    (["DATASETS.TESTS", '("SyntheticMAR",)'], KeyError, "SyntheticMAR"),
    (["TEST.METRIC", "cosin"], ValueError, "TEST.METRIC"),
    (["TEST.EVAL_PERIOD", "0"], ValueError, "TEST.EVAL_PERIOD"),
    (["TEST.PROTOCOL", "cross_cam"], ValueError, "TEST.PROTOCOL"),
    (["TEST.RERANK.ENABLED", "True", "TEST.RERANK.LAMBDA", "2.0"], ValueError, "LAMBDA"),
    (["TEST.RETRIEVAL.BACKEND", "fais"], ValueError, "BACKEND"),
    (["SOLVER.IMS_PER_BATCH", "2"], ValueError, "P = 1"),  # P = IMS_PER_BATCH / NUM_INSTANCE = 1
])
def test_bad_settings_fail_before_training(opts, error, words, datasets_env, tmp_path, monkeypatch):
    def no_training(cls, cfg):
        raise AssertionError("the training loader was built: the error came too late")

    monkeypatch.setattr(Trainer, "build_train_loader", classmethod(no_training))
    with pytest.raises(error, match=words):
        Trainer(_cfg(tmp_path / "bad", *opts))


def test_one_identity_per_rank_is_left_to_the_gather_check(datasets_env, tmp_path, monkeypatch):
    """The early check counts the identities of the whole batch: 2 identities over 2 processes
    (1 per rank) pass it, since MODEL.LOSSES.GATHER lets the metric losses see the whole batch;
    the per-rank rule (refuse without gathering, warn with it) is check_identities_per_rank's."""
    from fastreid.utils import comm
    from fastreid_ext.config import validate_config

    monkeypatch.setattr(comm, "get_world_size", lambda: 2)
    validate_config(_cfg(tmp_path / "a", "SOLVER.IMS_PER_BATCH", "4"))  # K = 2: P = 2, 1 per rank
    with pytest.raises(ValueError, match="P = 1"):
        validate_config(_cfg(tmp_path / "b", "SOLVER.IMS_PER_BATCH", "2"))


@pytest.fixture(scope="module")
def grouped_root(tmp_path_factory):
    """Synthetic MARS without distractors and junk: every test item has a group."""
    from fastreid_ext.data.synthetic import generate

    root = tmp_path_factory.mktemp("grouped")
    generate("mars", str(root / "synthetic" / "mars"), ids=8, seed=0, cameras=2, frame_size=(32, 16),
             min_len=4, max_len=6, distractors=0, junk=0, workers=1)
    return str(root)


def test_groups_only_go_to_the_groupwise_protocol(grouped_root, tmp_path, monkeypatch):
    monkeypatch.setenv("FASTREID_DATASETS", grouped_root)
    cfg = _cfg(tmp_path / "g", "MODEL.HEADS.NUM_CLASSES", "4")
    torch.manual_seed(0)
    model = Trainer.build_model(cfg).eval()
    results = Trainer.test(cfg, model)  # raised "q_groups / g_groups are only used by ..." before
    assert 0.0 <= results["mAP"] <= 100.0
    _, evaluator = Trainer.build_evaluator(build_config(TINY, ["TEST.PROTOCOL", "groupwise"]), "SyntheticMARS")
    assert evaluator._groups is not None  # the groupwise protocol still gets them


# ---------------------------------------------------------------------------- weights
def _baseline(*opts):
    cfg = build_config(TINY, ["MODEL.HEADS.NUM_CLASSES", "8", *opts])
    return Trainer.build_model(cfg)


@pytest.fixture(scope="module")
def r18_checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("w") / "r18.pth"
    torch.save({"model": _baseline().state_dict()}, path)
    return str(path)


def test_weights_of_another_depth_are_an_error_unless_partial(r18_checkpoint):
    from fastreid_ext.engine.checkpoint import CheckpointMismatch

    model = _baseline("MODEL.BACKBONE.DEPTH", "34x")
    with pytest.raises(CheckpointMismatch, match="backbone") as e:
        AtomicCheckpointer(model).load(r18_checkpoint)
    assert "MODEL.PARTIAL_LOAD" in str(e.value)
    AtomicCheckpointer(model, partial_load=True).load(r18_checkpoint)  # asked for: loads what fits


def test_weights_of_another_meta_arch_are_an_error(r18_checkpoint):
    from fastreid_ext.engine.checkpoint import CheckpointMismatch

    model = _baseline("MODEL.TEMPORAL.AGG", "attention")  # a temporal attention module more
    with pytest.raises(CheckpointMismatch, match="missing"):
        AtomicCheckpointer(model).load(r18_checkpoint)


def test_a_classifier_of_another_size_is_skipped_with_a_warning(r18_checkpoint, caplog):
    model = _baseline("MODEL.HEADS.NUM_CLASSES", "3")
    with caplog.at_level(logging.WARNING):
        AtomicCheckpointer(model).load(r18_checkpoint)
    assert "heads.weight" in caplog.text
    ref = torch.load(r18_checkpoint, map_location="cpu", weights_only=False)["model"]
    for k, v in model.state_dict().items():
        if k != "heads.weight":
            torch.testing.assert_close(v, ref[k])


def test_extraction_with_weights_of_another_depth_is_an_error(r18_checkpoint):
    from fastreid_ext.deploy.extractor import FeatureExtractor
    from fastreid_ext.engine.checkpoint import CheckpointMismatch

    with pytest.raises(CheckpointMismatch):
        FeatureExtractor.from_files(TINY, r18_checkpoint, ["MODEL.BACKBONE.DEPTH", "34x"])


# ---------------------------------------------------------------------------- permissions
def test_outputs_get_ordinary_permissions(tmp_path):
    from fastreid_ext.deploy import FeaturesFile, GalleryIndex, save_features
    from fastreid_ext.engine import write_results

    old = os.umask(0o022)
    try:
        model = nn.Linear(3, 2)
        AtomicCheckpointer(model, str(tmp_path / "ck")).save("model_0000", epoch=0)
        write_results(str(tmp_path / "ck"), {"X": {"mAP": 1.0}})
        x = np.eye(4, dtype=np.float32)
        feats = FeaturesFile(x, list("abcd"), "h0", meta={"metric": "cosine"})
        save_features(str(tmp_path / "f.npz"), feats)
        GalleryIndex.build(feats, "flat").save(str(tmp_path / "idx"))
    finally:
        os.umask(old)
    written = [tmp_path / "ck" / "model_0000.pth", tmp_path / "ck" / "last_checkpoint",
               tmp_path / "ck" / "results.json", tmp_path / "f.npz", *sorted((tmp_path / "idx").iterdir())]
    for p in written:
        assert stat.S_IMODE(os.stat(p).st_mode) == 0o644, p


def _hold_lock(path, ready, release):
    from fastreid_ext.utils.safe_io import file_lock

    with file_lock(path):
        ready.set()
        release.wait(60)


def test_a_second_training_in_the_same_folder_refuses(datasets_env, tmp_path):
    import multiprocessing as mp

    from fastreid_ext.utils.safe_io import LockBusy

    out = tmp_path / "busy"
    trainer = Trainer(_cfg(out, "SOLVER.MAX_EPOCH", "1"))
    trainer.resume_or_load(resume=False)
    ctx = mp.get_context("fork")
    ready, release = ctx.Event(), ctx.Event()
    other = ctx.Process(target=_hold_lock, args=(str(out / "training"), ready, release))  # a running training
    other.start()
    try:
        assert ready.wait(60)
        with pytest.raises(LockBusy, match="in use by another process"):
            trainer.train()
    finally:
        release.set()
        other.join(60)
    assert not (out / "model_final.pth").exists()


def test_a_second_train_net_in_a_live_runs_folder_touches_none_of_its_files(tiny_datasets_root, tmp_path):
    """tools/train_net.py takes the folder's training lock before the host's default_setup
    writes config.yaml / log.txt, so a second run started in the folder of a live one refuses
    without rewriting them."""
    import multiprocessing as mp

    out = tmp_path / "live"
    out.mkdir()
    files = {"config.yaml": b"the live run's config\n", "log.txt": b"the live run's log\n"}
    for name, content in files.items():
        (out / name).write_bytes(content)
    ctx = mp.get_context("fork")
    ready, release = ctx.Event(), ctx.Event()
    live = ctx.Process(target=_hold_lock, args=(str(out / "training"), ready, release))
    live.start()
    try:
        assert ready.wait(60)
        env = dict(os.environ, FASTREID_DATASETS=tiny_datasets_root, OMP_NUM_THREADS="1")
        proc = subprocess.run([sys.executable, TRAIN_NET, "--config-file", TINY, "OUTPUT_DIR", str(out)],
                              env=env, capture_output=True, text=True, timeout=600, cwd="/")
    finally:
        release.set()
        live.join(60)
    assert proc.returncode != 0 and "in use by another process" in proc.stderr, proc.stderr[-2000:]
    for name, content in files.items():
        assert (out / name).read_bytes() == content, f"{name} of the live run was rewritten"


def test_a_bnneck_inside_a_classifier_module_is_not_skipped_when_missing(tmp_path):
    """Only identity-sized tensors may be missing: the BNNeck of a ``classifier`` module (sized by
    the feature dimension; the ``after``-BN test embedding) must be in the checkpoint."""
    from fastreid_ext.engine.checkpoint import CheckpointMismatch, class_count_key
    from fastreid_ext.modeling.heads.bnneck import BNNeckClassifier

    class Head(torch.nn.Module):
        def __init__(self, num_classes):
            super().__init__()
            self.embed = torch.nn.Linear(4, 6)
            self.classifier = BNNeckClassifier(6, num_classes)

    model = Head(5)
    neck = [k for k in model.state_dict() if k.startswith("classifier.") and not class_count_key(k, model)]
    assert neck and all(".neck" in k or "bn" in k for k in neck)  # the BN tensors, not the FC
    state = {k: v for k, v in Head(7).state_dict().items() if k not in neck}  # other identity count
    path = tmp_path / "no_neck.pth"
    torch.save({"model": state}, path)
    with pytest.raises(CheckpointMismatch, match="missing"):
        AtomicCheckpointer(model).load(str(path))
    full = tmp_path / "full.pth"
    torch.save({"model": Head(7).state_dict()}, full)
    AtomicCheckpointer(model).load(str(full))  # only the 7-identity FC differs: skipped, loads
