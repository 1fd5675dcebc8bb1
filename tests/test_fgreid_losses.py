"""FGReID's losses (Eq. 11-12 of the FGReID paper) on hand-worked cases, and through the registry."""
import math

import pytest
import torch

import fastreid_ext
import fgreid
from fastreid.utils.events import EventStorage
from fastreid_ext.modeling.losses import build_losses
from fgreid.losses import (
    averaged_cross_entropy,
    kl_consistency,
    satisfied_rank,
    satisfied_rank_can_rank,
    variance_regularization,
)

LOG = torch.log


def test_variance_regularization_hand_worked():
    # class 0: {0, 3, 6} -> mean 3, squared deviations 9, 0, 9 -> 6; class 1: {1, 1} -> 0
    f = torch.tensor([[0.0], [1.0], [3.0], [1.0], [6.0]])
    y = torch.tensor([0, 1, 0, 1, 0])
    assert variance_regularization(f, y).item() == pytest.approx(6.0)
    # vectors: class 0 {(0,0), (2,0)} -> 1; class 5 {(5,5)} alone -> 0; squared norms summed over dims
    f2 = torch.tensor([[0.0, 0.0], [2.0, 0.0], [5.0, 5.0]])
    assert variance_regularization(f2, torch.tensor([0, 0, 5])).item() == pytest.approx(1.0)
    f3 = torch.tensor([[0.0, 0.0], [2.0, 2.0], [1.0, 0.0], [1.0, 4.0]])
    # class 0: mean (1,1), sq dev 2, 2 -> 2; class 1: mean (1,2), sq dev 4, 4 -> 4
    assert variance_regularization(f3, torch.tensor([0, 0, 1, 1])).item() == pytest.approx(6.0)


def test_kl_consistency_hand_worked():
    y1 = LOG(torch.tensor([[0.5, 0.5]]))
    y2 = LOG(torch.tensor([[0.25, 0.75]]))
    kl = 0.5 * math.log(0.5 / 0.25) + 0.5 * math.log(0.5 / 0.75)
    assert kl_consistency(y1, y2, margin=0.005).item() == pytest.approx(kl - 0.005, rel=1e-6)
    assert kl_consistency(y1, y1, margin=0.005).item() == 0.0  # relu(0 - m_cs)
    # direction: KL(p1 || p2), not KL(p2 || p1)
    kl_rev = 0.25 * math.log(0.25 / 0.5) + 0.75 * math.log(0.75 / 0.5)
    assert kl_consistency(y2, y1, margin=0.0).item() == pytest.approx(kl_rev, rel=1e-6)


def test_satisfied_rank_hand_worked():
    y1 = LOG(torch.tensor([[0.5, 0.5], [0.1, 0.9]]))
    y2 = LOG(torch.tensor([[0.25, 0.75], [0.6, 0.4]]))
    t = torch.tensor([1, 0])
    # sample 0: p1 .5, p2 .75: L_r = 1.75, L_s = 2 - 1.25 = .75 -> .75
    # sample 1: p1 .1, p2 .6 : L_r = 1.5, L_s = 2 - .7 = 1.3 -> 1.3
    assert satisfied_rank(y1, y2, t, 2.0, 1.0).item() == pytest.approx((0.75 + 1.3) / 2, rel=1e-6)
    # small rank margin: sample 0 L_r = relu(.5 - .75 + .1) = 0
    assert satisfied_rank(y1[:1], y2[:1], t[:1], 0.1, 1.0).item() == pytest.approx(0.0, abs=1e-7)


def _true_class_probs(y, t):
    return y.double().softmax(dim=1).gather(1, t.view(-1, 1)).squeeze(1)


def test_satisfied_rank_term_inactive_at_the_papers_margins():
    # m_r = 2, m_s = 1: L_r = p1 - p2 + 2 >= 1 and L_s = 2 - p1 - p2, L_s - L_r = -2 p1 <= 0, so
    # the min is always L_s: loss and gradient are those of mean(2 - p1 - p2) (float64 reference)
    g = torch.Generator().manual_seed(0)
    y1 = (3 * torch.randn(2000, 7, generator=g)).requires_grad_()
    y2 = (3 * torch.randn(2000, 7, generator=g)).requires_grad_()
    t = torch.randint(0, 7, (2000,), generator=g)
    loss = satisfied_rank(y1, y2, t, 2.0, 1.0)
    ref = (2 - _true_class_probs(y1, t) - _true_class_probs(y2, t)).mean()
    assert loss.item() == pytest.approx(ref.item(), rel=1e-5)
    g1, g2 = torch.autograd.grad(loss, (y1, y2))
    r1, r2 = torch.autograd.grad(ref, (y1, y2))
    torch.testing.assert_close(g1, r1, rtol=1e-4, atol=1e-8)
    torch.testing.assert_close(g2, r2, rtol=1e-4, atol=1e-8)
    assert not satisfied_rank_can_rank(2.0, 1.0)


def test_satisfied_rank_term_acts_where_it_can():
    # m_r = 0.5, m_s = 1: L_r < L_s exactly when p1 < m_s - m_r / 2 = 0.75
    g = torch.Generator().manual_seed(1)
    y1 = (3 * torch.randn(2000, 7, generator=g)).requires_grad_()
    y2 = (3 * torch.randn(2000, 7, generator=g)).requires_grad_()
    t = torch.randint(0, 7, (2000,), generator=g)
    p1, p2 = _true_class_probs(y1, t), _true_class_probs(y2, t)
    rank = p1 < 0.75
    assert 100 < int(rank.sum()) < 1900  # both cases occur
    ref = torch.where(rank, torch.relu(p1 - p2 + 0.5), 2 - p1 - p2).mean()
    loss = satisfied_rank(y1, y2, t, 0.5, 1.0)
    assert loss.item() == pytest.approx(ref.item(), rel=1e-5)
    # where the rank term acts (and is positive) it pushes p1 down, unlike the limit term
    (d1,) = torch.autograd.grad(loss, (y1,))
    on = rank & (p1 - p2 + 0.5 > 0)
    dp1 = d1.double().gather(1, t.view(-1, 1)).squeeze(1)
    assert bool((dp1[on] > 0).all()) and bool((dp1[~rank] < 0).all())
    assert satisfied_rank_can_rank(0.5, 1.0)


def test_averaged_cross_entropy_hand_worked():
    y1 = LOG(torch.tensor([[0.5, 0.5]]))
    y2 = LOG(torch.tensor([[0.25, 0.75]]))
    t = torch.tensor([1])
    want = (math.log(2.0) - math.log(0.75)) / 2
    assert averaged_cross_entropy([y1, y2], t, eps=0.0).item() == pytest.approx(want, rel=1e-6)
    assert averaged_cross_entropy([y2], t, eps=0.0).item() == pytest.approx(-math.log(0.75), rel=1e-6)
    with pytest.raises(ValueError):
        averaged_cross_entropy([], t)


def _cfg(names):
    cfg = fastreid_ext.get_cfg()
    fgreid.add_fgreid_config(cfg)
    cfg.MODEL.LOSSES.NAME = names
    return cfg


def test_registry_builds_scaled_losses_with_their_names():
    cfg = _cfg(("AveragedCrossEntropyLoss", "VarianceLoss", "KLConsistencyLoss", "SatisfiedRankLoss"))
    cfg.MODEL.LOSSES.CE.EPSILON = 0.0
    cfg.MODEL.LOSSES.VAR.SCALE = 0.5
    cfg.MODEL.LOSSES.KL.SCALE = 2.0
    cfg.MODEL.LOSSES.KL.MARGIN = 0.0
    cfg.MODEL.LOSSES.SR.SCALE = 3.0
    losses = build_losses(cfg, feat_dim=1, num_classes=2)
    y1 = LOG(torch.tensor([[0.5, 0.5]]))
    y2 = LOG(torch.tensor([[0.25, 0.75]]))
    out = {"y1": y1, "y2": y2, "features": torch.tensor([[1.0]]), "pred_class_logits": y2}
    with EventStorage(0):
        got = losses(out, torch.tensor([1]))
    assert sorted(got) == ["loss_cls", "loss_kl", "loss_sr", "loss_var"]
    assert got["loss_cls"].item() == pytest.approx((math.log(2.0) - math.log(0.75)) / 2, rel=1e-6)
    assert got["loss_var"].item() == 0.0
    kl = 0.5 * math.log(2.0) + 0.5 * math.log(0.5 / 0.75)
    assert got["loss_kl"].item() == pytest.approx(2.0 * kl, rel=1e-6)
    assert got["loss_sr"].item() == pytest.approx(3.0 * 0.75, rel=1e-6)


def test_pairwise_losses_need_both_label_vectors():
    losses = build_losses(_cfg(("KLConsistencyLoss",)))
    with pytest.raises(KeyError, match="y2"):
        losses({"y1": torch.zeros(2, 3), "features": torch.zeros(2, 4)}, torch.tensor([0, 1]))
    ce = build_losses(_cfg(("AveragedCrossEntropyLoss",)))
    with pytest.raises(KeyError, match="y1"):
        ce({"features": torch.zeros(2, 4)}, torch.tensor([0, 1]))
