"""Each learned mechanism made to collapse on purpose: its ``diagnostics()`` reports the collapse
(and does not report it for the same model left healthy).

- the video baseline's temporal attention: zeroed -> every score 0 (dead ReLU), uniform weights;
- MG-RAFA's attention: zeroed -> every node score 0, the weights uniform (no spread);
- MGRe's regions: pushed outside the feature map -> off-map fraction ~1, IoU with keypoint boxes ~0.
"""
import numpy as np
import pytest
import torch

import fastreid_ext
from fastreid.modeling import build_model
from fastreid.utils.events import EventStorage
from fastreid_ext.data.synthetic.identity import make_identities
from fastreid_ext.data.synthetic.render import TrackletSpec, render_tracklet

H, W = 64, 32


def _train_forward(model, batch):
    model.train()
    with EventStorage(0):
        model(batch)
    return model.diagnostics()


def _zero_(module):
    with torch.no_grad():
        for p in module.parameters():
            p.zero_()


def _video_batch(b=8, t=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {"images": torch.rand(b, t, 3, H, W, generator=g) * 255,
            "targets": torch.arange(b // 2).repeat_interleave(2),
            "erased": torch.zeros(b, t, dtype=torch.bool)}


# ----------------------------------------------------------------------------- video baseline
def _video_baseline():
    cfg = fastreid_ext.get_cfg()
    cfg.MODEL.META_ARCHITECTURE = "VideoBaseline"
    cfg.MODEL.BACKBONE.DEPTH = "18x"
    cfg.MODEL.BACKBONE.FEAT_DIM = 512
    cfg.MODEL.BACKBONE.PRETRAIN = False
    cfg.MODEL.TEMPORAL.AGG = "attention"
    cfg.MODEL.TEMPORAL.ATT_DIM = 16
    cfg.MODEL.HEADS.NUM_CLASSES = 4
    cfg.MODEL.LOSSES.NAME = ("CrossEntropyLoss",)
    cfg.INPUT.SIZE_TRAIN = [H, W]
    cfg.INPUT.SIZE_TEST = [H, W]
    cfg.MODEL.DEVICE = "cpu"
    torch.manual_seed(0)
    return build_model(cfg)


def test_dead_temporal_attention_is_reported():
    model = _video_baseline()
    healthy = _train_forward(model, _video_batch())
    assert healthy["att_dead_frac"] < 1.0
    _zero_(model.aggregation)
    dead = _train_forward(model, _video_batch())
    assert dead["att_dead_frac"] == 1.0
    assert dead["att_entropy_norm"] == pytest.approx(1.0, abs=1e-9)  # uniform: a plain average
    assert dead["att_entropy"] == pytest.approx(np.log(4), abs=1e-9)


# ----------------------------------------------------------------------------- MG-RAFA
def _mgrafa():
    mgrafa = pytest.importorskip("mgrafa")
    cfg = fastreid_ext.get_cfg()
    mgrafa.add_mgrafa_config(cfg)
    cfg.MODEL.META_ARCHITECTURE = "MGRAFANet"
    cfg.MODEL.HEADS.NAME = "MGRAFAHead"
    cfg.MODEL.BACKBONE.DEPTH = "18x"
    cfg.MODEL.BACKBONE.FEAT_DIM = 512
    cfg.MODEL.BACKBONE.PRETRAIN = False
    cfg.MODEL.HEADS.NUM_CLASSES = 4
    cfg.MODEL.LOSSES.NAME = ("CrossEntropyLoss",)
    cfg.INPUT.SIZE_TRAIN = [H, W]
    cfg.INPUT.SIZE_TEST = [H, W]
    cfg.INPUT.VIDEO.SEQ_LEN = 4
    cfg.MODEL.DEVICE = "cpu"
    torch.manual_seed(0)
    return build_model(cfg)


def test_uniform_mgrafa_attention_is_reported():
    model = _mgrafa()
    # MG-RAFA starts uniform on purpose (theta's BN scale is initialised to 0, so every node
    # gets the same score); a scale of 1 stands for an attention that has learned something
    with torch.no_grad():
        for name, p in model.heads.aggregation.named_parameters():
            if name.endswith("theta.1.weight"):
                p.fill_(1.0)
    healthy = _train_forward(model, _video_batch())
    spreads = {k: v for k, v in healthy.items() if k.startswith("att_spread_g")}
    assert spreads and all(v > 1e-3 for v in spreads.values()), healthy
    _zero_(model.heads.aggregation)
    flat = _train_forward(model, _video_batch())
    assert set(flat) == set(healthy)
    for k in spreads:
        assert flat[k] == pytest.approx(0.0, abs=1e-6)  # every node weighted 1 / K
        assert flat[k.replace("spread", "entropy")] == pytest.approx(1.0, abs=1e-6)
    assert flat["att_dead_frac"] == 1.0


# ----------------------------------------------------------------------------- MGRe
def _mgre():
    mgre = pytest.importorskip("mgre")
    cfg = fastreid_ext.get_cfg()
    mgre.add_mgre_config(cfg)
    cfg.MODEL.META_ARCHITECTURE = "MGRe"
    cfg.MODEL.BACKBONE.DEPTH = "18x"
    cfg.MODEL.BACKBONE.FEAT_DIM = 512
    cfg.MODEL.BACKBONE.PRETRAIN = False
    cfg.MODEL.HEADS.NUM_CLASSES = 4
    cfg.MODEL.LOSSES.NAME = ("CrossEntropyLoss",)
    cfg.MODEL.MGRE.LOC_PARAM = "paper"  # unbounded boxes: regions can leave the map
    cfg.INPUT.SIZE_TRAIN = [H, W]
    cfg.INPUT.SIZE_TEST = [H, W]
    cfg.MODEL.DEVICE = "cpu"
    torch.manual_seed(0)
    return build_model(cfg)


def _person_batch(b=8):
    """Rendered synthetic people with their true keypoints (fractions of the 64x32 frame)."""
    idents = make_identities(list(range(1, b // 2 + 1)), 0, 2)
    images, kps = [], []
    for i in range(b):
        spec = TrackletSpec(idents[i // 2 + 1], i % 3, 1, (0, 9, i), (), occlusion=0.0)
        frames, kp = render_tracklet(spec, 0, H, W)
        images.append(torch.from_numpy(frames[0][:, :, ::-1].copy()).permute(2, 0, 1).float())
        kp = torch.from_numpy(kp)
        kp[..., 0] /= W  # the loader's convention: fractions of the frame
        kp[..., 1] /= H
        kps.append(kp)
    return {"images": torch.stack(images)[:, None], "keypoints": torch.stack(kps),
            "targets": torch.arange(b // 2).repeat_interleave(2)}


def test_regions_pushed_off_the_map_are_reported():
    model = _mgre()
    batch = _person_batch()
    healthy = _train_forward(model, batch)
    ious = {k: v for k, v in healthy.items() if k.startswith("region_iou_s")}
    assert ious, healthy
    assert healthy["region_offmap_frac"] < 0.2
    assert all(v > 0.1 for v in ious.values()), healthy
    with torch.no_grad():
        for loc in model.location.values():
            loc.fc.weight.zero_()
            bias = loc.fc.bias.view(-1, 4)
            bias[:, :2] = 20.0  # tanh -> +1: centres one map width / height past the priors
            bias[:, 2:] = np.log(0.1)  # small boxes, entirely outside
    gone = _train_forward(model, batch)
    assert gone["region_offmap_frac"] > 0.9
    for k in ious:
        assert gone[k] == pytest.approx(0.0, abs=1e-6)
