"""The projects' BNNeck + classifier heads are the core's BNNeckClassifier, and their state
keys are the classifier's (no published checkpoint uses other names, so none are renamed)."""
import torch

import fastreid_ext  # noqa: F401  (compat shims first)
from fastreid_ext.modeling.heads import BNNeckClassifier
from mgre.embedding import StageEmbedding


def test_mgre_head_refuses_keys_it_does_not_have():
    torch.manual_seed(0)
    state = StageEmbedding(8, 2, 6, 5).state_dict()
    assert any(k.startswith("classifier.bnneck.") for k in state)
    other = {k.replace("classifier.bnneck.", "bn."): v for k, v in state.items()}
    try:
        StageEmbedding(8, 2, 6, 5).load_state_dict(other, strict=True)
    except RuntimeError as e:
        assert "bn.running_mean" in str(e)
    else:
        raise AssertionError("keys of another layout were loaded")


def test_mgre_stage_embedding_head_is_the_bnneck_classifier():
    torch.manual_seed(0)
    emb = StageEmbedding(8, 1, 6, 5)
    assert isinstance(emb.classifier, BNNeckClassifier)
    feat = torch.randn(4, 6)
    out = emb.head(feat, torch.tensor([0, 1, 2, 3]))
    bn = emb.classifier.bnneck
    ref_bn = (feat - feat.mean(0)) / torch.sqrt(feat.var(0, unbiased=False) + bn.eps)  # train-mode BN, weight 1, bias 0
    torch.testing.assert_close(out["bn_features"], ref_bn, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out["cls_outputs"], ref_bn @ emb.classifier.weight.t(), rtol=1e-5, atol=1e-5)
    assert torch.equal(out["features"], feat)


def test_mgrafa_classifiers_are_the_bnneck_classifier():
    from mgrafa.aggregation import MultiGranularityAggregation
    from mgrafa.head import MGRAFAHead

    agg = MultiGranularityAggregation(channels=16, feat_size=(4, 2), num_frames=2, attention="avg",
                                      num_groups=2, granularity="multi")
    head = MGRAFAHead(aggregation=agg, num_classes=3)
    assert isinstance(head.classifier, BNNeckClassifier)
    assert all(isinstance(c, BNNeckClassifier) for c in head.group_classifiers)


def test_fgpose_stream_heads_are_the_bnneck_classifier():
    from fgpose.meta_arch import StreamHead

    torch.manual_seed(0)
    trained = StreamHead(6, 5)
    assert isinstance(trained.classifier, BNNeckClassifier)
    trained.classifier.bnneck.running_mean.normal_()
    trained.classifier.bnneck.weight.data.uniform_(0.5, 1.5)
    # train mode: BN with the batch's statistics (weight, bias 0), then the bias-free classifier
    feat = torch.randn(4, 6)
    trained.train()
    bn_feat, logits = trained(feat)
    bn = trained.classifier.bnneck
    f64 = feat.double()
    ref = (f64 - f64.mean(0)) / torch.sqrt(f64.var(0, unbiased=False) + bn.eps) * bn.weight.double()
    torch.testing.assert_close(bn_feat.double(), ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(logits.double(), ref @ trained.classifier.weight.double().t(), rtol=1e-5, atol=1e-5)
    # eval mode: the stored running statistics
    trained.eval()
    rm, rv = bn.running_mean.double(), bn.running_var.double()
    ref = (f64 - rm) / torch.sqrt(rv + bn.eps) * bn.weight.double()
    torch.testing.assert_close(trained.neck(feat).double(), ref, rtol=1e-5, atol=1e-5)


def test_fgpose_is_a_reid_meta_arch_and_reloads_its_checkpoints():
    import os.path as osp

    import fgpose  # noqa: F401
    from fastreid.modeling import build_model
    from fastreid_ext.config import build_config
    from fastreid_ext.modeling.meta_arch import ReidMetaArch

    config = osp.join(osp.dirname(__file__), "..", "projects", "FGPose", "configs", "synthetic_cpu.yml")
    cfg = build_config(config, ["MODEL.HEADS.NUM_CLASSES", "5"])
    torch.manual_seed(0)
    model = build_model(cfg)
    assert isinstance(model, ReidMetaArch)
    state = model.state_dict()
    assert any(k.startswith("heads.") and ".classifier.bnneck." in k for k in state)
    torch.manual_seed(1)
    fresh = build_model(cfg)
    fresh.load_state_dict(state, strict=True)
    for k, v in state.items():
        assert torch.equal(fresh.state_dict()[k], v), k
