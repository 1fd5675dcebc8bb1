"""Initialise ``CNN_MARS`` from a checkpoint of a model trained on MARS (the FGReID paper, 3.1).

Key mapping: the checkpoint is the host's format (a dict with ``"model"`` -> state_dict, or a
bare state_dict). Every key ``<prefix><name>`` (default prefix ``backbone.``, the
``VideoBaseline``'s ``self.backbone``) is loaded as ``<name>`` of the ResNet; all other keys
(heads, classifier, center-loss centers...) are ignored and counted in the log.
Every backbone tensor must be present with the same shape.
"""
from __future__ import annotations

import logging
import os
from typing import Dict

import torch
from torch import nn

logger = logging.getLogger(__name__)


def extract_backbone_state(checkpoint: Dict, prefix: str = "backbone.") -> Dict[str, torch.Tensor]:
    """The ``prefix``-ed tensors of a checkpoint, with the prefix stripped."""
    state = checkpoint.get("model", checkpoint) if isinstance(checkpoint, dict) else None
    if not isinstance(state, dict):
        raise TypeError("checkpoint must be a state_dict or a dict with key 'model'")
    # DistributedDataParallel checkpoints prefix everything with "module."
    state = {k[len("module."):] if k.startswith("module.") else k: v for k, v in state.items()}
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


def load_mars_backbone(backbone: nn.Module, path: str, prefix: str = "backbone.") -> None:
    """Load ``path``'s backbone weights into ``backbone`` (strict on the backbone keys)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"MODEL.FGREID.MARS_WEIGHTS={path!r} does not exist. Train the video baseline on MARS "
            "first (projects/FGReID/configs/MARS/stage1_video_baseline.yml, see "
            "projects/FGReID/README.md) or set MODEL.FGREID.MARS_WEIGHTS '' for a randomly "
            "initialised CNN_MARS (the paper's 'Baseline')."
        )
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    state = extract_backbone_state(checkpoint, prefix)
    if not state:
        raise KeyError(f"{path} has no key starting with {prefix!r} (MODEL.FGREID.MARS_PREFIX)")
    own = backbone.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        raise KeyError(
            f"{path}: backbone keys do not match CNN_MARS (same MODEL.BACKBONE needed); "
            f"missing {missing[:5]}{'...' if len(missing) > 5 else ''}, "
            f"unexpected {unexpected[:5]}{'...' if len(unexpected) > 5 else ''}"
        )
    bad = [k for k in own if own[k].shape != state[k].shape]
    if bad:
        raise ValueError(f"{path}: shape mismatch for {bad[:5]}")
    backbone.load_state_dict(state, strict=True)
    total = len(checkpoint.get("model", checkpoint))
    logger.info(f"CNN_MARS: loaded {len(state)} backbone tensors from {path} "
                f"({total - len(state)} other tensors ignored)")


#: keys of a FGReID state_dict that depend on the training classes (not transferred by FGReID*)
CLASS_DEPENDENT_PREFIXES = ("classifier.", "losses.")


def load_pretrained_fgreid(model: nn.Module, path: str) -> None:
    """FGReID* (the FGReID paper, Tables 5-6: "end-to-end pre-training on MARS"): load every weight of
    a whole FGReID checkpoint ``path`` into ``model`` except the class-dependent ones
    (``classifier.*``, ``losses.*`` such as the center-loss centers), like the public code's
    ``--mode-name`` (which skips ``classifier`` keys). Strict on the transferred keys."""
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"MODEL.FGREID.PRETRAINED_MODEL={path!r} does not exist. Train FGReID on MARS first "
            "(projects/FGReID/configs/MARS/fgreid.yml) or set it to '' (plain FGReID).")
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    state = checkpoint.get("model", checkpoint) if isinstance(checkpoint, dict) else None
    if not isinstance(state, dict):
        raise TypeError(f"{path}: not a state_dict or a dict with key 'model'")
    state = {k[len("module."):] if k.startswith("module.") else k: v for k, v in state.items()}
    keep = {k: v for k, v in state.items() if not k.startswith(CLASS_DEPENDENT_PREFIXES)}
    own = {k: v for k, v in model.state_dict().items() if not k.startswith(CLASS_DEPENDENT_PREFIXES)}
    missing, unexpected = sorted(set(own) - set(keep)), sorted(set(keep) - set(own))
    if missing or unexpected:
        raise KeyError(f"{path}: not a checkpoint of the same FGReID architecture; missing "
                       f"{missing[:5]}{'...' if len(missing) > 5 else ''}, unexpected "
                       f"{unexpected[:5]}{'...' if len(unexpected) > 5 else ''}")
    bad = [k for k in own if own[k].shape != keep[k].shape]
    if bad:
        raise ValueError(f"{path}: shape mismatch for {bad[:5]} (same MODEL.FGREID / BACKBONE needed)")
    model.load_state_dict(keep, strict=False)
    logger.info(f"FGReID*: loaded {len(keep)} tensors from {path} "
                f"({len(state) - len(keep)} class-dependent tensors left at their init)")
