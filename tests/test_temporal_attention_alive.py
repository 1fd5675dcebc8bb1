"""The temporal attention of the video baseline stays alive with the shipped settings.

The attention loss of the "Fantastic Techniques" paper (Eq. (1)) as its public code computes it
penalises the post-ReLU pre-softmax scores (``MODEL.LOSSES.ATT.TARGET scores``); that drives every
score to 0 (dead ReLU: the attention becomes a plain average for good). The shipped configs
penalise the softmax weights (``TARGET weights``). These tests train the demo config, read the
model's ``diagnostics()`` and check the diagnostics and the losses against hand values.
"""
import math

import pytest
import torch
from conftest import REPO

from fastreid.modeling import build_model
from fastreid.utils.events import EventStorage
from fastreid_ext.config import get_cfg
from fastreid_ext.data.build import build_video_train_loader
from fastreid_ext.engine.train_loop import collect_diagnostics, own_optimizers
from fastreid_ext.engine.trainer import Trainer
from fastreid_ext.modeling.aggregation import attention_diagnostics
from fastreid_ext.modeling.losses.attention_loss import AttentionLoss, attention_loss

DEMO = f"{REPO}/configs/Video-Baseline/synthetic_cpu.yml"


def _demo_cfg(on, *extra):
    """The demo config, size-reduced: 32x16 inputs, P x K = 4 x 4, no workers. ``on="scores"``
    is the faithful setting (post-ReLU scores, as the public code)."""
    cfg = get_cfg()
    cfg.merge_from_file(DEMO)
    act = "relu" if on == "scores" else cfg.MODEL.TEMPORAL.ATT_SCORE_ACT
    cfg.merge_from_list(["MODEL.LOSSES.ATT.TARGET", on, "MODEL.TEMPORAL.ATT_SCORE_ACT", act, "SOLVER.IMS_PER_BATCH", "16",
                         "DATALOADER.NUM_WORKERS", "0", "INPUT.SIZE_TRAIN", "[32, 16]",
                         "INPUT.SIZE_TEST", "[32, 16]", "INPUT.PADDING.SIZE", "2", "SEED", "0",
                         *extra])
    return cfg


def _train(cfg, steps):
    """Train ``steps`` iterations as the trainer does (main optimizer + the losses' own);
    returns the model and the diagnostics after every step."""
    torch.manual_seed(0)
    loader = build_video_train_loader(cfg)
    cfg.MODEL.HEADS.NUM_CLASSES = loader.dataset.num_classes
    model = build_model(cfg)
    model.train()
    opt, _ = Trainer.build_optimizer(cfg, model)
    own = own_optimizers(model)
    history = []
    it = iter(loader)
    with EventStorage(0):
        for _ in range(steps):
            losses = model(next(it))
            opt.zero_grad()
            for _, o in own:
                o.zero_grad()
            sum(losses.values()).backward()
            opt.step()
            for loss, o in own:
                loss.before_own_step()
                o.step()
            history.append(collect_diagnostics(model))
    return model, history


def _collapsed(d):
    return d["att_dead_frac"] == 1.0 or (d["att_score_mean"] == 0.0
                                         and d["att_entropy_norm"] == pytest.approx(1.0, abs=1e-12))


def test_demo_config_attention_stays_alive(datasets_env):
    cfg = _demo_cfg("weights")
    assert cfg.MODEL.LOSSES.ATT.TARGET == "weights" and cfg.MODEL.TEMPORAL.AGG == "attention"
    assert cfg.MODEL.TEMPORAL.ATT_SCORE_ACT == "none"  # the shipped setting
    _, history = _train(cfg, 16)
    last = history[-6:]
    for d in last:
        assert not _collapsed(d), d
    assert sum(d["att_dead_frac"] for d in last) / len(last) < 0.5
    assert all(d["att_flat_frac"] < 0.5 for d in last)
    assert all(d["att_erased_weight"] < 1.0 for d in last)  # erased frames get less than 1/T


def test_faithful_setting_collapses_on_the_demo_and_the_diagnostic_says_so(datasets_env):
    _, history = _train(_demo_cfg("scores"), 8)
    assert history[0]["att_dead_frac"] < 1.0  # alive at the start ...
    d = history[-1]
    assert d["att_dead_frac"] == 1.0 and d["att_score_mean"] == 0.0  # ... dead after a few steps
    assert d["att_entropy"] == pytest.approx(math.log(4), rel=1e-9)
    assert d["att_entropy_norm"] == pytest.approx(1.0, rel=1e-9)


def _model(on):
    cfg = get_cfg()
    cfg.merge_from_file(DEMO)
    act = "relu" if on == "scores" else "none"
    cfg.merge_from_list(["MODEL.LOSSES.ATT.TARGET", on, "MODEL.TEMPORAL.ATT_SCORE_ACT", act,
                         "MODEL.HEADS.NUM_CLASSES", "3",
                         "INPUT.SIZE_TRAIN", "[32, 16]", "INPUT.SIZE_TEST", "[32, 16]",
                         "MODEL.LOSSES.NAME", '("CrossEntropyLoss", "AttentionLoss")'])
    torch.manual_seed(0)
    model = build_model(cfg)
    model.train()
    return model


def _batch(b=4, t=4):
    g = torch.Generator().manual_seed(1)
    erased = torch.zeros(b, t, dtype=torch.bool)
    erased[:, 1] = True
    erased[0, 3] = True
    return {"images": torch.rand(b, t, 3, 32, 16, generator=g) * 255,
            "targets": torch.tensor([0, 1, 2, 0][:b]), "erased": erased}


def test_faithful_setting_on_a_forced_collapse_init_is_reported_dead():
    model = _model("scores")
    with torch.no_grad():
        model.aggregation.temporal_conv.bias.fill_(-1e4)  # every pre-ReLU value < 0
    assert model.diagnostics() == {}  # nothing measured before the first training forward
    with EventStorage(0):
        losses = model(_batch())
    d = model.diagnostics()
    assert d["att_dead_frac"] == 1.0 and d["att_score_mean"] == 0.0
    assert d["att_entropy_norm"] == pytest.approx(1.0, rel=1e-12)
    assert d["att_erased_weight"] == pytest.approx(1.0, rel=1e-6)  # erased frames get 1/T
    # dead: the attention loss is 0 and no gradient reaches the attention convs
    assert losses["loss_att"].item() == 0.0
    sum(losses.values()).backward()
    for p in model.aggregation.parameters():
        assert p.grad is None or torch.count_nonzero(p.grad) == 0


def test_diagnostics_hand_values():
    scores = torch.tensor([[0.0, 0.0, 0.0, 0.0], [1.0, 2.0, 0.0, 0.0], [0.0, 3.0, 0.0, 0.0]])
    weights = scores.softmax(dim=1)
    erased = torch.tensor([[True, False, False, False], [False, True, False, False],
                           [False, False, False, False]])
    d = attention_diagnostics(scores, weights, erased)
    w = [[math.exp(x) for x in row] for row in scores.tolist()]
    w = [[x / sum(row) for x in row] for row in w]
    entropies = [-sum(x * math.log(x) for x in row) for row in w]
    assert d["att_dead_frac"] == pytest.approx(1 / 3)
    assert d["att_entropy"] == pytest.approx(sum(entropies) / 3, rel=1e-6)
    assert d["att_entropy_norm"] == pytest.approx(sum(entropies) / 3 / math.log(4), rel=1e-6)
    assert d["att_score_mean"] == pytest.approx(6.0 / 12)
    assert d["att_erased_weight"] == pytest.approx((w[0][0] + w[1][1]) / 2 * 4, rel=1e-6)
    assert "att_erased_weight" not in attention_diagnostics(scores, weights)
    with pytest.raises(ValueError, match="must both be"):
        attention_diagnostics(scores, weights[:, :3])


def test_attention_loss_reductions_hand_value():
    values = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    erased = torch.tensor([[True, False, True], [False, True, False]])
    assert attention_loss(values, erased).item() == pytest.approx((1 + 3 + 5) / 6)  # Eq. (1)
    # the public code: sum over t, mean over clips = T x Eq. (1)
    assert attention_loss(values, erased, "clip_sum").item() == pytest.approx((1 + 3 + 5) / 2)
    with pytest.raises(ValueError, match="reduction"):
        attention_loss(values, erased, "mean")
    with pytest.raises(ValueError, match="MODEL.LOSSES.ATT.TARGET"):
        AttentionLoss(on="logits")
    loss = AttentionLoss(on="weights", reduction="clip_sum")
    assert loss.required_keys == ("attention_weights", "erased")
    w = values.softmax(dim=1)
    out = loss({"attention_weights": w, "erased": erased}, None)
    assert out.item() == pytest.approx(((w[0, 0] + w[0, 2] + w[1, 1]) / 2).item(), rel=1e-6)


def _bias_grad(on):
    model = _model(on)
    with torch.no_grad():
        model.aggregation.temporal_conv.bias.fill_(50.0)  # every frame active
    model.zero_grad()
    with EventStorage(0):
        loss = model(_batch())["loss_att"]
    loss.backward()
    return model, model.aggregation.temporal_conv.bias.grad.item()


def test_scores_loss_pushes_the_shared_bias_down_weights_loss_does_not():
    """Why the faithful loss kills the attention: d loss / d bias = (number of erased frames)
    x scale / normaliser > 0 at every step while frames are active; the softmax-weight loss is
    invariant to a shift of all scores of a clip, so that gradient is 0."""
    model, g_scores = _bias_grad("scores")
    erased = _batch()["erased"]
    assert model.losses["AttentionLoss"].reduction == "clip_sum"  # from mars.yml: / B clips
    assert g_scores == pytest.approx(erased.sum().item() / erased.shape[0], rel=1e-5)
    _, g_weights = _bias_grad("weights")
    assert abs(g_weights) < 1e-6


def test_scores_target_without_the_score_relu_is_a_config_error():
    cfg = get_cfg()
    cfg.merge_from_file(DEMO)
    cfg.merge_from_list(["MODEL.LOSSES.ATT.TARGET", "scores", "MODEL.TEMPORAL.ATT_SCORE_ACT", "none",
                         "MODEL.HEADS.NUM_CLASSES", "3"])
    with pytest.raises(ValueError, match="ATT_SCORE_ACT"):
        build_model(cfg)
    cfg.MODEL.TEMPORAL.ATT_SCORE_ACT = "tanh"
    cfg.MODEL.LOSSES.ATT.TARGET = "weights"
    with pytest.raises(ValueError, match="ATT_SCORE_ACT"):
        build_model(cfg)


def test_shipped_attention_configs_use_the_setting_that_stays_alive():
    import glob
    for path in sorted(glob.glob(f"{REPO}/configs/Video-Baseline/*.yml")):
        cfg = get_cfg()
        cfg.merge_from_file(path)
        if cfg.MODEL.TEMPORAL.AGG == "attention" and "AttentionLoss" in cfg.MODEL.LOSSES.NAME:
            assert (cfg.MODEL.LOSSES.ATT.TARGET, cfg.MODEL.TEMPORAL.ATT_SCORE_ACT) == ("weights", "none"), path
