"""The model for inference: config + weights -> the meta-architecture in eval mode.

One helper for every tool that runs a trained (or, for counters and "untrained" pictures, a
randomly initialised) model: ``tools/train_net.py --eval-only``, the deployment tools
(features extraction, ONNX export), the rank-list and the projects' visualisers, and the
projects' parameter / FLOP counters.

The classifier's size (``MODEL.HEADS.NUM_CLASSES``) plays no part in the embedding, but the
model must be built with one. It is taken, in this order, from

1. the config itself, when positive;
2. the training run's saved config next to the weights (``<weights folder>/config.yaml``, which
   the host rewrites with the number of training identities, ``fastreid/engine/defaults.py``
   ``auto_scale_hyperparams``);
3. the checkpoint itself: the rows of its classifier matrices (2-D tensors named as in
   :func:`~fastreid_ext.engine.checkpoint.class_count_key`, outside ``losses.*``), when they agree;
4. the training datasets (``DATASETS.NAMES``): their number of distinct identities (not with
   ``DATASETS.COMBINEALL``); a dataset that is not on disk is passed over quietly;
5. otherwise 1, with a warning (the checkpointer then skips the checkpoint's classifier with a
   warning, see :mod:`fastreid_ext.engine.checkpoint`).
"""
from __future__ import annotations

import logging
import os
from typing import Optional, Tuple

import yaml
from torch import nn

__all__ = ["build_inference_model", "inference_num_classes"]

logger = logging.getLogger(__name__)


def _run_config_classes(weights: str) -> int:
    path = os.path.join(os.path.dirname(os.path.abspath(weights)), "config.yaml")
    if not os.path.isfile(path):
        return 0
    try:
        with open(path) as f:
            saved = yaml.safe_load(f) or {}
        return int(saved.get("MODEL", {}).get("HEADS", {}).get("NUM_CLASSES", 0) or 0)
    except (OSError, yaml.YAMLError, TypeError, ValueError, AttributeError) as e:
        logger.warning("cannot read MODEL.HEADS.NUM_CLASSES from %s: %s", path, e)
        return 0


def _checkpoint_classes(weights: str) -> int:
    """The class count of the classifier matrices in the checkpoint ``weights`` (0 when it has
    none, they disagree, or the file cannot be read: loading reports that later)."""
    import torch

    from fastreid_ext.engine.checkpoint import class_count_key

    try:
        data = torch.load(weights, map_location="cpu", weights_only=False, mmap=True)
    except Exception:  # noqa: BLE001  (the checkpointer names the unreadable file when loading)
        return 0
    state = data.get("model", data) if isinstance(data, dict) else {}
    rows = {int(v.shape[0]) for k, v in state.items()
            if hasattr(v, "dim") and v.dim() == 2 and not k.startswith("losses.") and class_count_key(k)}
    return rows.pop() if len(rows) == 1 else 0


def _dataset_classes(cfg) -> int:
    """Distinct identities of the train splits of ``DATASETS.NAMES`` (0 when unreadable, or with
    ``DATASETS.COMBINEALL``, whose train set this count does not reproduce)."""
    from fastreid_ext.data.build import get_dataset

    if cfg.DATASETS.get("COMBINEALL", False):
        return 0
    pids = set()
    for name in cfg.DATASETS.NAMES:
        try:
            data = get_dataset(cfg, name)
        except (OSError, KeyError, ValueError, RuntimeError, AssertionError) as e:  # absent / unknown
            logger.debug("training dataset %s not readable (%s): cannot count its identities", name, e)
            return 0
        pids.update((name, item[1]) for item in data.train)
    return len(pids)


def inference_num_classes(cfg, weights: Optional[str] = None) -> Tuple[int, str]:
    """``(number of classes, where it came from)``; see the module docstring for the order."""
    n = int(cfg.MODEL.HEADS.NUM_CLASSES)
    if n > 0:
        return n, "config"
    if weights:
        n = _run_config_classes(weights)
        if n > 0:
            return n, "the run's config.yaml"
        n = _checkpoint_classes(weights)
        if n > 0:
            return n, "the checkpoint's classifier"
    n = _dataset_classes(cfg)
    if n > 0:
        return n, "the training datasets"
    logger.warning("MODEL.HEADS.NUM_CLASSES unknown (0 in the config, no run config.yaml next to the "
                   "weights, no classifier in the checkpoint, training datasets not readable): building the classifier with 1 class; "
                   "it takes no part in the embedding")
    return 1, "placeholder"


def build_inference_model(cfg, weights: Optional[str] = None, *, allow_untrained: bool = False,
                          device: Optional[str] = None) -> Tuple[nn.Module, object]:
    """``(model in eval mode, the frozen config it was built from)``.

    Args:
        cfg: a full config (:func:`fastreid_ext.config.build_config`); not modified.
        weights: checkpoint file; default ``cfg.MODEL.WEIGHTS``. A name that is not a file
            raises ``FileNotFoundError``; loading is strict as in
            :class:`~fastreid_ext.engine.checkpoint.AtomicCheckpointer`: missing, misshapen and
            unused tensors are an error naming them, unless ``MODEL.PARTIAL_LOAD``.
        allow_untrained: without weights, return the randomly initialised model (counters,
            pictures of an untrained model) instead of raising ``ValueError``.
        device: overrides ``MODEL.DEVICE``.

    The config used has ``MODEL.BACKBONE.PRETRAIN False`` (the weights come from the checkpoint;
    no ImageNet download), ``MODEL.WEIGHTS`` set to ``weights`` and ``MODEL.HEADS.NUM_CLASSES``
    from :func:`inference_num_classes`.
    """
    from fastreid_ext.engine.checkpoint import AtomicCheckpointer
    from fastreid_ext.engine.trainer import Trainer

    weights = cfg.MODEL.WEIGHTS if weights is None else weights
    if weights and not os.path.isfile(weights):
        raise FileNotFoundError(f"weights file {weights!r} does not exist")
    if not weights and not allow_untrained:
        raise ValueError("no weights given (MODEL.WEIGHTS is empty) for an inference model")
    cfg = cfg.clone()
    cfg.defrost()
    cfg.MODEL.BACKBONE.PRETRAIN = False
    cfg.MODEL.WEIGHTS = weights or ""
    if device is not None:
        cfg.MODEL.DEVICE = device
    n, source = inference_num_classes(cfg, weights)
    if source != "config":
        logger.info("MODEL.HEADS.NUM_CLASSES = %d (from %s)", n, source)
    cfg.MODEL.HEADS.NUM_CLASSES = n
    cfg.freeze()
    model = Trainer.build_model(cfg)
    if weights:
        AtomicCheckpointer(model, partial_load=cfg.MODEL.PARTIAL_LOAD, refuse_unused=True).load(weights)
    else:
        logger.warning("no weights: the model keeps its random initialisation")
    return model.eval(), cfg
