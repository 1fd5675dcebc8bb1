"""Config validation runs where the config is built (fastreid_ext.config.validate): the core's
checks and the validators projects register, with one-line messages naming the key."""
import pytest

import fastreid_ext  # noqa: F401  (compat shims first)
from fastreid_ext.config import build_config, register_validator, validate_config
from fastreid_ext.config import validate as validate_module


def test_bad_metric_is_refused_when_the_config_is_built():
    with pytest.raises(ValueError, match=r"TEST.METRIC must be 'cosine' or 'euclidean', got 'cosin'"):
        build_config("", ["TEST.METRIC", "cosin"])
    build_config("", ["TEST.METRIC", "euclidean"])  # accepted


def test_a_registered_validator_runs_in_build_config(monkeypatch):
    monkeypatch.setattr(validate_module, "_PROJECT_VALIDATORS", [])
    seen = []

    def no_odd_batches(cfg):
        seen.append(cfg.SOLVER.IMS_PER_BATCH)
        if cfg.SOLVER.IMS_PER_BATCH % 2:
            raise ValueError(f"SOLVER.IMS_PER_BATCH must be even, got {cfg.SOLVER.IMS_PER_BATCH}")

    assert register_validator(no_odd_batches) is no_odd_batches
    register_validator(no_odd_batches)  # registering twice runs it once
    build_config("", ["SOLVER.IMS_PER_BATCH", "64"])
    assert seen == [64]
    with pytest.raises(ValueError, match="SOLVER.IMS_PER_BATCH must be even, got 63"):
        build_config("", ["SOLVER.IMS_PER_BATCH", "63", "DATALOADER.NUM_INSTANCE", "3"])
    cfg = build_config("", freeze=False)
    cfg.SOLVER.IMS_PER_BATCH = 65  # edited after build_config: validate_config (Trainer) sees it
    with pytest.raises(ValueError, match="got 65"):
        validate_config(cfg)


def test_bad_average_key_is_refused_when_the_config_is_built():
    with pytest.raises(ValueError, match=r"TEST.IMAGE.AVERAGE_KEY must be one of \('id', 'id_camera'\), got 'cam'"):
        build_config("", ["TEST.IMAGE.AVERAGE_KEY", "cam"])


@pytest.mark.parametrize("key, value, words", [
    ("SOLVER.OPT", "Adamm", "Unknown SOLVER.OPT 'Adamm'"),
    ("DATALOADER.EPOCH_LENGTH", "tracklets",
     "unknown DATALOADER.EPOCH_LENGTH 'tracklets'; known: identities, samples"),
])
def test_bad_optimizer_or_epoch_length_is_refused_when_the_config_is_built(key, value, words):
    """Read by the trainer's build_optimizer / epoch_iterations, checked before any of them."""
    with pytest.raises(ValueError, match=words):
        build_config("", [key, value])
    cfg = build_config("", freeze=False)
    cfg.merge_from_list([key, value])  # edited after build_config: validate_config (Trainer) sees it
    with pytest.raises(ValueError, match=words):
        validate_config(cfg)
