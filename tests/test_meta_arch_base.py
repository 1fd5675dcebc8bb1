"""The shared meta-architecture base (pixel buffers, device, batch parsing, class count) and
the one BNNeck + classifier head, against the host's EmbeddingHead and hand computations."""
import os

import pytest
import torch
from conftest import REPO
from torch import nn

import fastreid_ext  # noqa: F401  (compat shims first)
from fastreid.modeling.heads.embedding_head import EmbeddingHead
from fastreid_ext.config import build_config
from fastreid_ext.engine import Trainer
from fastreid_ext.modeling.heads import BNNeckClassifier
from fastreid_ext.modeling.meta_arch import ReidMetaArch, VideoBaseline

TINY = os.path.join(REPO, "tests", "configs", "tiny_video.yml")


@pytest.mark.parametrize("cls_type,neck_feat", [("Linear", "before"), ("Linear", "after"),
                                                ("CircleSoftmax", "after")])
def test_bnneck_classifier_is_the_hosts_embedding_head(cls_type, neck_feat):
    """Same random draws, same arithmetic as the host's EmbeddingHead on a pooled feature."""
    kw = dict(num_classes=5, cls_type=cls_type, scale=2.0 if cls_type != "Linear" else 1.0,
              margin=0.25 if cls_type != "Linear" else 0.0, neck_feat=neck_feat)
    torch.manual_seed(0)
    host = EmbeddingHead(feat_dim=16, embedding_dim=0, pool_type="Identity", with_bnneck=True,
                         norm_type="BN", **kw)
    torch.manual_seed(0)
    ours = BNNeckClassifier(16, norm_type="BN", **kw)
    assert torch.equal(host.weight, ours.weight)
    v = torch.randn(8, 16)
    targets = torch.randint(0, 5, (8,))
    h = host(v[..., None, None], targets)
    o = ours(v, targets)
    for key in ("cls_outputs", "pred_class_logits", "features"):
        torch.testing.assert_close(o[key], h[key], rtol=0, atol=0)
    host.eval()
    ours.eval()
    torch.testing.assert_close(ours.neck(v), host(v[..., None, None]), rtol=0, atol=0)


def test_linear_then_normal_keeps_a_linear_classifiers_random_stream():
    torch.manual_seed(3)
    ref = nn.Linear(12, 7, bias=False)
    nn.init.normal_(ref.weight, std=0.001)
    after_ref = torch.rand(3)
    torch.manual_seed(3)
    head = BNNeckClassifier(12, 7, init_std=0.001, weight_init="linear_then_normal")
    assert torch.equal(head.weight, ref.weight)
    assert torch.equal(torch.rand(3), after_ref)  # the stream continues where it did
    bn = nn.BatchNorm1d(12)  # the BNNeck a (B, D) BatchNorm1d with frozen bias computes
    v = torch.randn(6, 12) * 3 + 1
    torch.testing.assert_close(head.neck(v), bn(v), rtol=0, atol=1e-6)
    assert not head.bnneck.bias.requires_grad and head.bnneck.weight.requires_grad


def test_bnneck_classifier_rejects_unknown_names():
    with pytest.raises(KeyError, match="CLS_LAYER"):
        BNNeckClassifier(4, 3, cls_type="Softmax9")
    with pytest.raises(KeyError, match="NECK_FEAT"):
        BNNeckClassifier(4, 3, neck_feat="middle")
    with pytest.raises(ValueError, match="num_classes"):
        BNNeckClassifier(4, 0)


class _Toy(ReidMetaArch):
    def forward(self, batched_inputs):
        return self.preprocess(batched_inputs)


def test_base_preprocess_parsing_and_buffers():
    model = _Toy(pixel_mean=[10.0, 20.0, 30.0], pixel_std=[2.0, 4.0, 5.0])
    assert model.state_dict() == {}  # the buffers are not saved in checkpoints
    assert model.device == torch.device("cpu")
    images = torch.randint(0, 256, (2, 3, 3, 4, 2)).float()  # (B, T, C, H, W)
    before = images.clone()
    out = model({"images": images, "targets": torch.tensor([1, 2])})
    assert torch.equal(images, before)  # not modified
    mean = torch.tensor([10.0, 20.0, 30.0]).view(1, 1, 3, 1, 1)
    std = torch.tensor([2.0, 4.0, 5.0]).view(1, 1, 3, 1, 1)
    torch.testing.assert_close(out, (images - mean) / std)
    img = images[:, 0]  # (B, C, H, W): one-frame clips
    assert model(img).shape == (2, 1, 3, 4, 2)
    assert torch.equal(model.batch_targets({"targets": [1, 2]}), torch.tensor([1, 2]))
    with pytest.raises(KeyError, match="no 'images'"):
        model({"img": images})
    with pytest.raises(TypeError, match="dict or a tensor"):
        model([images])
    with pytest.raises(KeyError, match="targets"):
        model.batch_targets({"images": images})
    with pytest.raises(ValueError, match="PIXEL_STD"):
        _Toy(pixel_mean=[0.0], pixel_std=[0.0])


def test_num_classes_check():
    cfg = build_config(TINY)
    with pytest.raises(ValueError, match="NUM_CLASSES must be > 0"):
        ReidMetaArch.num_classes_of(cfg)
    assert ReidMetaArch.num_classes_of(build_config(TINY, ["MODEL.HEADS.NUM_CLASSES", "4"])) == 4


def test_frame_chunk_key_reaches_the_model_and_keeps_the_embedding():
    cfg = build_config(TINY, ["MODEL.HEADS.NUM_CLASSES", "4", "TEST.VIDEO.FRAME_CHUNK", "3"])
    torch.manual_seed(0)
    model = Trainer.build_model(cfg).eval()
    assert isinstance(model, VideoBaseline) and model.frame_chunk == 3
    clips = torch.rand(4, 2, 3, 32, 16) * 255  # 8 frames in calls of 3, 3, 2
    with torch.no_grad():
        chunked = model({"images": clips})
        model.frame_chunk = 0
        whole = model({"images": clips})
    torch.testing.assert_close(chunked, whole, rtol=1e-5, atol=1e-5)
