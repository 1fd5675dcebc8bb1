"""Losses of the video-baseline paper (center, OSM with class-aware attention / CL centers, attention loss)
against hand-worked values and float64 loop transcriptions of the formulas."""
import math
import random

import pytest
import torch

import fastreid_ext
from fastreid_ext.modeling.losses import (
    AttentionLoss,
    CenterLoss,
    OSMLoss,
    attention_loss,
    build_losses,
    center_loss,
    osm_loss,
)


def _cfg(*names):
    cfg = fastreid_ext.get_cfg()
    cfg.MODEL.LOSSES.NAME = names
    return cfg


# ---------------------------------------------------------------- center loss

def test_center_loss_hand_value():
    feats = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    centers = torch.tensor([[0.0, 0.0], [1.0, 1.0], [5.0, 5.0]])
    # ||(1,0)-(0,0)||^2 = 1, ||(0,2)-(1,1)||^2 = 2, mean = 1.5
    assert center_loss(feats, torch.tensor([0, 1]), centers).item() == pytest.approx(1.5)
    # both samples of class 2: (16+25 + 25+9) / 2
    assert center_loss(feats, torch.tensor([2, 2]), centers).item() == pytest.approx(37.5)


def test_center_loss_module_scale_and_registry():
    cfg = _cfg("CenterLoss")
    cfg.MODEL.LOSSES.CENTER.SCALE = 0.25
    losses = build_losses(cfg, feat_dim=2, num_classes=3)
    loss = losses["CenterLoss"]
    assert isinstance(loss, CenterLoss) and loss.centers.shape == (3, 2)
    with torch.no_grad():
        loss.centers.copy_(torch.tensor([[0.0, 0.0], [1.0, 1.0], [5.0, 5.0]]))
    out = losses({"features": torch.tensor([[1.0, 0.0], [0.0, 2.0]])}, torch.tensor([0, 1]))
    assert set(out) == {"loss_center"}
    assert out["loss_center"].item() == pytest.approx(0.25 * 1.5)


def test_center_loss_own_step_moves_centers_to_features():
    """Own SGD (lr 0.5) on the gradient rescaled by 1/SCALE: with B = 2 one sample per class,
    d/dc_y of mean ||x - c_y||^2 is (c_y - x); the step gives c_y - 0.5 (c_y - x) = (c_y + x)/2,
    whatever SCALE is. Class 2 has no sample and stays put."""
    cfg = _cfg("CenterLoss")
    cfg.MODEL.LOSSES.CENTER.SCALE = 0.01
    cfg.MODEL.LOSSES.CENTER.LR = 0.5
    losses = build_losses(cfg, feat_dim=2, num_classes=3)
    loss = losses["CenterLoss"]
    with torch.no_grad():
        loss.centers.copy_(torch.tensor([[0.0, 0.0], [1.0, 1.0], [5.0, 5.0]]))
    feats = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    owned = list(losses.own_optimizers())
    assert len(owned) == 1 and owned[0][0] is loss
    opt = owned[0][1]
    assert opt is loss.own_optimizer()  # same object every call
    before = center_loss(feats, torch.tensor([0, 1]), loss.centers.detach()).item()
    opt.zero_grad()
    losses({"features": feats}, torch.tensor([0, 1]))["loss_center"].backward()
    loss.before_own_step()
    opt.step()
    expected = torch.tensor([[0.5, 0.0], [0.5, 1.5], [5.0, 5.0]])
    assert torch.allclose(loss.centers.detach(), expected, atol=1e-6)
    assert center_loss(feats, torch.tensor([0, 1]), loss.centers.detach()).item() < before


def test_center_loss_rejects_bad_config():
    cfg = _cfg("CenterLoss")
    cfg.MODEL.LOSSES.CENTER.SCALE = 0.0
    with pytest.raises(ValueError, match="SCALE"):
        build_losses(cfg, feat_dim=2, num_classes=3)
    with pytest.raises(KeyError, match="num_classes"):
        build_losses(_cfg("CenterLoss"), feat_dim=2)
    loss = build_losses(_cfg("CenterLoss"), feat_dim=2, num_classes=3)
    with pytest.raises(KeyError, match="features"):
        loss({"cls_outputs": torch.zeros(2, 3)}, torch.tensor([0, 1]))


# ---------------------------------------------------------------- OSM

def _osm_reference(feats, labels, emb, alpha, sigma, l):
    """Float64 loop transcription of Wang et al. 2018 OSM + CAA (method notes)."""
    n = len(feats)

    def norm(v):
        s = math.sqrt(sum(a * a for a in v))
        return [a / s for a in v]

    x = [norm(f) for f in feats]
    e = [norm(c) for c in emb]
    att = []
    for i in range(n):
        logits = [sum(a * b for a, b in zip(x[i], ec)) for ec in e]
        z = sum(math.exp(v) for v in logits)
        att.append(math.exp(logits[labels[i]]) / z)
    num_p = den_p = num_n = den_n = 0.0
    for i in range(n):
        for j in range(n):
            if i == j:
                continue
            d = math.sqrt(sum((a - b) ** 2 for a, b in zip(x[i], x[j])))
            a_ij = min(att[i], att[j])
            if labels[i] == labels[j]:
                w = math.exp(-d * d / sigma ** 2) * a_ij
                num_p += w * d * d
                den_p += w
            else:
                s_neg = max(alpha - d, 1e-12)
                w = s_neg * a_ij
                num_n += w * s_neg * s_neg
                den_n += w
    lp = 0.5 * num_p / den_p if den_p > 0 else 0.0
    ln = 0.5 * num_n / den_n if den_n > 0 else 0.0
    return (1 - l) * lp + l * ln


def test_osm_hand_value():
    """x1 = (1,0), x2 = (0,1) of class 0 and x3 = (-1,0) of class 1 (given unnormalised);
    class embeddings e0 = (1,0), e1 = (0,1); alpha 2.5, sigma 1, l 0.5.
    d12 = sqrt2, d13 = 2, d23 = sqrt2; a1 = a3 = p = e/(1+e), a2 = q = 1/(1+e).
    L_P = 1/2 d12^2 = 1 (one kind of positive pair).
    Negatives: s13 = 0.5, w13 = 0.5 p; s23 = 2.5 - sqrt2, w23 = s23 q;
    L_N = 1/2 (w13 s13^2 + w23 s23^2) / (w13 + w23); L = 0.5 L_P + 0.5 L_N."""
    p, q = math.e / (1 + math.e), 1 / (1 + math.e)
    s13, s23 = 0.5, 2.5 - math.sqrt(2)
    w13, w23 = s13 * p, s23 * q
    ln = 0.5 * (w13 * s13 ** 2 + w23 * s23 ** 2) / (w13 + w23)
    expected = 0.5 * 1.0 + 0.5 * ln
    feats = torch.tensor([[3.0, 0.0], [0.0, 0.5], [-2.0, 0.0]])
    emb = torch.tensor([[2.0, 0.0], [0.0, 7.0]])  # normalised per class inside
    got = osm_loss(feats, torch.tensor([0, 0, 1]), emb, alpha=2.5, sigma=1.0, l=0.5)
    assert got.item() == pytest.approx(expected, rel=1e-5)


def test_osm_matches_loop_transcription():
    rng = random.Random(0)
    n, d, c = 8, 5, 4
    feats = [[rng.gauss(0, 1) for _ in range(d)] for _ in range(n)]
    emb = [[rng.gauss(0, 1) for _ in range(d)] for _ in range(c)]
    labels = [0, 0, 1, 1, 2, 2, 3, 3]
    for alpha, sigma, l in [(2.0709, 0.1986, 0.4835), (1.2, 0.8, 0.5), (0.9, 0.5, 0.1)]:
        expected = _osm_reference(feats, labels, emb, alpha, sigma, l)
        got = osm_loss(torch.tensor(feats, dtype=torch.float64), torch.tensor(labels),
                       torch.tensor(emb, dtype=torch.float64), alpha, sigma, l)
        assert got.item() == pytest.approx(expected, rel=1e-9, abs=1e-12)


def test_osm_without_positives_or_negatives_is_finite():
    feats = torch.randn(3, 4, dtype=torch.float64)
    emb = torch.randn(3, 4, dtype=torch.float64)
    # no positive pair: only the negative term
    labels = torch.tensor([0, 1, 2])
    got = osm_loss(feats, labels, emb, 2.0, 0.5, 0.3)
    ref = _osm_reference(feats.tolist(), labels.tolist(), emb.tolist(), 2.0, 0.5, 0.3)
    assert torch.isfinite(got) and got.item() == pytest.approx(ref, rel=1e-9)
    # one identity: only the positive term
    got = osm_loss(feats, torch.tensor([1, 1, 1]), emb, 2.0, 0.5, 0.3)
    ref = _osm_reference(feats.tolist(), [1, 1, 1], emb.tolist(), 2.0, 0.5, 0.3)
    assert torch.isfinite(got) and got.item() == pytest.approx(ref, rel=1e-9)


def test_osm_cl_centers_uses_center_loss_centers():
    cfg = _cfg("CenterLoss", "OSMLoss")
    cfg.MODEL.LOSSES.OSM.CL_CENTERS = True
    cfg.MODEL.LOSSES.OSM.SCALE = 2.0
    losses = build_losses(cfg, feat_dim=3, num_classes=2)
    osm, center = losses["OSMLoss"], losses["CenterLoss"]
    assert osm.embeddings() is center.centers
    assert not [n for n, _ in osm.named_parameters()]  # centers belong to the center loss
    feats = torch.randn(4, 3, requires_grad=True)
    labels = torch.tensor([0, 0, 1, 1])
    out = losses({"features": feats}, labels)
    o = cfg.MODEL.LOSSES.OSM
    ref = _osm_reference(feats.tolist(), labels.tolist(), center.centers.tolist(), o.ALPHA, o.SIGMA, o.L)
    assert out["loss_osm"].item() == pytest.approx(2.0 * ref, rel=1e-4)
    # linked, not copied: moving the centers changes OSM
    with torch.no_grad():
        center.centers.copy_(torch.tensor([[1.0, 0, 0], [0, 1.0, 0]]))
    ref2 = _osm_reference(feats.tolist(), labels.tolist(), center.centers.tolist(), o.ALPHA, o.SIGMA, o.L)
    assert losses({"features": feats}, labels)["loss_osm"].item() == pytest.approx(2.0 * ref2, rel=1e-4)


def test_osm_gradients_finite_and_reach_cl_centers():
    """d_ii = 0 on the diagonal must not give NaN gradients (sqrt clamped); as in the paper's
    code the CL centers are not detached, so OSM's gradient reaches them."""
    cfg = _cfg("CenterLoss", "OSMLoss")
    losses = build_losses(cfg, feat_dim=3, num_classes=2)
    feats = torch.randn(4, 3, requires_grad=True)
    losses["OSMLoss"]({"features": feats}, torch.tensor([0, 0, 1, 1])).backward()
    assert torch.isfinite(feats.grad).all() and feats.grad.abs().sum() > 0
    centers_grad = losses["CenterLoss"].centers.grad
    assert centers_grad is not None and torch.isfinite(centers_grad).all()


def test_osm_under_autocast_matches_float32():
    feats, emb = torch.randn(6, 8), torch.randn(3, 8)
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    ref = osm_loss(feats, labels, emb, 2.0709, 0.1986, 0.4835)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = osm_loss(feats, labels, emb, 2.0709, 0.1986, 0.4835)
    assert got.dtype == torch.float32 and got.item() == pytest.approx(ref.item(), rel=1e-6)


def test_osm_cl_centers_needs_center_loss():
    cfg = _cfg("OSMLoss")
    cfg.MODEL.LOSSES.OSM.CL_CENTERS = True
    with pytest.raises(ValueError, match="CenterLoss"):
        build_losses(cfg, feat_dim=3, num_classes=2)


def test_osm_class_embeddings_from_context_or_own():
    cfg = _cfg("OSMLoss")
    cfg.MODEL.LOSSES.OSM.CL_CENTERS = False
    weight = torch.nn.Parameter(torch.randn(2, 3))
    losses = build_losses(cfg, feat_dim=3, num_classes=2, class_embeddings=weight)
    assert losses["OSMLoss"].embeddings() is weight
    assert not list(losses.parameters())  # the classifier weight stays the head's
    own = build_losses(cfg, feat_dim=3, num_classes=2)["OSMLoss"]
    assert isinstance(own, OSMLoss) and own.embeddings().shape == (2, 3)
    assert [n for n, _ in own.named_parameters()] == ["class_embeddings"]


# ---------------------------------------------------------------- attention loss

def test_attention_loss_hand_value_counts_only_erased_frames():
    scores = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    erased = torch.tensor([[True, False, True], [False, False, True]])
    # Eq. (1): (1 + 3 + 6) / N with N = 6 frames
    assert attention_loss(scores, erased).item() == pytest.approx(10.0 / 6.0)
    # scores of frames that were not erased do not matter
    bumped = scores + (~erased).float() * 100.0
    assert attention_loss(bumped, erased).item() == pytest.approx(10.0 / 6.0)
    assert attention_loss(scores, torch.zeros_like(erased)).item() == 0.0


def test_attention_loss_module_and_gradient():
    cfg = _cfg("AttentionLoss")
    cfg.MODEL.LOSSES.ATT.SCALE = 3.0
    losses = build_losses(cfg)
    assert isinstance(losses["AttentionLoss"], AttentionLoss)
    scores = torch.tensor([[0.5, 1.5], [2.0, 0.0]], requires_grad=True)
    erased = torch.tensor([[False, True], [True, True]])
    out = losses({"attention_scores": scores, "erased": erased}, torch.tensor([0, 1]))
    assert out["loss_att"].item() == pytest.approx(3.0 * (1.5 + 2.0 + 0.0) / 4)
    out["loss_att"].backward()
    assert torch.equal(scores.grad, erased.float() * 3.0 / 4)
    with pytest.raises(KeyError, match="attention_scores"):
        losses({"features": torch.zeros(2, 2), "erased": erased}, torch.tensor([0, 1]))
    with pytest.raises(ValueError, match=r"\(B, T\)"):
        attention_loss(scores, erased[:, :1])
