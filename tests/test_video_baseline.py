"""VideoBaseline (the video-baseline paper / bag of tricks), its temporal attention and the shared video
helpers, on a ResNet-18 at 64x32."""
import pytest
import torch
import torch.nn.functional as F

import fastreid_ext
from fastreid.modeling import build_model
from fastreid.modeling.backbones import build_backbone
from fastreid.utils.events import EventStorage
from fastreid_ext.modeling.aggregation import TemporalAttention
from fastreid_ext.modeling.losses import CenterLoss, LossSet
from fastreid_ext.modeling.meta_arch import VideoBaseline
from fastreid_ext.modeling.video_utils import (
    check_pretrained_available,
    feature_map_shape,
    frame_features,
    preprocess_clip,
)

H, W = 32, 16
NUM_CLASSES = 4
ALL_LOSSES = ("CrossEntropyLoss", "TripletLoss", "CenterLoss", "OSMLoss", "AttentionLoss")


def _cfg(agg="attention", losses=ALL_LOSSES):
    cfg = fastreid_ext.get_cfg()
    cfg.MODEL.DEVICE = "cpu"
    cfg.MODEL.META_ARCHITECTURE = "VideoBaseline"
    cfg.MODEL.BACKBONE.DEPTH = "18x"
    cfg.MODEL.BACKBONE.FEAT_DIM = 512
    cfg.MODEL.BACKBONE.LAST_STRIDE = 1
    cfg.MODEL.BACKBONE.PRETRAIN = False
    cfg.MODEL.HEADS.NUM_CLASSES = NUM_CLASSES
    cfg.MODEL.HEADS.WITH_BNNECK = True
    cfg.MODEL.HEADS.NECK_FEAT = "after"
    cfg.MODEL.TEMPORAL.AGG = agg
    cfg.MODEL.TEMPORAL.ATT_DIM = 16
    cfg.MODEL.LOSSES.NAME = losses
    cfg.MODEL.LOSSES.CE.EPSILON = 0.1
    cfg.INPUT.SIZE_TRAIN = [H, W]
    cfg.INPUT.SIZE_TEST = [H, W]
    return cfg


@pytest.fixture(scope="module", params=["avg", "attention"])
def model(request):
    torch.manual_seed(0)
    losses = ALL_LOSSES if request.param == "attention" else ALL_LOSSES[:4]
    return build_model(_cfg(request.param, losses))


def _batch(b=4, t=3):
    g = torch.Generator().manual_seed(1)
    return {
        "images": torch.rand(b, t, 3, H, W, generator=g) * 255,
        "targets": torch.arange(b) // 2,
        "camids": torch.zeros(b, dtype=torch.long),
        "erased": torch.rand(b, t, generator=g) > 0.5,
    }


# ---------------------------------------------------------------- helpers

def test_preprocess_clip_is_out_of_place_and_accepts_images():
    mean, std = [10.0, 20.0, 30.0], [2.0, 4.0, 5.0]
    clips = torch.rand(2, 3, 3, 4, 4) * 255
    keep = clips.clone()
    out = preprocess_clip(clips, torch.tensor(mean).view(1, 3, 1, 1), torch.tensor(std))
    assert torch.equal(clips, keep)
    for c in range(3):
        assert torch.allclose(out[:, :, c], (keep[:, :, c] - mean[c]) / std[c])
    img = preprocess_clip(keep[:, 0], mean, std)
    assert img.shape == (2, 1, 3, 4, 4) and torch.allclose(img[:, 0], out[:, 0])
    with pytest.raises(ValueError, match="channels"):
        preprocess_clip(torch.rand(2, 1, 4, 4, 4), mean, std)
    with pytest.raises(ValueError, match=r"\(B, T, C, H, W\)"):
        preprocess_clip(torch.rand(3, 4, 4), mean, std)


def test_frame_features_per_frame_and_chunks():
    backbone = build_backbone(_cfg()).eval()
    clips = torch.randn(2, 3, 3, H, W)
    with torch.no_grad():
        maps = frame_features(backbone, clips)
        assert maps.shape == (2, 3, 512, H // 16, W // 16)
        # frame (1, 2) alone gives the same map
        assert torch.allclose(maps[1, 2], backbone(clips[1, 2:3])[0], atol=1e-5)
        assert torch.allclose(frame_features(backbone, clips, chunk_size=4), maps, atol=1e-5)
    assert feature_map_shape(backbone, (H, W)) == (512, H // 16, W // 16)
    assert not backbone.training  # mode restored


def test_temporal_attention_weights_sum_to_one():
    torch.manual_seed(0)
    att = TemporalAttention(8, 4, (4, 2))
    maps = torch.randn(3, 5, 8, 4, 2)
    out = att(maps)
    weights, scores = out.frame_weights, out.scores
    assert weights.shape == scores.shape == (3, 5)
    assert torch.allclose(weights.sum(dim=1), torch.ones(3))
    assert torch.allclose(weights, F.softmax(scores, dim=1))
    assert (scores >= 0).all()  # after the ReLU
    ref_feats = (maps.mean(dim=(3, 4)) * weights[..., None]).sum(dim=1)  # sum_t w_t GAP(map_t)
    assert torch.allclose(out.features, ref_feats, atol=1e-6)
    # independent transcription: whole-map conv = dot product with the kernel, then Conv1d
    w2, b2 = att.spatial_conv.weight, att.spatial_conv.bias
    hid = F.relu(torch.einsum("btchw,dchw->btd", maps, w2) + b2)          # (B, T, D)
    w1, b1 = att.temporal_conv.weight[0], att.temporal_conv.bias[0]      # (D, 3)
    padded = F.pad(hid.transpose(1, 2), (1, 1))                           # (B, D, T+2)
    ref = torch.stack([(padded[:, :, t:t + 3] * w1).sum(dim=(1, 2)) for t in range(5)], 1) + b1
    assert torch.allclose(scores, F.relu(ref), atol=1e-5)
    # T = 1 works and gives weight 1
    w_one = att(maps[:, :1]).frame_weights
    assert torch.allclose(w_one, torch.ones(3, 1))


# ---------------------------------------------------------------- model

def test_training_returns_named_losses_and_backward(model):
    model.train()
    batch = _batch()
    keep = batch["images"].clone()
    with EventStorage(0):
        losses = model(batch)
    expected = {"loss_cls", "loss_triplet", "loss_center", "loss_osm"}
    if isinstance(model.aggregation, TemporalAttention):
        expected.add("loss_att")
    assert set(losses) == expected
    assert all(v.dim() == 0 and torch.isfinite(v) for v in losses.values())
    assert torch.equal(batch["images"], keep)  # not normalised in place
    model.zero_grad()
    sum(losses.values()).backward()
    assert model.backbone.conv1.weight.grad.abs().sum() > 0
    assert model.losses["CenterLoss"].centers.grad is not None
    if isinstance(model.aggregation, TemporalAttention):
        assert model.aggregation.spatial_conv.weight.grad.abs().sum() > 0


def test_training_on_images_t1(model):
    model.train()
    batch = _batch(t=1)
    batch["images"] = batch["images"][:, 0]   # (B, C, H, W)
    batch["erased"] = batch["erased"][:, 0]   # (B,)
    with EventStorage(0):
        losses = model(batch)
    assert all(torch.isfinite(v) for v in losses.values())


def test_eval_returns_embeddings_and_repeated_frame_equals_image(model):
    """A clip of one frame repeated T times aggregates to that frame's feature in both modes
    (uniform mean; attention weights over identical frames are equal)."""
    model.eval()
    imgs = _batch()["images"][:, 0]
    with torch.no_grad():
        emb_img = model({"images": imgs})
        emb_clip = model({"images": imgs.unsqueeze(1).expand(-1, 4, -1, -1, -1)})
        emb_video = model(_batch()["images"])
    assert emb_img.shape == emb_clip.shape == emb_video.shape == (4, 512)
    assert torch.allclose(emb_img, emb_clip, atol=1e-4)


def test_eval_embedding_is_post_bn_of_aggregated_feature(model):
    model.eval()
    images = _batch()["images"]
    with torch.no_grad():
        emb = model({"images": images})
        maps = frame_features(model.backbone, preprocess_clip(images, model.pixel_mean, model.pixel_std))
        frame_feats = maps.mean(dim=(-2, -1))                     # (B, T, C)
        if isinstance(model.aggregation, TemporalAttention):
            weights = model.aggregation(maps).frame_weights
        else:
            weights = torch.full(frame_feats.shape[:2], 1.0 / frame_feats.shape[1])
        clip = (frame_feats * weights[..., None]).sum(1)
        bn = model.heads.bottleneck[0]
        ref = (clip - bn.running_mean) / torch.sqrt(bn.running_var + bn.eps) * bn.weight + bn.bias
    assert torch.allclose(emb, ref, atol=1e-4)


def test_attention_loss_in_model_counts_only_erased_frames():
    torch.manual_seed(0)
    model = build_model(_cfg("attention", ("CrossEntropyLoss", "AttentionLoss")))
    model.train()
    batch = _batch()
    with EventStorage(0):
        none = model({**batch, "erased": torch.zeros(4, 3, dtype=torch.bool)})
        some = model(batch)
        scores = model.aggregation.scores(
            frame_features(model.backbone, preprocess_clip(batch["images"], model.pixel_mean, model.pixel_std)))
    assert none["loss_att"].item() == 0.0
    ref = (scores * batch["erased"].float()).sum() / scores.numel()
    assert some["loss_att"].item() == pytest.approx(ref.item(), rel=1e-4)
    # without attention the attention loss cannot run: clear error
    with pytest.raises(KeyError, match="attention_scores"):
        avg = build_model(_cfg("avg", ("CrossEntropyLoss", "AttentionLoss")))
        with EventStorage(0):
            avg(batch)


def test_losses_reachable_for_the_trainer(model):
    assert isinstance(model, VideoBaseline) and isinstance(model.losses, LossSet)
    owned = list(model.losses.own_optimizers())
    assert len(owned) == 1 and isinstance(owned[0][0], CenterLoss)
    assert model.device == torch.device("cpu")
    # OSM uses the center-loss centers, registered once (under the center loss)
    names = [n for n, _ in model.named_parameters() if n.startswith("losses.")]
    assert names == ["losses.CenterLoss.centers"]


def test_config_errors(tmp_path, monkeypatch):
    cfg = _cfg("max")
    with pytest.raises(ValueError, match="MODEL.TEMPORAL.AGG"):
        build_model(cfg)
    cfg = _cfg()
    cfg.MODEL.BACKBONE.FEAT_DIM = 2048
    with pytest.raises(ValueError, match="FEAT_DIM"):
        build_model(cfg)
    cfg = _cfg()
    cfg.MODEL.BACKBONE.PRETRAIN = True
    cfg.MODEL.BACKBONE.PRETRAIN_PATH = str(tmp_path / "missing.pth")
    with pytest.raises(FileNotFoundError, match="MODEL.BACKBONE.PRETRAIN_PATH"):
        build_model(cfg)
    # empty path: the host would download; fail before it does
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    cfg.MODEL.BACKBONE.PRETRAIN_PATH = ""
    with pytest.raises(FileNotFoundError, match="MODEL.BACKBONE.PRETRAIN_PATH"):
        check_pretrained_available(cfg)


def test_pretrained_weights_from_local_path(tmp_path):
    torch.manual_seed(3)
    source = build_backbone(_cfg())
    path = tmp_path / "r18.pth"
    torch.save(source.state_dict(), path)
    cfg = _cfg("avg", ("CrossEntropyLoss",))
    cfg.MODEL.BACKBONE.PRETRAIN = True
    cfg.MODEL.BACKBONE.PRETRAIN_PATH = str(path)
    torch.manual_seed(4)
    model = build_model(cfg)
    assert torch.equal(model.backbone.conv1.weight, source.conv1.weight)
    assert torch.equal(model.backbone.layer4[1].conv2.weight, source.layer4[1].conv2.weight)


def test_ibn_backbone_option():
    cfg = _cfg("avg", ("CrossEntropyLoss",))
    cfg.MODEL.BACKBONE.WITH_IBN = True
    model = build_model(cfg).eval()
    assert type(model.backbone.layer1[0].bn1).__name__ == "IBN"
    with torch.no_grad():
        assert model(_batch()["images"]).shape == (4, 512)
