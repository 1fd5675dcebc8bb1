"""The host's meta-architectures with the plugin's loss registry (``MODEL.LOSSES.NAME``).

The host's ``Baseline`` picks its losses by string membership
(``fastreid/modeling/meta_arch/baseline.py:151-179``): a name it does not know, e.g. the
plugin's ``OSMLoss`` or ``CenterLoss``, is silently ignored. :func:`build_model` builds the
host's ``Baseline`` as :class:`RegistryLossBaseline` instead: the same network, ``forward``,
``preprocess_image`` and parameter names, whose ``losses`` is the plugin's
:class:`~fastreid_ext.modeling.losses.LossSet` of every name in ``MODEL.LOSSES.NAME`` (the
host's four losses are registered under their host names and call the host's functions with
the host's ``MODEL.LOSSES.*`` keys, :mod:`~fastreid_ext.modeling.losses.host_losses`), so a
YAML can mix them (``("CrossEntropyLoss", "TripletLoss", "CenterLoss", "OSMLoss")``) and an
unknown name raises. Losses with parameters (center-loss centers) are sub-modules
(``losses.<Name>.*`` in the checkpoint) stepped by their own optimizer (the trainer).

Other host meta-architectures (``MGN``, ``Distiller``, ``MoCo``) compute their own losses;
naming a loss they do not compute raises instead of being ignored. The plugin's own
meta-architectures are built as they are.

Before building a host meta-architecture, :func:`~fastreid_ext.modeling.video_utils.check_pretrained_available`
turns the host's download attempt for ``MODEL.BACKBONE.PRETRAIN True`` without a local file
into a clear error.
"""
from __future__ import annotations

from fastreid.config import configurable
from fastreid.modeling import build_model as host_build_model
from fastreid.modeling.meta_arch import META_ARCH_REGISTRY
from fastreid.modeling.meta_arch.baseline import Baseline

from ..losses import LossSet, build_losses
from ..video_utils import check_pretrained_available

__all__ = ["HOST_LOSSES", "RegistryLossBaseline", "build_model", "is_host_meta_arch"]

#: the names the host's ``Baseline.losses`` / ``MGN.losses`` understand
HOST_LOSSES = ("CrossEntropyLoss", "TripletLoss", "CircleLoss", "Cosface")


def is_host_meta_arch(name: str) -> bool:
    """Whether ``MODEL.META_ARCHITECTURE`` ``name`` is one of the host's own classes."""
    return META_ARCH_REGISTRY.get(name).__module__.startswith("fastreid.")


def loss_feat_dim(cfg) -> int:
    """Width of the head's training ``features`` (``fastreid/modeling/heads/embedding_head.py``):
    ``EMBEDDING_DIM`` when it is set and ``NECK_FEAT`` is ``after``, else ``FEAT_DIM``."""
    emb = cfg.MODEL.HEADS.EMBEDDING_DIM
    return emb if (emb > 0 and cfg.MODEL.HEADS.NECK_FEAT == "after") else cfg.MODEL.BACKBONE.FEAT_DIM


class RegistryLossBaseline(Baseline):
    """The host's ``Baseline`` whose ``losses`` is a :class:`LossSet` sub-module (module
    docstring). ``Baseline.forward`` calls ``self.losses(outputs, targets)`` unchanged."""

    @configurable
    def __init__(self, *, loss_set: LossSet, **kwargs):
        super().__init__(**kwargs)
        # a registered sub-module ("losses.*" in the state dict), read through the property below
        # (add_module refuses a name the class already defines)
        self._modules["losses"] = loss_set

    @property
    def losses(self) -> LossSet:  # shadows Baseline.losses (the string-membership method)
        return self._modules["losses"]

    @classmethod
    def from_config(cls, cfg):
        ret = super().from_config(cfg)
        num_classes = cfg.MODEL.HEADS.NUM_CLASSES
        ctx = {"feat_dim": loss_feat_dim(cfg), "num_classes": num_classes}
        weight = getattr(ret["heads"], "weight", None)
        if weight is not None and weight.dim() == 2 and weight.shape[1] == ctx["feat_dim"]:
            ctx["class_embeddings"] = weight  # OSM without CL centers: the classifier's rows
        ret["loss_set"] = build_losses(cfg, **ctx)
        return ret


def build_model(cfg):
    """``fastreid.modeling.build_model(cfg)``, with the host's ``Baseline`` built as
    :class:`RegistryLossBaseline` and the checks of the module docstring."""
    name = cfg.MODEL.META_ARCHITECTURE
    if not is_host_meta_arch(name):
        return host_build_model(cfg)
    check_pretrained_available(cfg)
    cls = META_ARCH_REGISTRY.get(name)
    if cls is Baseline:
        model = RegistryLossBaseline(cfg)
        model.to(cfg.MODEL.DEVICE)
        return model
    unknown = [n for n in cfg.MODEL.LOSSES.NAME if n not in HOST_LOSSES]
    if unknown and hasattr(cls, "losses"):
        raise ValueError(f"MODEL.META_ARCHITECTURE {name} computes its own losses ({', '.join(HOST_LOSSES)}); "
                         f"it would ignore MODEL.LOSSES.NAME {unknown}. Use Baseline or a plugin meta-architecture "
                         f"for the plugin's losses")
    return host_build_model(cfg)
