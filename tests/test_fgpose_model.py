"""The FGPose meta-architecture: losses of Eq. (5), frozen streams of section 5.1's steps,
the per-stream test embedding and its distance parts, the ablation switches, configs."""
import glob
import os.path as osp

import pytest
import torch

import fgpose  # noqa: F401  (registers FGPose; the core loader also does through entry points)
from fastreid.modeling import build_model
from fastreid_ext.config import build_config

CONFIGS = osp.join(osp.dirname(__file__), "..", "projects", "FGPose", "configs")
CPU = osp.join(CONFIGS, "synthetic_cpu.yml")


def make_model(*opts, num_classes=5):
    cfg = build_config(CPU, ["MODEL.HEADS.NUM_CLASSES", str(num_classes), *opts])
    torch.manual_seed(0)
    return build_model(cfg), cfg


def batch(b=4, length=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    kp = torch.rand(b, length, 17, 3, generator=g)
    kp[..., 2] = (kp[..., 2] > 0.2).float()
    return {"images": torch.rand(b, length, 3, 64, 32, generator=g) * 255, "keypoints": kp,
            "targets": torch.arange(b) % 5}


def test_train_losses_eq5_and_eval_embedding():
    model, _ = make_model()
    model.train()
    x = batch()
    losses = model(x)
    assert set(losses) == {"loss_global", "loss_motion", "loss_ma", "loss_js"}
    sum(losses.values()).backward()
    assert all(p.grad is not None for n, p in model.named_parameters() if p.requires_grad and "heads" in n
               and "classifier" in n)
    diag = model.diagnostics()
    assert 0.0 <= diag["ma_mask_mean"] <= 1.0 and 0.0 < diag["js_box_area"] <= 1.0
    # Eq. (5): W1 scales the joint-specific and motion-attentive terms, W2 the motion term
    model.eval()
    with torch.no_grad():
        emb = model(x)
    parts = model.distance_parts
    assert emb.shape == (4, sum(parts)) and len(parts) == 4 and model.distance_weights is None
    start = 0
    for size in parts:  # EVAL_NORM: every stream's part has unit norm
        torch.testing.assert_close(emb[:, start:start + size].norm(dim=1), torch.ones(4))
        start += size


def test_loss_weights_w1_w2():
    model, _ = make_model()
    model.train()
    x = batch()  # train-mode BatchNorm normalises with the batch's statistics: same in both passes
    base = {k: float(v.detach()) for k, v in model(x).items()}
    model.w1, model.w2 = 2.0, 3.0
    scaled = {k: float(v.detach()) for k, v in model(x).items()}
    assert scaled["loss_global"] == pytest.approx(base["loss_global"], rel=1e-5)
    assert scaled["loss_js"] == pytest.approx(2 * base["loss_js"], rel=1e-5)
    assert scaled["loss_ma"] == pytest.approx(2 * base["loss_ma"], rel=1e-5)
    assert scaled["loss_motion"] == pytest.approx(3 * base["loss_motion"], rel=1e-5)


def test_step3_trains_only_the_motion_attentive_stream():
    model, _ = make_model("MODEL.FGPOSE.TRAIN_STREAMS", '["ma"]')
    model.train()
    assert not model.backbone.training and model.attention.training  # frozen BN stays in eval mode
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    stats = model.backbone.bn1.running_mean.clone()
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    losses = model(batch())
    assert set(losses) == {"loss_ma"}
    sum(losses.values()).backward()
    opt.step()
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert changed and all(n.startswith(("attention.", "heads.ma.")) for n in changed)
    assert torch.equal(model.backbone.bn1.running_mean, stats)


def test_test_streams_select_slices_of_the_full_embedding():
    full, _ = make_model()
    local, _ = make_model("MODEL.FGPOSE.TEST_STREAMS", '["ma", "js"]')
    local.load_state_dict(full.state_dict())
    full.eval(), local.eval()
    x = batch()
    with torch.no_grad():
        e_full, e_local = full(x), local(x)
    d = full.stream_dims
    assert local.distance_parts == (d["ma"], d["js"])
    start = d["global"] + d["motion"]
    torch.testing.assert_close(e_local, e_full[:, start:])


@pytest.mark.parametrize("opts", [
    ("MODEL.FGPOSE.ATTENTION_ORDER", "coarse_to_fine"),
    ("MODEL.FGPOSE.ATTENTION_NET", "cnn"),
    ("MODEL.FGPOSE.ATTENTION_SOURCE", "appearance"),
    ("MODEL.FGPOSE.ATTENTION_LEVELS", "[]"),
    ("MODEL.FGPOSE.MOTION_BACKBONE", "shared"),
    ("MODEL.FGPOSE.STREAMS", '["global", "motion", "js"]'),
    ("MODEL.FGPOSE.STREAMS", '["global", "motion", "ma"]'),
])
def test_ablation_switches_build_and_run(opts):
    model, _ = make_model(*opts)
    model.train()
    losses = model(batch())
    sum(losses.values()).backward()
    model.eval()
    with torch.no_grad():
        assert model(batch()).shape[1] == sum(model.distance_parts)


def test_bad_inputs_raise():
    model, _ = make_model()
    x = batch()
    del x["keypoints"]
    with pytest.raises(KeyError, match="keypoints.json"):
        model(x)
    with pytest.raises(ValueError, match="SEGMENT_LEN"):
        model(batch(length=5))
    with pytest.raises(ValueError, match="SEQ_LEN"):
        make_model("INPUT.VIDEO.SEQ_LEN", "4")
    with pytest.raises(ValueError, match="needs the 'motion' stream"):
        make_model("MODEL.FGPOSE.STREAMS", '["global", "ma"]')
    with pytest.raises(ValueError, match="subset"):
        make_model("MODEL.FGPOSE.STREAMS", '["global", "js"]', "MODEL.FGPOSE.TEST_STREAMS", '["motion"]')


def test_shipped_configs_load_and_follow_the_schedule():
    files = sorted(glob.glob(osp.join(CONFIGS, "*.yml")))
    assert len(files) >= 11
    for f in files:
        build_config(f)  # every key exists
    steps = {s: build_config(osp.join(CONFIGS, f"fgpr_step{s}.yml")).MODEL.FGPOSE for s in (1, 2, 3, 4)}
    assert (list(steps[1].STREAMS), list(steps[1].TRAIN_STREAMS)) == (["global", "js"], ["global", "js"])
    assert (list(steps[2].STREAMS), list(steps[2].TRAIN_STREAMS)) == (["global", "motion", "js"], ["motion"])
    assert list(steps[3].TRAIN_STREAMS) == ["ma"] and len(steps[3].STREAMS) == 4
    assert list(steps[4].TRAIN_STREAMS) == [] and len(steps[4].STREAMS) == 4
    base = build_config(osp.join(CONFIGS, "Base-FGPose.yml"))
    assert base.MODEL.FGPOSE.ALPHA == 0.2 and base.MODEL.FGPOSE.W1 == 1.0 and base.MODEL.FGPOSE.W2 == 1.0
    assert base.INPUT.VIDEO.SEQ_LEN == base.MODEL.FGPOSE.SEGMENT_LEN + base.MODEL.FGPOSE.DELTA_T == 15


@pytest.mark.parametrize("opts, words", [
    (["MODEL.FGPOSE.STREAMS", '["global", "pose"]'], r"MODEL.FGPOSE.STREAMS: unknown or repeated streams"),
    (["MODEL.FGPOSE.TRAIN_STREAMS", '["js", "js"]'], r"MODEL.FGPOSE.TRAIN_STREAMS: unknown or repeated streams"),
    (["MODEL.FGPOSE.STREAMS", "[]"], "MODEL.FGPOSE.STREAMS is empty"),
    (["MODEL.FGPOSE.STREAMS", '["global", "js"]', "MODEL.FGPOSE.TRAIN_STREAMS", '["motion"]'],
     r"MODEL.FGPOSE.TRAIN_STREAMS \['motion'\] must be a subset of STREAMS \['global', 'js'\]"),
    (["MODEL.FGPOSE.MOTION_BACKBONE", "twin"], "unknown MODEL.FGPOSE.MOTION_BACKBONE 'twin'"),
    (["MODEL.FGPOSE.ATTENTION_ORDER", "random"], "MODEL.FGPOSE attention switches: .* got 'random', 'rnn', 'motion'"),
    (["MODEL.FGPOSE.ATTENTION_NET", "mlp"], "MODEL.FGPOSE attention switches: .* got 'fine_to_coarse', 'mlp'"),
    (["MODEL.FGPOSE.ATTENTION_SOURCE", "pose"], "MODEL.FGPOSE attention switches: .* got 'fine_to_coarse', 'rnn', 'pose'"),
    (["MODEL.FGPOSE.STREAMS", '["global", "ma"]'], "the motion-attentive stream .* needs the 'motion' stream"),
    (["MODEL.FGPOSE.DELTA_T", "0", "INPUT.VIDEO.SEQ_LEN", "4", "TEST.VIDEO.SEQ_LEN", "4"],
     "SEGMENT_LEN and DELTA_T must be >= 1, got 4, 0"),
    (["MODEL.FGPOSE.DIST_WEIGHTS", "[1.0, 2.0]"], "DIST_WEIGHTS needs one weight per test stream"),
    (["TEST.VIDEO.SEQ_LEN", "4"], r"TEST.VIDEO.SEQ_LEN must be MODEL.FGPOSE.SEGMENT_LEN \+ DELTA_T = 6"),
])
def test_bad_fgpose_settings_are_refused_when_the_config_is_built(opts, words):
    """FGPose's validator (registered by add_fgpose_config) runs inside build_config, before any
    model; a config made by hand (edited after build_config) is checked by FGPose.from_config."""
    with pytest.raises(ValueError, match=words):
        build_config(CPU, opts)
    cfg = build_config(CPU, ["MODEL.HEADS.NUM_CLASSES", "5"], freeze=False)
    cfg.merge_from_list(opts)
    with pytest.raises(ValueError, match=words):
        build_model(cfg)


def test_clip_length_is_checked_only_for_an_fgpose_model():
    """MODEL.FGPOSE is in every config built (all projects' keys); its clip length binds only
    the FGPose meta-architecture."""
    cfg = build_config("", ["INPUT.VIDEO.SEQ_LEN", "8"])
    m = cfg.MODEL.FGPOSE
    assert cfg.MODEL.META_ARCHITECTURE != "FGPose" and m.SEGMENT_LEN + m.DELTA_T != 8
