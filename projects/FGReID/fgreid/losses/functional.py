"""Pure functions of FGReID's own losses (the FGReID paper, section 4.1, Eq. 11-12)."""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

from fastreid.modeling.losses import cross_entropy_loss


def averaged_cross_entropy(logits: Sequence[torch.Tensor], targets: torch.Tensor,
                           eps: float = 0.1, alpha: float = 0.2) -> torch.Tensor:
    """``L_CE^avg``: label-smoothed cross-entropy on each label vector (Y1, Y2), averaged.

    Each term is the host's ``cross_entropy_loss`` (same smoothing semantics).
    """
    if len(logits) == 0:
        raise ValueError("averaged_cross_entropy needs at least one logits tensor")
    return sum(cross_entropy_loss(y, targets, eps, alpha) for y in logits) / len(logits)


VARIANCE_NORMS = ("paper", "code")


def variance_regularization(features: torch.Tensor, targets: torch.Tensor,
                            norm: str = "paper") -> torch.Tensor:
    """Eq. (11): ``R_var = sum_{c in B} 1/n_c sum_i ||f_i^c - mean_c||^2`` (``norm="paper"``).

    ``norm="code"``: the normalisation of the authors' public code, for which its released
    ``W_var`` was tuned: ``sum_c sum_i ||f_i^c - mean_c||^2 / ((T - 1) * B // T)`` with the
    clip length ``T = 4`` standing in for ``K = 4`` clips per identity there, i.e. the mean over
    the ``P`` identities of the unbiased within-identity variance,
    ``1/P sum_c 1/(n_c - 1) sum_i ||f_i^c - mean_c||^2`` (identities with one sample add 0).
    With ``P x K = 32 x 5`` the paper's form is ``P (K - 1) / K = 25.6`` times larger.

    The squared deviation of the vector ``f*`` is summed over feature dimensions.
    Args:
        features: ``(B, D)`` embeddings ``f*``.
        targets: ``(B,)`` identity labels.
        norm: ``"paper"`` or ``"code"``.
    """
    if features.shape[0] != targets.shape[0]:
        raise ValueError("features and targets disagree on the batch size")
    if norm not in VARIANCE_NORMS:
        raise ValueError(f"unknown variance normalisation {norm!r} (MODEL.LOSSES.VAR.NORM); "
                         f"known: {', '.join(VARIANCE_NORMS)}")
    # Accumulated in (at least) float32: under CUDA autocast ``pow``/``sum`` return float32
    # while a half accumulator would make ``index_add`` fail (self Half, source Float).
    f = features.to(torch.promote_types(features.dtype, torch.float32))
    classes, inverse, counts = torch.unique(targets, return_inverse=True, return_counts=True)
    k = classes.numel()
    n = counts.to(f.dtype)
    sums = f.new_zeros(k, f.shape[1]).index_add(0, inverse, f)  # (K, D)
    means = sums / n[:, None]
    sq_dev = (f - means[inverse]).pow(2).sum(dim=1)  # (B,)
    sq_sum = f.new_zeros(k).index_add(0, inverse, sq_dev.to(f.dtype))  # (K,)
    if norm == "code":
        return (sq_sum / (n - 1).clamp_min(1)).mean()
    return (sq_sum / n).sum()


def kl_consistency(y1: torch.Tensor, y2: torch.Tensor, margin: float = 0.005) -> torch.Tensor:
    """``L_cns = relu(KL(p1 || p2) - m_cs)`` with ``p = softmax(Y)``, KL averaged over the batch.

    Aligns the coarse-grained prediction Y1 with the fine-grained one Y2 (section 4.1).
    """
    logp1 = F.log_softmax(y1, dim=1)
    logp2 = F.log_softmax(y2, dim=1)
    kl = (logp1.exp() * (logp1 - logp2)).sum(dim=1).mean()
    return F.relu(kl - margin)


def satisfied_rank(y1: torch.Tensor, y2: torch.Tensor, targets: torch.Tensor,
                   margin_rank: float = 2.0, margin_limit: float = 1.0) -> torch.Tensor:
    """Satisfied rank loss ``L_sr = mean(min(L_r, L_s))`` (Zhu et al. 2020, used in section 4.1).

    With ``p1, p2`` the true-class probabilities of Y1 and Y2:
    ``L_r = relu(p1 - p2 + m_r)`` (Y2 should rank above Y1) and
    ``L_s = relu(2 m_s - p1 - p2)`` (stop once both are confident).

    Which term acts: ``L_r < L_s`` exactly when ``p1 < m_s - m_r / 2`` (for ``L_s > 0``). At the
    paper's margins ``m_r = 2, m_s = 1`` that bound is 0, so the rank term never acts and
    ``L_sr = mean(2 - p1 - p2)``: both branches are only pushed towards the true class, with no
    ranking between them. The public code (``loss/loss.py:146-150``, ``Satisfied_Rank_loss2``,
    ``mr=2, ms=1``) has the same property. The rank term can act when ``m_r < 2 m_s``, e.g.
    ``m_r = 0.5, m_s = 1``: on samples with ``p1 < 0.75``.
    """
    idx = targets.view(-1, 1)
    p1 = y1.softmax(dim=1).gather(1, idx).squeeze(1)
    p2 = y2.softmax(dim=1).gather(1, idx).squeeze(1)
    l_rank = F.relu(p1 - p2 + margin_rank)
    l_limit = F.relu(2 * margin_limit - p1 - p2)
    return torch.minimum(l_rank, l_limit).mean()


def satisfied_rank_can_rank(margin_rank: float, margin_limit: float) -> bool:
    """Whether the rank term of :func:`satisfied_rank` can ever be the smaller one: some
    ``p1 >= 0`` satisfies ``p1 < m_s - m_r / 2``, i.e. ``m_r < 2 m_s``."""
    return margin_rank < 2 * margin_limit
