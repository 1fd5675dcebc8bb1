"""BNNeck + classifier (Luo et al., "Bag of Tricks and A Strong Baseline for Deep Person
Re-identification", CVPRW 2019, Fig. 5): a batch normalisation of the ``(B, D)`` feature with a
frozen bias, then a bias-free classifier on the normalised feature.

The arithmetic and the initialisation are those of the host's ``EmbeddingHead`` after its pooling
(``fastreid/modeling/heads/embedding_head.py``): host ``BatchNorm`` (``get_norm``, bias frozen,
weight 1), classifier weight ``N(0, init_std^2)``, the host's ``any_softmax`` classifier layer
(``Linear``, ``ArcSoftmax``, ``CircleSoftmax``, ``CosSoftmax``) on the logits. ``tests/test_meta_arch_base.py``
checks equality with the host head.
"""
from __future__ import annotations

import math
from typing import Dict, Optional

import torch
import torch.nn.functional as F
from torch import nn

from fastreid.layers import any_softmax, get_norm
from fastreid.layers.weight_init import weights_init_kaiming

__all__ = ["BNNeckClassifier", "NECK_FEATS", "WEIGHT_INITS"]

NECK_FEATS = ("before", "after")
WEIGHT_INITS = ("normal", "linear_then_normal")


class BNNeckClassifier(nn.Module):
    """``(B, D)`` feature -> BNNeck -> classifier.

    Args:
        feat_dim: ``D``.
        num_classes: training identities (> 0).
        cls_type: a host ``any_softmax`` layer name (``MODEL.HEADS.CLS_LAYER``).
        scale, margin: of that layer (``MODEL.HEADS.SCALE`` / ``MARGIN``).
        norm_type: host norm name (``MODEL.HEADS.NORM``).
        neck_feat: the training ``features`` the metric losses see: ``"before"`` (the input)
            or ``"after"`` (the BNNeck output) (``MODEL.HEADS.NECK_FEAT``).
        init_std: std of the classifier weight's normal initialisation.
        weight_init: ``"normal"`` (the host's draw) or ``"linear_then_normal"`` (first the draw
            ``nn.Linear`` makes, then the normal one: the random stream of a model written with
            an ``nn.Linear`` classifier, so that its seeded runs keep their numbers).

    Parameters: ``bnneck`` (the BN) and ``weight`` ``(num_classes, D)``.
    """

    def __init__(self, feat_dim: int, num_classes: int, cls_type: str = "Linear", scale: float = 1.0,
                 margin: float = 0.0, norm_type: str = "BN", neck_feat: str = "before",
                 init_std: float = 0.01, weight_init: str = "normal"):
        super().__init__()
        if not hasattr(any_softmax, cls_type):
            raise KeyError(f"unknown MODEL.HEADS.CLS_LAYER {cls_type!r}; known: {any_softmax.__all__}")
        if neck_feat not in NECK_FEATS:
            raise KeyError(f"{neck_feat!r} is invalid for MODEL.HEADS.NECK_FEAT (before | after)")
        if weight_init not in WEIGHT_INITS:
            raise KeyError(f"unknown weight_init {weight_init!r}; known: {WEIGHT_INITS}")
        if int(num_classes) <= 0:
            raise ValueError(f"num_classes must be > 0, got {num_classes}")
        self.neck_feat = neck_feat
        self.bnneck = get_norm(norm_type, feat_dim, bias_freeze=True)
        self.bnneck.apply(weights_init_kaiming)
        self.weight = nn.Parameter(torch.empty(int(num_classes), feat_dim))
        if weight_init == "linear_then_normal":
            nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))  # nn.Linear.reset_parameters
        nn.init.normal_(self.weight, std=init_std)
        self.cls_layer = getattr(any_softmax, cls_type)(int(num_classes), scale, margin)

    def neck(self, v: torch.Tensor) -> torch.Tensor:
        """``(B, D) -> (B, D)``: the BNNeck output."""
        return self.bnneck(v[..., None, None])[..., 0, 0]

    def forward(self, v: torch.Tensor, targets: Optional[torch.Tensor] = None) -> Dict[str, torch.Tensor]:
        """Outputs for the loss registry: ``cls_outputs`` (the classifier layer's output, which
        margin layers compute from ``targets``), ``pred_class_logits`` (scaled logits),
        ``features`` (``v`` or the BNNeck output, per ``neck_feat``) and ``neck_features``
        (the BNNeck output, the usual test embedding)."""
        neck = self.neck(v)
        if self.cls_layer.__class__.__name__ == "Linear":
            logits = F.linear(neck, self.weight)
        else:
            logits = F.linear(F.normalize(neck), F.normalize(self.weight))
        cls_outputs = self.cls_layer(logits.clone(), targets)
        return {
            "cls_outputs": cls_outputs,
            "pred_class_logits": logits.mul(self.cls_layer.s),
            "features": v if self.neck_feat == "before" else neck,
            "neck_features": neck,
        }
