"""MG-RAFA meta-architecture and head: build from config, Eq. (7) losses against the
host's loss functions, eval embeddings, config switches of Table 2."""
import pytest
import torch

import fastreid_ext
import mgrafa
from fastreid.modeling import build_model
from fastreid.modeling.losses import cross_entropy_loss, triplet_loss
from fastreid.utils.events import EventStorage
from mgrafa.head import MGRAFAHead, resnet_map_size
from mgrafa.meta_arch import eq7_losses

B, T = 8, 4


def tiny_cfg(**mgrafa_keys):
    cfg = fastreid_ext.get_cfg()
    mgrafa.add_mgrafa_config(cfg)
    cfg.MODEL.META_ARCHITECTURE = "MGRAFANet"
    cfg.MODEL.HEADS.NAME = "MGRAFAHead"
    cfg.MODEL.BACKBONE.DEPTH = "18x"
    cfg.MODEL.BACKBONE.FEAT_DIM = 512
    cfg.MODEL.BACKBONE.PRETRAIN = False
    cfg.MODEL.HEADS.NUM_CLASSES = 4
    cfg.MODEL.LOSSES.NAME = ("CrossEntropyLoss", "TripletLoss")
    cfg.INPUT.SIZE_TRAIN = [64, 32]
    cfg.INPUT.SIZE_TEST = [64, 32]
    cfg.INPUT.VIDEO.SEQ_LEN = T
    cfg.MODEL.DEVICE = "cpu"
    for k, v in mgrafa_keys.items():
        cfg.MODEL.MGRAFA[k] = v
    return cfg


def batch(seed=0):
    g = torch.Generator().manual_seed(seed)
    return {"images": torch.rand(B, T, 3, 64, 32, generator=g) * 255,
            "targets": torch.arange(4).repeat_interleave(2)}


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_model(tiny_cfg())


def test_training_returns_the_named_eq7_losses(model):
    model.train()
    data = batch()
    images = data["images"].clone()
    with EventStorage(0):
        losses = model(data)
    names = {"loss_cls", "loss_triplet"} | {f"g{m}_{n}" for m in range(1, 5)
                                           for n in ("loss_cls", "loss_triplet")}
    assert set(losses) == names
    assert all(v.dim() == 0 and torch.isfinite(v) for v in losses.values())
    assert torch.equal(data["images"], images)  # input not normalised in place
    sum(losses.values()).backward()
    agg = model.heads.aggregation
    assert all(p.grad is not None for p in agg.parameters())
    assert model.backbone.conv1.weight.grad is not None


def test_eval_returns_v_with_c_channels_and_accepts_images(model):
    model.eval()
    with torch.no_grad():
        emb = model(batch())
        single = model({"images": batch()["images"][:, 0]})  # (B, C, H, W) read as T = 1
        v = model.heads.aggregation(model.frame_maps(batch())).features
    assert emb.shape == (B, 512) and single.shape == (B, 512)
    assert torch.allclose(emb, v)  # EVAL_FEAT before: the paper matches v


def test_eq7_is_the_host_losses_on_v_plus_their_group_average():
    """L = L_ID(v) + L_Tr(v) + 1/N sum_g (L_ID(v_g) + L_Tr(v_g)), recomputed with the host's
    own ``cross_entropy_loss`` / ``triplet_loss`` on the head's outputs."""
    cfg = tiny_cfg()
    torch.manual_seed(0)
    head = MGRAFAHead(cfg, feat_shape=(64, 4, 2)).train()
    losses = fastreid_ext.modeling.losses.build_losses(cfg, feat_dim=64, num_classes=4)
    targets = torch.arange(4).repeat_interleave(2)
    feats = torch.randn(B, T, 64, 4, 2)
    with EventStorage(0):
        outputs = head(feats, targets)
        named = eq7_losses(losses, outputs, targets)
    ce, tri = cfg.MODEL.LOSSES.CE, cfg.MODEL.LOSSES.TRI

    def pair(o):
        return (cross_entropy_loss(o["cls_outputs"], targets, ce.EPSILON, ce.ALPHA) * ce.SCALE
                + triplet_loss(o["features"], targets, tri.MARGIN, tri.NORM_FEAT, tri.HARD_MINING) * tri.SCALE)

    groups = outputs["group_outputs"]
    assert len(groups) == 4
    agg = head.aggregation(feats)
    for m, o in enumerate(groups):  # each group's features are v_g
        assert torch.allclose(o["features"], agg.group_features[m])
    expected = pair(outputs) + sum(pair(o) for o in groups) / 4
    assert torch.allclose(sum(named.values()), expected, atol=1e-6)
    assert torch.allclose(named["g2_loss_cls"] * 4,
                          cross_entropy_loss(groups[1]["cls_outputs"], targets, ce.EPSILON, ce.ALPHA))


@pytest.mark.parametrize("keys,groups,losses", [
    (dict(ATTENTION="avg"), 1, 2),                                       # Baseline
    (dict(ATTENTION="rafa", NUM_GROUPS=1, GRANULARITY="single"), 1, 2),   # SG-RAFA(S=1)
    (dict(ATTENTION="rafa", NUM_GROUPS=4, GRANULARITY="single"), 4, 10),  # SG-RAFA(S=4)
    (dict(ATTENTION="afa", NUM_GROUPS=4, GRANULARITY="multi"), 4, 10),    # MG-AFA(N=4)
    (dict(ATTENTION="rafa", NUM_GROUPS=2, GRANULARITY="multi"), 2, 6),    # MG-RAFA(N=2)
    (dict(ATTENTION="rafa", NUM_GROUPS=4, GROUP_LOSS=False), 4, 2),
])
def test_table2_rows_build_and_train(keys, groups, losses):
    cfg = tiny_cfg(**keys)
    torch.manual_seed(0)
    head = MGRAFAHead(cfg, feat_shape=(64, 4, 2)).train()
    assert head.aggregation.num_groups == groups
    if keys.get("GRANULARITY") == "single":
        assert head.aggregation.sizes == [(4, 2)] * groups
    loss_set = fastreid_ext.modeling.losses.build_losses(cfg, feat_dim=64, num_classes=4)
    targets = torch.arange(4).repeat_interleave(2)
    with EventStorage(0):
        named = eq7_losses(loss_set, head(torch.randn(B, T, 64, 4, 2), targets), targets)
    assert len(named) == losses


def test_unknown_settings_raise():
    """A config made by hand: the head's aggregation builder runs the validator."""
    with pytest.raises(KeyError, match="MODEL.MGRAFA.ATTENTION 'nonlocal'"):
        MGRAFAHead(tiny_cfg(ATTENTION="nonlocal"), feat_shape=(64, 4, 2))
    with pytest.raises(KeyError, match="MODEL.MGRAFA.GRANULARITY 'coarse'"):
        MGRAFAHead(tiny_cfg(GRANULARITY="coarse"), feat_shape=(64, 4, 2))
    with pytest.raises(KeyError, match="MODEL.MGRAFA.EVAL_FEAT 'middle'"):
        MGRAFAHead(tiny_cfg(EVAL_FEAT="middle"), feat_shape=(64, 4, 2))
    head = MGRAFAHead(tiny_cfg(), feat_shape=(64, 4, 2)).train()
    with pytest.raises(ValueError, match="targets"):
        head(torch.randn(B, T, 64, 4, 2))


def test_resnet_map_size_matches_the_host_backbone(model):
    from fastreid_ext.modeling.video_utils import feature_map_shape
    for size in [(64, 32), (70, 30)]:
        assert feature_map_shape(model.backbone, size)[1:] == resnet_map_size(size, 1)
    assert resnet_map_size((256, 128), 1) == (16, 8)
    assert resnet_map_size((256, 128), 2) == (8, 4)


def test_accuracy_is_logged_once_for_v_not_per_granularity(model, monkeypatch):
    from fastreid_ext.modeling.losses import host_losses

    calls = []
    monkeypatch.setattr(host_losses, "log_accuracy", lambda logits, targets: calls.append(logits))
    main = []
    handle = model.heads.classifier.register_forward_hook(lambda mod, args, out: main.append(out))
    model.train()
    try:
        with EventStorage(0):
            model(batch())
    finally:
        handle.remove()
    assert len(calls) == 1
    assert torch.equal(calls[0], main[0]["pred_class_logits"].detach())


@pytest.mark.parametrize("init,uniform", [("uniform", True), ("random", False)])
def test_model_diagnostics_report_the_attention_start(init, uniform):
    torch.manual_seed(0)
    m = build_model(tiny_cfg(ATT_INIT=init)).train()
    assert m.diagnostics() == {}
    with EventStorage(0):
        m(batch())
    d = m.diagnostics()
    assert set(d) == {"att_dead_frac"} | {f"att_{k}_g{g}" for k in ("entropy", "spread") for g in range(1, 5)}
    assert all(isinstance(v, float) for v in d.values())
    if uniform:
        assert d["att_dead_frac"] == 0.0 and d["att_spread_g1"] == pytest.approx(0.0, abs=1e-5)
    else:
        assert d["att_dead_frac"] > 0.2 and d["att_spread_g1"] > 0.1


def test_score_offsets_get_no_weight_decay_and_keep_the_relu_alive():
    """theta's BN bias (the scores' offset: the softmax ignores it, only the ReLU needs it) is
    built without weight decay; every other parameter keeps the configured decay. With Adam +
    L2 and no loss gradient, a decayed offset would sink by about the learning rate per step
    (1.0 -> 0.62 in a 1,200-iteration run before this), taking the scores into the dead ReLU."""
    from fastreid_ext.engine import Trainer

    cfg = tiny_cfg(ATT_INIT="near_uniform")
    cfg.SOLVER.OPT = "Adam"
    cfg.SOLVER.BASE_LR = 0.01
    cfg.SOLVER.WEIGHT_DECAY = 0.0005
    cfg.SOLVER.WEIGHT_DECAY_NORM = 0.0005
    torch.manual_seed(0)
    model = build_model(cfg)
    optimizer, groups = Trainer.build_optimizer(cfg, model)
    offsets = {id(b.theta[1].bias) for b in model.heads.aggregation.blocks}
    assert len(offsets) == 4
    for g in optimizer.param_groups:
        p = g["params"][0]
        if id(p) in offsets:
            assert g["weight_decay"] == 0.0
        elif p.requires_grad:
            assert g["weight_decay"] > 0.0
    # only weight decay acting (zero loss gradient): the offsets stay, another BN bias sinks
    other = model.heads.aggregation.blocks[0].phi[1].bias
    with torch.no_grad():
        other.fill_(1.0)
    for _ in range(20):
        optimizer.zero_grad()
        for g in optimizer.param_groups:
            for p in g["params"]:
                p.grad = torch.zeros_like(p)
        optimizer.step()
    assert all(torch.equal(b.theta[1].bias, torch.ones_like(b.theta[1].bias))
               for b in model.heads.aggregation.blocks)
    assert float(other.max()) < 1.0 - 0.1  # 20 Adam steps of ~lr = 0.01 each


def test_attention_learning_rate_factor_reaches_only_the_aggregation_and_the_schedule():
    """``MODEL.MGRAFA.ATT_LR_FACTOR``: the aggregation's parameters (mu, nu, phi, psi, theta)
    train at factor x the rate every other parameter trains at, and the warm-up / step schedule
    scales both alike; factor 1 leaves every group as the host builds it; a factor <= 0 raises."""
    from fastreid_ext.engine import Trainer
    from fastreid_ext.engine.param_groups import lr_factors

    def build(factor):
        cfg = tiny_cfg(ATT_INIT="near_uniform", ATT_LR_FACTOR=factor)
        cfg.SOLVER.OPT = "Adam"
        cfg.SOLVER.BASE_LR = 0.001
        cfg.SOLVER.BIAS_LR_FACTOR = 1.0
        cfg.SOLVER.HEADS_LR_FACTOR = 1.0
        cfg.SOLVER.WARMUP_ITERS = 10
        cfg.SOLVER.WARMUP_FACTOR = 0.1
        cfg.SOLVER.STEPS = [2]
        cfg.SOLVER.MAX_EPOCH = 4
        torch.manual_seed(0)
        model = build_model(cfg)
        optimizer, _ = Trainer.build_optimizer(cfg, model)
        return cfg, model, optimizer

    cfg, model, optimizer = build(10.0)
    attention = {id(p) for p in model.heads.aggregation.blocks.parameters()}
    assert set(lr_factors(model)) == attention and len(attention) > 20
    seen = 0
    for g in optimizer.param_groups:
        expected = 0.01 if id(g["params"][0]) in attention else 0.001
        assert g["lr"] == pytest.approx(expected)
        seen += id(g["params"][0]) in attention
    assert seen == len(attention)
    # on top of the host's own factors: HEADS_LR_FACTOR 2 gives the head's other parameters
    # 2 x base and the attention (inside the head) 2 x 10 x base; the backbone stays at base
    cfg2 = cfg.clone()
    cfg2.defrost()
    cfg2.SOLVER.HEADS_LR_FACTOR = 2.0
    opt2, _ = Trainer.build_optimizer(cfg2, model)
    names = {id(p): n for n, p in model.named_parameters()}
    for g in opt2.param_groups:
        id_p = id(g["params"][0])
        expected = 0.001 * (20.0 if id_p in attention else 2.0 if "heads" in names[id_p] else 1.0)
        assert g["lr"] == pytest.approx(expected), names[id_p]
    Trainer.build_lr_scheduler(cfg, optimizer, iters_per_epoch=5)  # sets the warm-up's first rate
    first = {id(g["params"][0]): g["lr"] for g in optimizer.param_groups}  # warm-up start
    for id_p, lr in first.items():
        assert lr == pytest.approx((0.01 if id_p in attention else 0.001) * 0.1)
    _, model1, optimizer1 = build(1.0)
    assert lr_factors(model1) == {}
    assert all(g["lr"] == pytest.approx(0.001) for g in optimizer1.param_groups)
    with pytest.raises(ValueError, match="ATT_LR_FACTOR"):
        build(0.0)


def test_score_input_reaches_the_aggregation_and_changes_only_the_scores():
    """``MODEL.MGRAFA.SCORE_INPUT temporal_residual`` reaches the aggregation and, with the same
    parameters (same seed), gives other attention weights, hence another embedding."""
    outs = {}
    for score_input in ("node", "temporal_residual"):
        torch.manual_seed(0)
        model = build_model(tiny_cfg(ATT_INIT="random", SCORE_INPUT=score_input)).eval()
        assert model.heads.aggregation.score_input == score_input
        with torch.no_grad():
            outs[score_input] = model(batch())
    assert outs["node"].shape == outs["temporal_residual"].shape
    assert not torch.allclose(outs["node"], outs["temporal_residual"], atol=1e-4)


@pytest.mark.parametrize("key, value, error, words", [
    ("ATTENTION", "transformer", KeyError, "unknown MODEL.MGRAFA.ATTENTION 'transformer'"),
    ("ATT_INIT", "zeros", KeyError, "unknown MODEL.MGRAFA.ATT_INIT 'zeros'"),
    ("SCORE_INPUT", "pixels", KeyError, "unknown MODEL.MGRAFA.SCORE_INPUT 'pixels'"),
    ("REFERENCE", "median", KeyError, "unknown MODEL.MGRAFA.REFERENCE 'median'"),
    ("GRANULARITY", "coarse", KeyError, "unknown MODEL.MGRAFA.GRANULARITY 'coarse'; known: multi, single"),
    ("EVAL_FEAT", "middle", KeyError, r"unknown MODEL.MGRAFA.EVAL_FEAT 'middle' \(before \| after\)"),
    ("ATT_LR_FACTOR", 0.0, ValueError, "MODEL.MGRAFA.ATT_LR_FACTOR must be > 0, got 0.0"),
    ("REDUCTION", 0, ValueError, "MODEL.MGRAFA.REDUCTION must be >= 1, got 0"),
])
def test_bad_mgrafa_settings_are_refused_when_the_config_is_built(key, value, error, words):
    """MG-RAFA's validator (registered by add_mgrafa_config) runs inside build_config, before
    any model; a config made by hand is checked by MGRAFANet.from_config."""
    from fastreid_ext.config import build_config

    with pytest.raises(error, match=words):
        build_config("", [f"MODEL.MGRAFA.{key}", str(value)])
    with pytest.raises(error, match=words):
        build_model(tiny_cfg(**{key: value}))
