"""End-to-end engine runs through tools/train_net.py on the tiny synthetic MARS set:
kill-and-resume, 2-process gloo training, evaluation-only, bad dataset names and roots."""
import json
import os
import signal
import subprocess
import sys
import time

from conftest import REPO

TRAIN_NET = os.path.join(REPO, "tools", "train_net.py")
TINY = os.path.join(REPO, "tests", "configs", "tiny_video.yml")


def _env(root):
    env = dict(os.environ)
    env["FASTREID_DATASETS"] = root
    env["OMP_NUM_THREADS"] = "1"
    return env


def _train(root, out, *extra, check=True, timeout=600):
    cmd = [sys.executable, TRAIN_NET, "--config-file", TINY, *extra, "OUTPUT_DIR", str(out)]
    proc = subprocess.run(cmd, env=_env(root), capture_output=True, text=True, timeout=timeout, cwd="/")
    if check:
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def _results(out):
    with open(os.path.join(out, "results.json")) as f:
        return json.load(f)


def test_kill_mid_run_then_resume(tiny_datasets_root, tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, TRAIN_NET, "--config-file", TINY, "OUTPUT_DIR", str(out),
           "SOLVER.MAX_EPOCH", "4"]
    proc = subprocess.Popen(cmd, env=_env(tiny_datasets_root), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, cwd="/")
    tag = out / "last_checkpoint"
    deadline = time.time() + 400
    try:
        while not tag.exists() and time.time() < deadline and proc.poll() is None:
            time.sleep(0.2)
        assert tag.exists(), "no checkpoint written before the deadline"
        proc.send_signal(signal.SIGKILL)  # killed mid-run, after its first checkpoint
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    first = tag.read_text()
    assert first.startswith("model_") and first != "model_final.pth"
    assert not (out / "model_final.pth").exists()
    done_epoch = int(first[len("model_"):-len(".pth")])

    resumed = _train(tiny_datasets_root, out, "--resume", "SOLVER.MAX_EPOCH", "4")
    log = resumed.stdout + resumed.stderr
    assert f"Starting training from epoch {done_epoch + 1}" in log
    assert (out / "model_final.pth").exists()
    assert 0.0 <= _results(out)["mAP"] <= 100.0


def test_two_process_gloo_training_gives_a_working_model(tiny_datasets_root, tmp_path, monkeypatch):
    out = tmp_path / "ddp"
    # 12 epochs: the triplet loss gathers both ranks' features (MODEL.LOSSES.GATHER), so the two
    # ranks train like one process on the whole batch, which is at 15.8 mAP after 8 epochs here
    # (seed 0), too close to the bar below; 12 epochs give 17.6
    proc = _train(tiny_datasets_root, out, "--num-gpus", "2", "--dist-url", "auto",
                  "SOLVER.MAX_EPOCH", "12", "SOLVER.CHECKPOINT_PERIOD", "100")
    log = proc.stdout + proc.stderr
    assert "World size: 2" in log
    trained = _results(out)

    # the same model untrained, evaluated the same way
    init = tmp_path / "init"
    import torch

    import fastreid_ext  # noqa: F401
    from fastreid_ext.config import build_config
    from fastreid_ext.engine import Trainer

    cfg = build_config(TINY, ["MODEL.HEADS.NUM_CLASSES", "8", "OUTPUT_DIR", str(init)])
    monkeypatch.setenv("FASTREID_DATASETS", tiny_datasets_root)
    torch.manual_seed(0)
    baseline = Trainer.test(cfg, Trainer.build_model(cfg).eval())
    assert trained["mAP"] > baseline["mAP"] + 5.0, (trained, baseline)


def test_eval_only_needs_weights(tiny_datasets_root, tmp_path):
    proc = _train(tiny_datasets_root, tmp_path / "e", "--eval-only", check=False)
    assert proc.returncode != 0
    assert "MODEL.WEIGHTS" in proc.stderr


def test_unknown_dataset_name_is_a_clear_error(tiny_datasets_root, tmp_path):
    proc = _train(tiny_datasets_root, tmp_path / "u", "DATASETS.NAMES", '("NoSuchSet",)', check=False)
    assert proc.returncode != 0
    assert "NoSuchSet" in proc.stderr and "SyntheticMARS" in proc.stderr


def test_missing_dataset_root_names_layout_and_env(tmp_path):
    proc = _train(str(tmp_path / "empty"), tmp_path / "m", check=False)
    assert proc.returncode != 0
    assert "FASTREID_DATASETS" in proc.stderr and "bbox_train" in proc.stderr


def test_eval_only_from_a_trained_checkpoint(tiny_datasets_root, tmp_path):
    out = tmp_path / "t"
    _train(tiny_datasets_root, out, "SOLVER.MAX_EPOCH", "1", "TEST.EVAL_PERIOD", "1")
    trained = _results(out)
    ev = tmp_path / "ev"
    _train(tiny_datasets_root, ev, "--eval-only", "MODEL.WEIGHTS", str(out / "model_final.pth"))
    again = _results(ev)
    for k in ("mAP", "Rank-1", "mINP"):
        assert abs(again[k] - trained[k]) < 1e-6, (k, again, trained)
    # the results file says how it was scored (tiny_video.yml: T=2, at most 2 clips per tracklet)
    sc = again["scoring"]
    assert sc["protocol"] == "cross_camera" and sc["ap"] == "noninterp" and sc["metric"] == trained["scoring"]["metric"]
    assert sc["clip_len"] == 2 and sc["max_clips"] == 2 and sc["sampling"].startswith("dense, at most 2 clips")
    assert 1 <= sc["frames_seen"]["min"] <= sc["frames_seen"]["mean"] <= sc["frames_seen"]["max"] <= 4
