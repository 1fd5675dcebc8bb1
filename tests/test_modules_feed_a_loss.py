"""Every module a model builds feeds a loss (DDP with ``find_unused_parameters`` off stops at
iteration 2 otherwise, and on one GPU the module never trains), or the config is refused; staged
FGPose steps compute only the streams their losses (training) or embedding (test) read."""
import os

import pytest
import torch

from fastreid.modeling import build_model
from fastreid.utils.events import EventStorage
from fastreid_ext.config import build_config

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FGPOSE = os.path.join(REPO, "projects", "FGPose", "configs")
MGRE = os.path.join(REPO, "projects", "MGRe", "configs")


def _fgpose(config="synthetic_cpu.yml", *opts):
    cfg = build_config(os.path.join(FGPOSE, config), ["MODEL.HEADS.NUM_CLASSES", "4", "MODEL.WEIGHTS", "",
                                                      *opts])
    torch.manual_seed(0)
    return build_model(cfg)


def _batch(b=4, length=6, size=(64, 32)):
    g = torch.Generator().manual_seed(0)
    kp = torch.rand(b, length, 17, 3, generator=g)
    kp[..., 2] = 1.0
    return {"images": torch.rand(b, length, 3, *size, generator=g) * 255, "keypoints": kp,
            "targets": torch.arange(b) % 4}


def _unused_after_a_step(model, batch):
    model.train()
    with EventStorage():
        sum(model(batch).values()).backward()
    return [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]


@pytest.mark.parametrize("net", ["rnn", "cnn"])
def test_fgpose_table5_k0_builds_no_mask_network(net):
    model = _fgpose("synthetic_cpu.yml", "MODEL.FGPOSE.ATTENTION_LEVELS", "[]",
                    "MODEL.FGPOSE.ATTENTION_NET", net)
    assert _unused_after_a_step(model, _batch()) == []
    assert not any(k.startswith("attention.") for k, _ in model.named_parameters())


@pytest.mark.parametrize("levels", ["[1, 2, 3, 4, 5]", "[3]"])
def test_fgpose_masked_levels_all_train(levels):
    model = _fgpose("synthetic_cpu.yml", "MODEL.FGPOSE.ATTENTION_LEVELS", levels)
    assert _unused_after_a_step(model, _batch()) == []


def _calls(model):
    """Counts of forward calls of each stream's first module (the backbone: its stem conv)."""
    counts = {}
    mods = {"global": model.backbone.conv1, "motion": getattr(model, "motion", None),
            "ma": getattr(model, "attention", None), "js": getattr(model, "joint", None)}
    for name, m in mods.items():
        if m is not None:
            counts[name] = 0
            m.register_forward_hook(lambda *_, name=name: counts.__setitem__(name, counts[name] + 1))
    return counts


# step: (streams computed in training, streams computed at test)
STEPS = {
    "synthetic_cpu_step1.yml": ({"global", "js"}, {"global", "js"}),
    # step 2 trains the motion stream (its own backbone): the frozen global and js streams feed
    # no loss
    "synthetic_cpu_step2.yml": ({"motion"}, {"global", "motion", "js"}),
    # step 3 trains ma, which reads the frozen global and motion maps; js feeds nothing
    "synthetic_cpu_step3.yml": ({"global", "motion", "ma"}, {"global", "motion", "ma", "js"}),
    "synthetic_cpu_step4.yml": ({"global", "motion", "ma", "js"}, {"global", "motion", "ma", "js"}),
}


@pytest.mark.parametrize("config", sorted(STEPS))
def test_fgpose_steps_compute_only_the_streams_their_losses_read(config):
    model = _fgpose(config)
    counts = _calls(model)
    assert _unused_after_a_step(model, _batch()) == []
    train, test = STEPS[config]
    assert {k for k, v in counts.items() if v} == train
    counts.update({k: 0 for k in counts})
    model.eval()
    with torch.no_grad():
        model(_batch())
    assert {k for k, v in counts.items() if v} == test


def test_fgpose_table3_test_streams_compute_only_what_the_embedding_reads():
    model = _fgpose("synthetic_cpu.yml", "MODEL.FGPOSE.TEST_STREAMS", '["motion"]').eval()
    counts = _calls(model)
    batch = _batch()
    del batch["keypoints"]  # the joint-specific stream is not computed: no keypoints needed
    with torch.no_grad():
        emb = model(batch)
    assert {k for k, v in counts.items() if v} == {"motion"}
    assert emb.shape == (4, model.stream_dims["motion"])


def test_fgpose_diagnostics_are_read_on_demand():
    model = _fgpose()
    model.train()
    model(_batch())
    assert all(isinstance(v, torch.Tensor) for v in model._diag.values())  # no sync per iteration
    d = model.diagnostics()
    assert set(d) == {"ma_mask_mean", "ma_mask_std", "js_box_area"}
    assert all(isinstance(v, float) for v in d.values())
    masks = torch.cat([m.flatten() for m in model.attention.last_masks.values()])
    assert d["ma_mask_mean"] == pytest.approx(float(masks.double().mean()), rel=1e-5)


def test_mgre_baseline_jo_without_keypoints_is_refused():
    with pytest.raises(ValueError, match="baseline_jo.*USE_KEYPOINTS False.*feed no loss"):
        build_config(os.path.join(MGRE, "synthetic_cpu.yml"),  # refused when the config is built
                     ["MODEL.HEADS.NUM_CLASSES", "4", "MODEL.MGRE.MODE", "baseline_jo",
                      "MODEL.MGRE.USE_KEYPOINTS", "False"])


def test_mgre_baseline_jo_with_keypoints_trains_every_module():
    cfg = build_config(os.path.join(MGRE, "synthetic_cpu.yml"),
                       ["MODEL.HEADS.NUM_CLASSES", "4", "MODEL.MGRE.MODE", "baseline_jo"])
    torch.manual_seed(0)
    model = build_model(cfg)
    h, w = cfg.INPUT.SIZE_TRAIN
    batch = _batch(b=8, length=cfg.INPUT.VIDEO.SEQ_LEN, size=(h, w))
    batch["targets"] = torch.arange(4).repeat_interleave(2)
    assert _unused_after_a_step(model, batch) == []
