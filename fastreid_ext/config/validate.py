"""Config validation: every check of a config's values, in one place, run when the config is
built.

:func:`validate_config` runs the core's checks (:data:`CORE_VALIDATORS`: dataset names,
``TEST.*`` values, ``SOLVER.OPT`` and ``DATALOADER.EPOCH_LENGTH``, identities per batch for
pairwise losses) and then every validator a
project registered. :func:`~.setup.build_config` calls it once the file and the overrides are
merged; :class:`~fastreid_ext.engine.trainer.Trainer` calls it again on the config it is given
(a config made by hand, or edited after ``build_config``). A bad value therefore fails in
seconds, before any model, loader or training, with a one-line message naming the key.

A project adds its own checks with :func:`register_validator`, e.g. in its config module::

    def validate_mypkg_config(cfg):
        if "MYPKG" not in cfg.MODEL:  # a config built without add_mypkg_config
            return
        if cfg.MODEL.MYPKG.MODE not in MODES:
            raise ValueError(f"unknown MODEL.MYPKG.MODE {cfg.MODEL.MYPKG.MODE!r}; known: ...")

    register_validator(validate_mypkg_config)

A validator takes the config and raises ``ValueError`` / ``KeyError`` (one line naming the
key and what is wrong); constructors then take validated values.
"""
from __future__ import annotations

from typing import Callable, List

__all__ = ["CORE_VALIDATORS", "EPOCH_LENGTHS", "check_datasets", "check_identities_per_batch",
           "check_solver_and_loader", "check_test_settings", "register_validator", "registered_validators",
           "validate_config"]

Validator = Callable[[object], None]

#: ``DATALOADER.EPOCH_LENGTH`` values (:func:`fastreid_ext.engine.trainer.epoch_iterations`)
EPOCH_LENGTHS = ("identities", "samples")

_PROJECT_VALIDATORS: List[Validator] = []


def register_validator(fn: Validator) -> Validator:
    """Add ``fn(cfg)`` to the checks :func:`validate_config` runs (once: registering the same
    function again does nothing). Returns ``fn``, so it can decorate."""
    if fn not in _PROJECT_VALIDATORS:
        _PROJECT_VALIDATORS.append(fn)
    return fn


def registered_validators() -> List[Validator]:
    """The projects' validators, in registration order."""
    return list(_PROJECT_VALIDATORS)


def check_datasets(cfg) -> None:
    """``DATASETS.NAMES`` / ``TESTS`` name registered datasets (``KeyError`` listing them)."""
    from fastreid.data.datasets import DATASET_REGISTRY

    known = sorted(DATASET_REGISTRY._obj_map)
    for key in ("NAMES", "TESTS"):
        bad = [n for n in cfg.DATASETS.get(key) if n not in known]
        if bad:
            raise KeyError(f"DATASETS.{key} names unknown dataset(s) {bad}; registered datasets: {known}")


def _positive_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 1


def _retrieval_errors(r) -> List[str]:
    """Messages for bad ``TEST.RETRIEVAL.*`` values (``r``: that node)."""
    errors = []
    if r.BACKEND not in ("auto", "faiss", "torch"):
        errors.append(f"TEST.RETRIEVAL.BACKEND must be auto, faiss or torch, got {r.BACKEND!r}")
    for k in ("INDEX", "APPROX"):
        if not isinstance(r.get(k), str):
            errors.append(f"TEST.RETRIEVAL.{k} must be '', a shorthand (ivf, hnsw) or a faiss "
                          f"factory string, got {r.get(k)!r}")
    if r.INDEX and r.APPROX and r.INDEX != r.APPROX:
        errors.append(f"TEST.RETRIEVAL.INDEX={r.INDEX!r} and its older name APPROX={r.APPROX!r} disagree; "
                      f"set INDEX only")
    if not (isinstance(r.K_FACTOR, int) and r.K_FACTOR >= 0):
        errors.append(f"TEST.RETRIEVAL.K_FACTOR must be an int >= 0, got {r.K_FACTOR!r}")
    if not (isinstance(r.MEMORY_MB, (int, float)) and r.MEMORY_MB > 0):
        errors.append(f"TEST.RETRIEVAL.MEMORY_MB must be > 0, got {r.MEMORY_MB!r}")
    for k in ("NLIST", "NPROBE", "HNSW_M", "EF_SEARCH", "EF_CONSTRUCTION"):
        if not _positive_int(r.get(k)):
            errors.append(f"TEST.RETRIEVAL.{k} must be an int >= 1, got {r.get(k)!r}")
    if not (isinstance(r.TRAIN_SIZE, int) and r.TRAIN_SIZE >= 0):
        errors.append(f"TEST.RETRIEVAL.TRAIN_SIZE must be >= 0, got {r.TRAIN_SIZE!r}")
    return errors


def _test_errors(cfg) -> List[str]:
    """Messages for bad ``TEST.*`` values (retrieval and re-scoring aside) and the clips'
    ``SHORT_PAD``."""
    from fastreid_ext.data.clip_sampler import CLIP_SELECTIONS, PAD_MODES
    from fastreid_ext.evaluation.average_per_id import AVERAGE_KEYS
    from fastreid_ext.evaluation.rank import PROTOCOLS
    from fastreid_ext.evaluation.validation import METRICS

    t = cfg.TEST
    protocols = ("auto",) + tuple(PROTOCOLS) + ("fgpr",)  # fgpr: evaluation/two_direction.py
    max_clips = t.VIDEO.MAX_CLIPS
    checks = [
        (_positive_int(t.EVAL_PERIOD), f"TEST.EVAL_PERIOD must be an int >= 1 (epochs), got {t.EVAL_PERIOD!r}"),
        (_positive_int(t.IMS_PER_BATCH), f"TEST.IMS_PER_BATCH must be an int >= 1, got {t.IMS_PER_BATCH!r}"),
        (t.METRIC in METRICS, f"TEST.METRIC must be 'cosine' or 'euclidean', got {t.METRIC!r}"),
        (t.PROTOCOL in protocols, f"TEST.PROTOCOL must be one of {protocols}, got {t.PROTOCOL!r}"),
        (_positive_int(t.VIDEO.SEQ_LEN), f"TEST.VIDEO.SEQ_LEN must be an int >= 1, got {t.VIDEO.SEQ_LEN!r}"),
        (isinstance(max_clips, int) and not isinstance(max_clips, bool) and max_clips >= 0,
         f"TEST.VIDEO.MAX_CLIPS must be an int >= 0 (0: every clip), got {max_clips!r}"),
        (t.VIDEO.CLIP_SELECT in CLIP_SELECTIONS,
         f"TEST.VIDEO.CLIP_SELECT must be one of {CLIP_SELECTIONS}, got {t.VIDEO.CLIP_SELECT!r}"),
        (t.IMAGE.AVERAGE_KEY in AVERAGE_KEYS,
         f"TEST.IMAGE.AVERAGE_KEY must be one of {AVERAGE_KEYS}, got {t.IMAGE.AVERAGE_KEY!r}"),
    ]
    for key, pad in (("INPUT", cfg.INPUT.VIDEO.SHORT_PAD), ("TEST", t.VIDEO.SHORT_PAD)):
        checks.append((pad in PAD_MODES, f"{key}.VIDEO.SHORT_PAD must be one of {PAD_MODES}, got {pad!r}"))
    return [msg for ok, msg in checks if not ok]


def _rescoring_errors(t) -> List[str]:
    """Messages for bad ``TEST.AQE`` / ``RERANK`` / ``VIS`` values when they are enabled."""
    checks = []
    if t.AQE.ENABLED:
        checks.append((_positive_int(t.AQE.QE_TIME) and _positive_int(t.AQE.QE_K),
                       f"TEST.AQE.QE_TIME / QE_K must be ints >= 1, got {t.AQE.QE_TIME!r} / {t.AQE.QE_K!r}"))
    if t.RERANK.ENABLED:
        checks.append((_positive_int(t.RERANK.K1) and _positive_int(t.RERANK.K2),
                       f"TEST.RERANK.K1 / K2 must be ints >= 1, got {t.RERANK.K1!r} / {t.RERANK.K2!r}"))
        checks.append((isinstance(t.RERANK.LAMBDA, (int, float)) and 0 <= t.RERANK.LAMBDA <= 1,
                       f"TEST.RERANK.LAMBDA must be in [0, 1], got {t.RERANK.LAMBDA!r}"))
    if t.VIS.ENABLED:
        checks.append((_positive_int(t.VIS.NUM_QUERIES) and _positive_int(t.VIS.TOPK),
                       f"TEST.VIS.NUM_QUERIES / TOPK must be ints >= 1, got {t.VIS.NUM_QUERIES!r} / {t.VIS.TOPK!r}"))
    return [msg for ok, msg in checks if not ok]


def check_test_settings(cfg) -> None:
    """``TEST.*`` values (and ``INPUT.VIDEO.SHORT_PAD``): ``ValueError`` listing every bad one
    (settings that would otherwise fail, or do nothing, only after training)."""
    errors = _test_errors(cfg) + _retrieval_errors(cfg.TEST.RETRIEVAL) + _rescoring_errors(cfg.TEST)
    if errors:
        raise ValueError("bad test settings in the config:\n  " + "\n  ".join(errors))


def check_identities_per_batch(cfg) -> None:
    """At least 2 identities per batch (``P = SOLVER.IMS_PER_BATCH / DATALOADER.NUM_INSTANCE``
    with an identity sampler) when a loss is pairwise: with one identity there is no negative
    (triplet: ``loss_triplet`` stays 0). One process's share is checked, honouring
    ``MODEL.LOSSES.GATHER``, by ``check_identities_per_rank`` when the model is wrapped for DDP."""
    from fastreid_ext.modeling.losses import pairwise_losses

    pairwise = pairwise_losses(cfg.MODEL.LOSSES.NAME)
    if pairwise and "Identity" in str(cfg.DATALOADER.SAMPLER_TRAIN) and cfg.DATALOADER.NUM_INSTANCE >= 1:
        p = cfg.SOLVER.IMS_PER_BATCH // cfg.DATALOADER.NUM_INSTANCE
        if p < 2:
            raise ValueError(
                f"{pairwise} need at least 2 identities per batch, but SOLVER.IMS_PER_BATCH "
                f"{cfg.SOLVER.IMS_PER_BATCH} / DATALOADER.NUM_INSTANCE {cfg.DATALOADER.NUM_INSTANCE} "
                f"gives P = {p}: with one identity there is no negative and the loss is 0. Raise "
                f"SOLVER.IMS_PER_BATCH or lower DATALOADER.NUM_INSTANCE.")


def check_solver_and_loader(cfg) -> None:
    """``SOLVER.OPT`` names a ``torch.optim`` optimizer and ``DATALOADER.EPOCH_LENGTH`` is one of
    :data:`EPOCH_LENGTHS` (``ValueError``), read by the trainer's ``build_optimizer`` and
    ``epoch_iterations``."""
    import torch

    opt_name = cfg.SOLVER.OPT
    if not (isinstance(opt_name, str) and hasattr(torch.optim, opt_name)):
        raise ValueError(f"Unknown SOLVER.OPT {opt_name!r}")
    mode = cfg.DATALOADER.EPOCH_LENGTH
    if mode not in EPOCH_LENGTHS:
        raise ValueError(f"unknown DATALOADER.EPOCH_LENGTH {mode!r}; known: {', '.join(EPOCH_LENGTHS)}")


#: the core's checks, run first, in this order
CORE_VALIDATORS = (check_datasets, check_test_settings, check_solver_and_loader, check_identities_per_batch)


def validate_config(cfg) -> None:
    """Run the core's checks, then every registered project validator, on ``cfg``; the first
    that fails raises (``ValueError`` / ``KeyError``)."""
    for fn in CORE_VALIDATORS + tuple(_PROJECT_VALIDATORS):
        fn(cfg)
