"""Weights match the model (``docs/reliability.md``): an inference load (``--eval-only``,
extraction, export) refuses checkpoint tensors the config's model does not use, naming them,
unless ``MODEL.PARTIAL_LOAD``."""
import os
import subprocess
import sys

import pytest
import torch
from conftest import REPO

import fastreid_ext  # noqa: F401  (compat shims first)
from fastreid_ext.config import build_config
from fastreid_ext.engine import Trainer, build_inference_model
from fastreid_ext.engine.checkpoint import CheckpointMismatch

TINY = os.path.join(REPO, "tests", "configs", "tiny_video.yml")


@pytest.fixture(scope="module")
def attention_weights(tmp_path_factory):
    """Weights of the tiny model with a temporal attention (``MODEL.TEMPORAL.AGG attention``)."""
    cfg = build_config(TINY, ["MODEL.HEADS.NUM_CLASSES", "8", "MODEL.TEMPORAL.AGG", "attention"])
    torch.manual_seed(0)
    model = Trainer.build_model(cfg)
    path = tmp_path_factory.mktemp("w") / "model.pth"
    torch.save({"model": model.state_dict()}, path)
    avg = Trainer.build_model(build_config(TINY, ["MODEL.HEADS.NUM_CLASSES", "8"]))
    extra = sorted(set(model.state_dict()) - set(avg.state_dict()))
    assert extra  # the attention's own tensors
    return str(path), extra


def test_weights_of_modules_the_config_does_not_build_are_refused(attention_weights):
    path, extra = attention_weights
    cfg = build_config(TINY, ["MODEL.HEADS.NUM_CLASSES", "8"])  # TEMPORAL.AGG avg
    with pytest.raises(CheckpointMismatch, match="does not use") as e:
        build_inference_model(cfg, path)
    assert extra[0] in str(e.value)


def test_partial_load_loads_what_fits(attention_weights):
    path, extra = attention_weights
    cfg = build_config(TINY, ["MODEL.HEADS.NUM_CLASSES", "8", "MODEL.PARTIAL_LOAD", "True"])
    model, _ = build_inference_model(cfg, path)
    saved = torch.load(path, map_location="cpu", weights_only=False)["model"]
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, saved[k])


def test_eval_only_with_unused_weights_exits_2_naming_them(attention_weights, tiny_datasets_root, tmp_path):
    path, extra = attention_weights
    env = dict(os.environ, FASTREID_DATASETS=tiny_datasets_root, OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, os.path.join(REPO, "tools", "train_net.py"), "--config-file", TINY,
                           "--eval-only", "MODEL.WEIGHTS", path, "OUTPUT_DIR", str(tmp_path / "ev")],
                          env=env, capture_output=True, text=True, timeout=600, cwd="/")
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and extra[0] in proc.stderr and path in proc.stderr
    assert len([ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]) == 1
    assert not os.path.exists(tmp_path / "ev" / "results.json")
