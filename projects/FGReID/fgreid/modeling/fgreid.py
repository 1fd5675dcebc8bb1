"""FGReID meta-architecture (Pathak, "Fine-Grained Re-Identification", section 3).

Two host ResNets (``CNN_ImageNet``, ``CNN_MARS``), a 1x1 reduction to ``c*`` on each,
the Global Feature Module (GAP -> temporal mean -> BN -> Y1), the parameter-free Fine-Grained
Module (Eq. 1-3), the Context Module (Eq. 4-9) with attentive pooling (Eq. 10) -> temporal mean
-> BN -> Y2, one shared classifier. Embedding ``f* = [f_ImageNet ; f_MARS]`` (``2 c*``).
Images ``(B, C, H, W)`` run the same code with ``T = 1`` (the temporal mean is then a no-op).
"""
from __future__ import annotations

import copy
import logging
from typing import Dict, Optional, Sequence

import torch
from torch import nn

from fastreid.config import configurable
from fastreid.layers.weight_init import weights_init_classifier, weights_init_kaiming
from fastreid.modeling.meta_arch.build import META_ARCH_REGISTRY
from fastreid_ext.modeling.losses import LossSet, build_losses
from fastreid_ext.modeling.meta_arch import ReidMetaArch
from fastreid_ext.modeling.video_utils import build_backbone_offline, frame_features

from ..config import validate_fgreid_config
from ..layers import (
    QKNonLocal,
    attentive_pooling,
    channel_weights,
    fine_grained_attention,
)
from .mars_init import load_mars_backbone, load_pretrained_fgreid

logger = logging.getLogger(__name__)

def apply_public_init(model: "FGReID") -> None:
    """The FGReID public code's initialisation (``models/ResNet.py:41-55``): the two 1x1
    reductions ``kaiming_normal_(mode='fan_in')`` with zero bias (``weights_init_kaiming``,
    ``tools/helplayer.py:12-15``); theta, g (and a key conv) and the classifier with PyTorch's
    default ``reset_parameters`` (the public code applies nothing to them); w_z stays zero."""
    for conv in (model.reduce_imagenet, model.reduce_mars):
        if conv is not None:
            nn.init.kaiming_normal_(conv.weight, a=0, mode="fan_in")
            nn.init.zeros_(conv.bias)
    if model.non_local is not None:
        for conv in (model.non_local.theta, model.non_local.phi, model.non_local.g):
            if conv is not None:
                conv.reset_parameters()
    model.classifier.reset_parameters()


@META_ARCH_REGISTRY.register()
class FGReID(ReidMetaArch):
    """See the module docstring. Ablation switches (Table 8) are the ``MODEL.FGREID`` keys.

    ``forward(batched_inputs)``: training -> dict of named losses; eval -> ``(B, D)``
    embedding, ``D = 2 c*`` (``c*`` when one branch is ablated).
    """

    @configurable
    def __init__(self, *, backbone_imagenet: nn.Module, backbone_mars: Optional[nn.Module],
                 feat_dim: int, reduced_dim: int, num_classes: int, losses: Optional[LossSet],
                 pixel_mean: Sequence[float], pixel_std: Sequence[float], nl_reduction: int = 4,
                 min_scope: str = "clip", use_s_channel: bool = True, use_non_local: bool = True,
                 shared_qk: bool = True, use_gfm: bool = True, use_context: bool = True,
                 use_fgm: bool = True, pretrained_model: str = "", init: str = "host"):
        """
        Args:
            backbone_imagenet: ``CNN_ImageNet``, ``(N, 3, H, W) -> (N, feat_dim, h, w)``.
            backbone_mars: ``CNN_MARS``; ``None`` shares ``backbone_imagenet`` ("Baseline-1R").
            reduced_dim: ``c*``.
            losses: built by ``build_losses`` (``None``: the model can only run in eval mode).
            pretrained_model: FGReID* -- a whole FGReID checkpoint trained on MARS whose
                weights (all but ``classifier.*`` / ``losses.*``) replace the initial ones.
            init: ``host`` (the host's ``weights_init_kaiming``, fan-out, on the reductions;
                fan-out theta / g; classifier ``N(0, 0.001)``, ``weights_init_classifier``) or
                ``public`` (:func:`apply_public_init`).

        ``min_scope``, ``init`` and the branch switches are validated values
        (:func:`fgreid.config.validate_fgreid_config`).
        """
        super().__init__(pixel_mean=pixel_mean, pixel_std=pixel_std)
        self.backbone_imagenet = backbone_imagenet
        self.backbone_mars = backbone_mars
        self.reduced_dim = reduced_dim
        self.min_scope = min_scope
        self.use_s_channel, self.use_fgm = use_s_channel, use_fgm
        self.use_gfm, self.use_context = use_gfm, use_context

        # f_ImageNet -> f'_ImageNet (always: the GFM and the FGM both read it)
        self.reduce_imagenet = nn.Conv2d(feat_dim, reduced_dim, kernel_size=1)
        self.reduce_imagenet.apply(weights_init_kaiming)
        self.bn_global = nn.BatchNorm1d(reduced_dim) if use_gfm else None
        if use_context:
            self.reduce_mars = nn.Conv2d(feat_dim, reduced_dim, kernel_size=1)
            self.reduce_mars.apply(weights_init_kaiming)
            self.non_local = QKNonLocal(reduced_dim, nl_reduction, shared_qk) if use_non_local else None
            self.bn_context = nn.BatchNorm1d(reduced_dim)
        else:
            self.reduce_mars, self.non_local, self.bn_context = None, None, None
        for bn in (self.bn_global, self.bn_context):
            if bn is not None:
                bn.apply(weights_init_kaiming)
        self.classifier = nn.Linear(reduced_dim, num_classes, bias=False)  # shared: Y1 and Y2
        self.classifier.apply(weights_init_classifier)
        if init == "public":
            apply_public_init(self)
        self.losses = losses
        if pretrained_model:
            load_pretrained_fgreid(self, pretrained_model)

    @classmethod
    def from_config(cls, cfg):
        validate_fgreid_config(cfg)  # build_config ran it; again for a config made by hand
        f = cfg.MODEL.FGREID
        num_branches = int(f.GFM) + int(f.CONTEXT)
        backbone_imagenet = build_backbone_offline(cfg)
        backbone_mars = None
        if f.CONTEXT and not f.SHARED_BACKBONE:
            mars_cfg = copy.deepcopy(cfg)
            mars_cfg.defrost()
            mars_cfg.MODEL.BACKBONE.PRETRAIN = False  # CNN_MARS never takes the ImageNet weights
            backbone_mars = build_backbone_offline(mars_cfg)
        target = backbone_imagenet if f.SHARED_BACKBONE else backbone_mars
        if target is not None:
            if cfg.MODEL.WEIGHTS or f.PRETRAINED_MODEL:
                # a full FGReID checkpoint (eval, fine-tuning, FGReID*) replaces these weights
                logger.info("MODEL.WEIGHTS / MODEL.FGREID.PRETRAINED_MODEL is set: CNN_MARS is "
                            "not initialised from MODEL.FGREID.MARS_WEIGHTS")
            elif f.MARS_WEIGHTS:
                load_mars_backbone(target, f.MARS_WEIGHTS, f.MARS_PREFIX)
            elif not f.SHARED_BACKBONE:
                logger.warning("MODEL.FGREID.MARS_WEIGHTS is empty: CNN_MARS starts from random "
                               "weights (the paper's 'Baseline', not 'FGReID')")
        num_classes = cls.num_classes_of(cfg)
        losses = build_losses(cfg, feat_dim=num_branches * f.REDUCED_DIM, num_classes=num_classes)
        return {
            "backbone_imagenet": backbone_imagenet,
            "backbone_mars": backbone_mars,
            "feat_dim": cfg.MODEL.BACKBONE.FEAT_DIM,
            "reduced_dim": f.REDUCED_DIM,
            "num_classes": num_classes,
            "losses": losses,
            **cls.pixel_config(cfg),
            "nl_reduction": f.NL_REDUCTION,
            "min_scope": f.MIN_SCOPE,
            "use_s_channel": f.S_CHANNEL,
            "use_non_local": f.NON_LOCAL,
            "shared_qk": f.SHARED_QK,
            "use_gfm": f.GFM,
            "use_context": f.CONTEXT,
            "use_fgm": f.FGM,
            "pretrained_model": "" if cfg.MODEL.WEIGHTS else f.PRETRAINED_MODEL,
            "init": f.INIT,
        }

    @property
    def embedding_dim(self) -> int:
        return self.reduced_dim * (int(self.use_gfm) + int(self.use_context))

    def extract(self, images: torch.Tensor) -> Dict[str, torch.Tensor]:
        """All intermediate outputs for ``(B, T, C, H, W)`` or ``(B, C, H, W)`` inputs (0..255).

        Returns a dict with ``features`` (``f*``, ``(B, D)``), ``y1`` / ``y2`` (``(B, C)``, for
        the branches present) and ``a_maps`` (``(B, T, h, w)``, when the context branch runs).
        """
        x = self.preprocess(images)  # (B, T, 3, H, W)
        b, t = x.shape[:2]
        maps_in = frame_features(self.backbone_imagenet, x).flatten(0, 1)  # (B*T, C', h, w)
        f_in = self.reduce_imagenet(maps_in)  # f'_ImageNet (B*T, c*, h, w)
        a_gap = f_in.mean(dim=(2, 3))  # A_gap (B*T, c*)
        out: Dict[str, torch.Tensor] = {}
        embeddings = []
        if self.use_gfm:
            f_global = self.bn_global(a_gap.view(b, t, -1).mean(dim=1))  # (B, c*)
            out["y1"] = self.classifier(f_global)
            embeddings.append(f_global)
        if self.use_context:
            maps_mars = maps_in if self.backbone_mars is None else \
                frame_features(self.backbone_mars, x).flatten(0, 1)
            f_mars = self.reduce_mars(maps_mars)  # f'_MARS (B*T, c*, h, w)
            a_maps = self.fine_grained_maps(f_in, a_gap, t)  # (B*T, 1, h, w)
            a1 = f_mars * a_maps  # Eq. 4
            a2 = a1 if self.non_local is None else self.non_local(a1, t)  # Eq. 5-9
            a3 = attentive_pooling(a2, a_maps)  # Eq. 10, (B*T, c*)
            f_context = self.bn_context(a3.view(b, t, -1).mean(dim=1))  # (B, c*)
            out["y2"] = self.classifier(f_context)
            out["a_maps"] = a_maps.view(b, t, *a_maps.shape[2:])
            embeddings.append(f_context)
        out["features"] = torch.cat(embeddings, dim=1)  # f* (B, D)
        return out

    def fine_grained_maps(self, f_in: torch.Tensor, a_gap: torch.Tensor, t: int) -> torch.Tensor:
        """The Fine-Grained Module: ``(B*T, c*, h, w) -> (B*T, 1, h, w)`` (Eq. 1-3), or ones
        for the "w/o FGM" ablation (attentive pooling then is a spatial average)."""
        if not self.use_fgm:
            return f_in.new_ones(f_in.shape[0], 1, *f_in.shape[2:])
        if self.use_s_channel:
            s_channel = channel_weights(a_gap)
        else:
            s_channel = torch.full_like(a_gap, 1.0 / a_gap.shape[1])
        return fine_grained_attention(f_in, s_channel, t, self.min_scope)

    def forward(self, batched_inputs):
        out = self.extract(self.batch_images(batched_inputs))
        if not self.training:
            return out["features"]
        targets = self.batch_targets(batched_inputs)
        if self.losses is None or len(self.losses) == 0:
            raise RuntimeError("FGReID has no losses (MODEL.LOSSES.NAME is empty)")
        out["pred_class_logits"] = out["y2"] if "y2" in out else out["y1"]
        out.pop("a_maps", None)
        return self.losses(out, targets)

    @torch.no_grad()
    def attention_maps(self, images: torch.Tensor) -> torch.Tensor:
        """``A_maps`` ``(B, T, h, w)`` of the Fine-Grained Module (eval mode, no grad)."""
        if not self.use_context:
            raise RuntimeError("no attention maps: the context branch is off (MODEL.FGREID.CONTEXT)")
        was_training = self.training
        self.eval()
        try:
            return self.extract(images)["a_maps"]
        finally:
            self.train(was_training)
