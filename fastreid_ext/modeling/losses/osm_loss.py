"""Online soft mining with class-aware attention (OSM + CAA, Wang et al., "Deep metric learning
by online soft mining and class-aware attention", AAAI 2019 / arXiv 1811.01459), and the
"CL centers" variant of the video-baseline paper ("Video Person Re-ID: Fantastic Techniques and Where to Find
Them", Methodology: "CL Centers OSM loss ... uses the center vectors from center loss as the
class label vector representations").

Class embeddings ``E`` (one row per class), in order of preference:

- ``MODEL.LOSSES.OSM.CL_CENTERS True``: the centers of the ``CenterLoss`` in the same
  ``MODEL.LOSSES.NAME`` (found in :meth:`OSMLoss.bind`; missing -> ``ValueError``). As in the
  paper's code the centers are not detached: OSM's gradient reaches them and is rescaled with
  the center loss's own step (``before_own_step``).
- otherwise the ``class_embeddings`` tensor the meta-architecture passes to
  ``build_losses`` (the classifier weights, Wang et al.'s choice), when given;
- otherwise a learnable ``(num_classes, feat_dim)`` parameter of this loss.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from .registry import LOSS_REGISTRY, ReIDLoss

__all__ = ["osm_loss", "OSMLoss"]


def osm_loss(features: torch.Tensor, targets: torch.Tensor, class_embeddings: torch.Tensor,
             alpha: float, sigma: float, l: float) -> torch.Tensor:  # noqa: E741
    """OSM + class-aware attention (Wang et al. 2018, Eqs. of Sec. 3; method notes).

    With ``x`` the L2-normalised features and ``d_ij = ||x_i - x_j||``:

    - online soft mining: positives ``s_ij = exp(-d_ij^2 / sigma^2)``, negatives
      ``s_ij = max(alpha - d_ij, 0)`` (clamped at 1e-12);
    - class-aware attention: ``a_i = softmax_c(x_i . e_c)[y_i]`` with ``e_c`` the class
      embeddings L2-normalised per class, ``A_ij = min(a_i, a_j)``;
    - ``w_ij = s_ij * A_ij`` with the diagonal removed;
    - ``L_P = 1/2 sum_P w_ij d_ij^2 / sum_P w_ij``,
      ``L_N = 1/2 sum_N w_ij max(alpha - d_ij, 0)^2 / sum_N w_ij``;
    - ``L = (1 - l) L_P + l L_N``. A term without any pair (no positives / negatives in the
      batch) is 0.

    Args:
        features: ``(B, D)``; targets: ``(B,)`` in ``[0, C)``; class_embeddings: ``(C, D)``.
        alpha: negative margin; sigma: positive bandwidth; l: weight of the negative term.
    """
    if features.dim() != 2 or class_embeddings.dim() != 2 or \
            features.shape[1] != class_embeddings.shape[1]:
        raise ValueError(f"features {tuple(features.shape)} and class embeddings "
                         f"{tuple(class_embeddings.shape)} must be (B, D) and (C, D)")
    # computed in (at least) float32 even under autocast: exp(-d^2 / sigma^2) underflows in fp16
    dtype = torch.promote_types(features.dtype, torch.float32)
    with torch.autocast(device_type=features.device.type, enabled=False):
        return _osm_loss(features.to(dtype), targets, class_embeddings.to(dtype), alpha, sigma, l)


def _osm_loss(features: torch.Tensor, targets: torch.Tensor, class_embeddings: torch.Tensor,
              alpha: float, sigma: float, l: float) -> torch.Tensor:  # noqa: E741
    n = features.shape[0]
    x = F.normalize(features, p=2, dim=1)                                      # (B, D)
    sq = x.pow(2).sum(dim=1, keepdim=True)
    dist = (sq + sq.t() - 2.0 * x @ x.t()).clamp(min=1e-12).sqrt()             # (B, B)

    pos = targets.view(-1, 1).eq(targets.view(1, -1))
    off_diag = ~torch.eye(n, dtype=torch.bool, device=features.device)
    pos_mask = (pos & off_diag).to(x.dtype)
    neg_mask = (~pos).to(x.dtype)

    s_pos = torch.exp(-dist.pow(2) / (sigma * sigma))
    s_neg = (alpha - dist).clamp(min=1e-12)
    sim = s_pos * pos_mask + s_neg * neg_mask

    emb = F.normalize(class_embeddings, p=2, dim=1)                            # (C, D)
    probs = F.softmax(x @ emb.t(), dim=1)                                      # (B, C)
    att = probs.gather(1, targets.view(-1, 1)).view(-1)                        # (B,)
    pair_att = torch.minimum(att.view(-1, 1), att.view(1, -1))                 # (B, B)

    w = sim * pair_att
    w_pos, w_neg = w * pos_mask, w * neg_mask
    loss_p = 0.5 * _safe_ratio((w_pos * dist.pow(2)).sum(), w_pos.sum())
    loss_n = 0.5 * _safe_ratio((w_neg * s_neg.pow(2)).sum(), w_neg.sum())
    return (1.0 - l) * loss_p + l * loss_n


def _safe_ratio(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    """``num / den``, and 0 when ``den == 0`` (then ``num == 0`` too: no pair has weight).
    Tiny positive ``den`` (e.g. ``exp(-d^2 / sigma^2)`` with a small sigma) is kept exact."""
    return num / torch.where(den > 0, den, torch.ones_like(den))


@LOSS_REGISTRY.register()
class OSMLoss(ReIDLoss):
    """Registered OSM + CAA loss; node ``MODEL.LOSSES.OSM`` (``SCALE``, ``ALPHA``, ``SIGMA``,
    ``L``, ``CL_CENTERS``). See the module docstring for where the class embeddings come from.
    """

    output_name = "loss_osm"
    required_keys = ("features",)
    pairwise = True
    config_node = "OSM"
    config_args = {"alpha": "ALPHA", "sigma": "SIGMA", "l": "L", "cl_centers": "CL_CENTERS"}

    def __init__(self, alpha: float, sigma: float, l: float, scale: float = 1.0,  # noqa: E741
                 cl_centers: bool = True, num_classes: int = 0, feat_dim: int = 0,
                 class_embeddings: Optional[torch.Tensor] = None):
        super().__init__(scale)
        self.alpha, self.sigma, self.l = float(alpha), float(sigma), float(l)
        self.cl_centers = bool(cl_centers)
        # references to tensors owned elsewhere are kept out of this module's parameters
        object.__setattr__(self, "_center_loss", None)
        object.__setattr__(self, "_external", None)
        self.class_embeddings: Optional[nn.Parameter] = None
        if self.cl_centers:
            return
        if class_embeddings is not None:
            object.__setattr__(self, "_external", class_embeddings)
        else:
            if num_classes <= 0 or feat_dim <= 0:
                raise ValueError("OSMLoss without CL centers or class_embeddings needs "
                                 f"num_classes and feat_dim > 0, got {num_classes}, {feat_dim}")
            self.class_embeddings = nn.Parameter(torch.randn(num_classes, feat_dim) * 0.01)

    @classmethod
    def from_config(cls, cfg, **ctx):
        return cls(num_classes=int(ctx.get("num_classes", 0)), feat_dim=int(ctx.get("feat_dim", 0)),
                   class_embeddings=ctx.get("class_embeddings"), **cls.config_kwargs(cfg))

    def bind(self, losses) -> None:
        if not self.cl_centers:
            return
        from .center_loss import CenterLoss

        centers = [loss for loss in losses.values() if isinstance(loss, CenterLoss)]
        if not centers:
            raise ValueError("MODEL.LOSSES.OSM.CL_CENTERS is True but MODEL.LOSSES.NAME has no "
                             "CenterLoss; add it or set CL_CENTERS False")
        object.__setattr__(self, "_center_loss", centers[0])

    def embeddings(self) -> torch.Tensor:
        """The ``(C, D)`` class embeddings in use."""
        if self.cl_centers:
            if self._center_loss is None:
                raise RuntimeError("OSMLoss with CL centers was not bound to a CenterLoss; "
                                   "build it with build_losses(...)")
            return self._center_loss.centers
        return self._external if self._external is not None else self.class_embeddings

    def compute(self, outputs, targets):
        return osm_loss(outputs["features"], targets, self.embeddings(), self.alpha, self.sigma, self.l)
