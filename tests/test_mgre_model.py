"""MGRe meta-architecture: named per-stage losses (Eq. 9), 2048-d Eq. (6) embedding,
video temporal pooling, keypoint handling and the ablation switches (Tables 4, 5, 7)."""
import logging

import pytest
import torch

import fastreid_ext
import mgre
from fastreid.modeling import build_model
from fastreid.modeling.losses import cross_entropy_loss, triplet_loss
from fastreid.utils.events import EventStorage
from mgre.embedding import weighted_concat
from mgre.location import boxes_from_keypoints, location_loss
from mgre.regions import prior_box_size, regions_of_stage

B, H, W = 8, 64, 32


def tiny_cfg(**keys):
    cfg = fastreid_ext.get_cfg()
    mgre.add_mgre_config(cfg)
    cfg.MODEL.META_ARCHITECTURE = "MGRe"
    cfg.MODEL.BACKBONE.DEPTH = "18x"
    cfg.MODEL.BACKBONE.FEAT_DIM = 512
    cfg.MODEL.BACKBONE.PRETRAIN = False
    cfg.MODEL.HEADS.NUM_CLASSES = 4
    cfg.MODEL.LOSSES.NAME = ("CrossEntropyLoss", "TripletLoss")
    cfg.INPUT.SIZE_TRAIN = [H, W]
    cfg.INPUT.SIZE_TEST = [H, W]
    cfg.MODEL.DEVICE = "cpu"
    for k, v in keys.items():
        cfg.MODEL.MGRE[k] = v
    return cfg


def make_batch(t=1, seed=0, with_kp=True):
    g = torch.Generator().manual_seed(seed)
    out = {"images": torch.rand(B, t, 3, H, W, generator=g) * 255,
           "targets": torch.arange(4).repeat_interleave(2)}
    if with_kp:
        kp = torch.rand(B, t, 17, 3, generator=g)
        kp[..., 2] = 1.0
        out["keypoints"] = kp
    return out


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_model(tiny_cfg())


def test_training_returns_named_per_stage_losses(model):
    model.train()
    batch = make_batch()
    images = batch["images"].clone()
    with EventStorage(0):
        losses = model(batch)
    expected = {f"stage{g}_loss_{n}" for g in (1, 2, 3, 4) for n in ("cls", "triplet")}
    expected |= {f"stage{g}_loss_location" for g in (1, 2, 3)}
    assert set(losses) == expected
    assert all(v.dim() == 0 and torch.isfinite(v) for v in losses.values())
    assert torch.equal(batch["images"], images)  # input not modified
    sum(losses.values()).backward()
    assert model.location["stage1"].fc.weight.grad.abs().sum() > 0
    model.zero_grad()


def test_eval_embedding_is_2048_eq6_and_accepts_images_and_clips(model):
    model.eval()
    batch = make_batch(t=1)
    with torch.no_grad():
        emb = model(batch["images"][:, 0])  # (B, C, H, W)
        emb_dict = model({"images": batch["images"]})
        # clips of T identical frames pool to the single-frame embedding
        emb_video = model(batch["images"].expand(B, 3, 3, H, W))
    assert emb.shape == (B, 2048)
    assert torch.allclose(emb, emb_dict, atol=1e-5)
    assert torch.allclose(emb, emb_video, atol=1e-4)
    # Eq. (6): each 512-d part is L2-normalised, then weighted by lambda^F
    parts = emb.split(512, dim=1)
    for part, lam in zip(parts, (0.35, 0.5, 0.7, 0.8)):
        assert torch.allclose(part.norm(dim=1), torch.full((B,), lam), atol=1e-5)


def test_stage_losses_are_the_host_losses_weighted_by_lambda():
    torch.manual_seed(0)
    cfg = tiny_cfg(LAMBDA=0.5)
    m = build_model(cfg).train()
    batch = make_batch()
    captured = {}
    for g in ("stage1", "stage4"):
        emb = m.embeddings[g]
        orig = emb.head
        emb.head = lambda feat, targets=None, orig=orig, g=g: captured.setdefault(g, orig(feat, targets))
    with EventStorage(0):
        losses = m(batch)
    t = batch["targets"]
    for g, lam in (("stage1", 0.5), ("stage4", 1.0)):
        out = captured[g]
        ce_cfg, tri_cfg = cfg.MODEL.LOSSES.CE, cfg.MODEL.LOSSES.TRI
        ce = cross_entropy_loss(out["cls_outputs"], t, ce_cfg.EPSILON, ce_cfg.ALPHA)
        tri = triplet_loss(out["features"], t, tri_cfg.MARGIN, tri_cfg.NORM_FEAT, tri_cfg.HARD_MINING)
        assert losses[f"{g}_loss_cls"].item() == pytest.approx(lam * ce.item(), rel=1e-5)
        assert losses[f"{g}_loss_triplet"].item() == pytest.approx(lam * tri.item(), rel=1e-5)


def test_location_loss_is_eq3_of_the_located_regions_times_its_weights():
    batch = make_batch()
    losses = {}
    for lam, w in ((1.0, 1.0), (0.5, 3.0)):
        torch.manual_seed(0)
        m = build_model(tiny_cfg(LAMBDA=lam, LOC_WEIGHT=w, LOC_INIT_STD=0.0, LOC_PARAM="paper")).train()
        with EventStorage(0):
            losses[(lam, w)] = m(batch)
    # untrained location modules with zero weights return the Table 1 priors whatever the input
    regions = regions_of_stage(2)
    c = torch.tensor([[r.cx, r.cy] for r in regions]).expand(B, 2, 2)
    s = torch.tensor([list(prior_box_size(r)) for r in regions]).expand(B, 2, 2)
    ref = location_loss(c, s, batch["keypoints"][:, 0], [r.joints for r in regions])
    assert losses[(1.0, 1.0)]["stage2_loss_location"].item() == pytest.approx(ref.item(), rel=1e-5)
    assert losses[(0.5, 3.0)]["stage2_loss_location"].item() == pytest.approx(1.5 * ref.item(), rel=1e-5)


def test_missing_keypoints_name_the_script_and_the_switch(model):
    model.train()
    with EventStorage(0), pytest.raises(KeyError, match="make_keypoints.py.*USE_KEYPOINTS False"):
        model(make_batch(with_kp=False))


def test_without_keypoints_the_location_loss_is_off_and_logged():
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    log = logging.getLogger("fastreid.mgre.meta_arch")
    log.addHandler(handler)
    old = log.level
    log.setLevel(logging.INFO)
    try:
        m = build_model(tiny_cfg(USE_KEYPOINTS=False)).train()
    finally:
        log.removeHandler(handler)
        log.setLevel(old)
    assert any("location loss OFF" in r.getMessage() for r in records)
    with EventStorage(0):
        losses = m(make_batch(with_kp=False))
    assert not any("location" in k for k in losses)
    assert len(losses) == 8


@pytest.mark.parametrize("stages,dim", [([], 512), ([1], 1024), ([2, 3], 1536)])
def test_table4_stage_subsets(stages, dim):
    m = build_model(tiny_cfg(STAGES=stages)).train()
    with EventStorage(0):
        losses = m(make_batch())
    assert {k.split("_")[0] for k in losses} == {f"stage{g}" for g in stages + [4]}
    assert sum(k.endswith("location") for k in losses) == len(stages)
    m.eval()
    with torch.no_grad():
        assert m(make_batch()["images"]).shape == (B, dim)


def test_table5_single_grained_features_reads_every_region_from_stage4():
    m = build_model(tiny_cfg(MODE="single_grained_features")).train()
    assert len(m.guidance) == 0
    assert all(loc.body[0].in_channels == 512 for loc in m.location.values())
    with EventStorage(0):
        losses = m(make_batch())
    assert "stage1_loss_location" in losses
    boxes = m.locate(make_batch())
    assert boxes[1].shape == (B, 1, 4, 4)


def test_table5_single_grained_regions_has_no_location():
    m = build_model(tiny_cfg(MODE="single_grained_regions")).train()
    assert len(m.location) == 0
    with EventStorage(0):
        losses = m(make_batch(with_kp=False))  # needs no keypoints
    assert len(losses) == 8


def test_table7_without_joint_optimisation_uses_the_keypoint_boxes():
    m = build_model(tiny_cfg(JOINT_OPTIMIZATION=False)).eval()
    assert len(m.location) == 0
    batch = make_batch()
    boxes = m.locate(batch)
    regions = regions_of_stage(1)
    pc = torch.tensor([[r.cx, r.cy] for r in regions])
    ps = torch.tensor([list(prior_box_size(r)) for r in regions])
    c, s = boxes_from_keypoints(batch["keypoints"][:, 0], [r.joints for r in regions], pc, ps)
    assert torch.allclose(boxes[1][:, 0, :, 0], c[..., 0] - s[..., 0] / 2, atol=1e-6)
    assert torch.allclose(boxes[1][:, 0, :, 3], c[..., 1] + s[..., 1] / 2, atol=1e-6)
    with pytest.raises(KeyError, match="make_keypoints"):
        m({"images": batch["images"]})  # needs keypoints at test time too


def test_table7_without_jo_flip_test_mirrors_the_keypoint_regions():
    """The flip test (fastreid_ext.evaluation.inference) mirrors the keypoints with the images:
    the regions of the flipped image are the mirrored regions, left and right torso swapped."""
    from types import SimpleNamespace

    from fastreid_ext.evaluation.inference import flip_keypoints, inference_on_dataset

    m = build_model(tiny_cfg(JOINT_OPTIMIZATION=False)).eval()
    batch = make_batch()

    class Spy(torch.nn.Module):  # records what the flip test hands the model
        def __init__(self):
            super().__init__()
            self.m, self.seen = m, []

        def forward(self, b):
            self.seen.append(b)
            return self.m(b)

    spy = Spy()
    evaluator = SimpleNamespace(reset=lambda: None, process=lambda b, o: None, evaluate=lambda: {})
    inference_on_dataset(spy, [batch], evaluator, flip_test=True, progress=False)
    assert len(spy.seen) == 2
    flipped = spy.seen[1]
    assert torch.equal(flipped["images"], batch["images"].flip(-1))
    assert torch.equal(flipped["keypoints"], flip_keypoints(batch["keypoints"]))
    assert torch.equal(flip_keypoints(flipped["keypoints"]), batch["keypoints"])  # an involution
    a, b = m.locate(batch)[1], m.locate(flipped)[1]  # (B, T, 4 regions, (x0, y0, x1, y1))
    mirrored = torch.stack([1 - a[..., 2], a[..., 1], 1 - a[..., 0], a[..., 3]], dim=-1)
    assert torch.allclose(b[..., [0, 3], :], mirrored[..., [0, 3], :], atol=1e-6)  # head, legs
    assert torch.allclose(b[..., 1, :], mirrored[..., 2, :], atol=1e-6)  # left torso <- right torso
    assert torch.allclose(b[..., 2, :], mirrored[..., 1, :], atol=1e-6)


def test_table7_baseline_plus_jo_locates_but_embeds_stage4_only():
    m = build_model(tiny_cfg(MODE="baseline_jo")).train()
    assert set(m.location) == {"stage1", "stage2", "stage3"} and set(m.extractors) == {"stage4"}
    assert len(m.guidance) == 0 and m.output_dim == 512
    with EventStorage(0):
        losses = m(make_batch())
    assert set(losses) == {"stage4_loss_cls", "stage4_loss_triplet"} | {f"stage{g}_loss_location" for g in (1, 2, 3)}
    sum(losses.values()).backward()
    assert m.location["stage1"].fc.weight.grad.abs().sum() > 0
    assert m.backbone.layer1[0].conv1.weight.grad.abs().sum() > 0  # the location loss trains the backbone
    assert set(m.diagnostics()) == {"region_iou_s1", "region_iou_s2", "region_iou_s3", "region_offmap_frac"}
    m.eval()
    with torch.no_grad():
        emb = m(make_batch()["images"])
    assert emb.shape == (B, 512)
    with pytest.raises(ValueError, match="baseline_jo"):
        build_model(tiny_cfg(MODE="baseline_jo", JOINT_OPTIMIZATION=False))


def test_stage_sized_feature_extractors_follow_the_backbone_stages():
    """FE_MODULE stage: as many bottlenecks as the backbone's stage of that granularity
    (ResNet-18: 2 per stage; ResNet-50: 3, 4, 6, 3); bottleneck: one."""
    m = build_model(tiny_cfg(FE_MODULE="stage"))
    for g in (1, 2, 3, 4):
        blocks = [b for b in m.extractors[f"stage{g}"].modules() if isinstance(b, mgre.ResidualBlock)]
        assert len(blocks) == len(getattr(m.backbone, f"layer{g}"))
        assert blocks[0].conv1.in_channels == getattr(m.backbone, f"layer{g}")[-1].conv2.out_channels
    single = build_model(tiny_cfg())
    assert all(isinstance(e, mgre.ResidualBlock) for e in single.extractors.values())
    m.train()
    with EventStorage(0):
        losses = m(make_batch())
    assert all(torch.isfinite(v) for v in losses.values())


def test_diagnostics_measure_iou_with_the_keypoint_boxes_and_off_map_area():
    m = build_model(tiny_cfg(LOC_INIT_STD=0.0)).train()
    batch = make_batch()
    with EventStorage(0):
        m(batch)
    d = m.diagnostics()
    regions = regions_of_stage(3)
    kp = batch["keypoints"][:, 0]
    c, s = boxes_from_keypoints(kp, [r.joints for r in regions], torch.zeros(1, 2), torch.ones(1, 2))
    pred_c, pred_s = m.location["stage3"].boxes(m.location["stage3"].fc.bias.detach().view(1, 1, 4))
    # hand IoU of the (input-independent) prior box with each image's keypoint box
    px0, py0 = pred_c[0, 0] - pred_s[0, 0] / 2
    px1, py1 = pred_c[0, 0] + pred_s[0, 0] / 2
    ious = []
    for i in range(B):
        kx0, ky0 = c[i, 0] - s[i, 0] / 2
        kx1, ky1 = c[i, 0] + s[i, 0] / 2
        inter = max(0.0, float(min(px1, kx1) - max(px0, kx0))) * max(0.0, float(min(py1, ky1) - max(py0, ky0)))
        union = float((px1 - px0) * (py1 - py0) + (kx1 - kx0) * (ky1 - ky0)) - inter
        ious.append(inter / union)
    assert d["region_iou_s3"] == pytest.approx(sum(ious) / B, rel=1e-5)
    assert d["region_offmap_frac"] == pytest.approx(0.0, abs=1e-6)
    from mgre.location import offmap_fraction
    half_out = offmap_fraction(torch.tensor([[1.0, 0.5]]), torch.tensor([[0.4, 0.2]]))
    assert half_out.item() == pytest.approx(0.5)


def test_unknown_settings_raise():
    with pytest.raises(ValueError, match="MODE"):
        build_model(tiny_cfg(MODE="nope"))
    with pytest.raises(ValueError, match="STAGES"):
        build_model(tiny_cfg(STAGES=[4]))
    for key, value in (("LOC_PARAM", "free"), ("LOC_PADDING", "reflect"), ("FE_MODULE", "block"),
                       ("LOC_REID_GRAD", 2.0)):
        with pytest.raises(ValueError, match=key):
            build_model(tiny_cfg(**{key: value}))


def test_weighted_concat_is_eq6():
    f1, f2 = torch.tensor([[3.0, 4.0]]), torch.tensor([[0.0, 2.0]])
    out = weighted_concat([f1, f2], [0.5, 2.0])
    assert out[0].tolist() == pytest.approx([0.3, 0.4, 0.0, 2.0])


@pytest.mark.parametrize("key, value, words", [
    ("MODE", "nope", "unknown MODEL.MGRE.MODE 'nope'"),
    ("STAGES", [1, 1], "STAGES must be distinct values among 1, 2, 3"),
    ("LOC_REID_GRAD", 1.5, r"LOC_REID_GRAD must be in \[0, 1\], got 1.5"),
    ("FEAT_WEIGHTS", [0.5, 0.5], "FEAT_WEIGHTS needs 4 values"),
])
def test_bad_mgre_settings_are_refused_when_the_config_is_built(key, value, words):
    """MGRe's validator (registered by add_mgre_config) runs inside build_config, before any model."""
    from fastreid_ext.config import build_config

    with pytest.raises(ValueError, match=words):
        build_config("", [f"MODEL.MGRE.{key}", str(value)])
    with pytest.raises(ValueError, match=words):  # a config made by hand: from_config checks it
        build_model(tiny_cfg(**{key: value}))
