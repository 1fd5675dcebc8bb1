"""Training-recipe fixes of the video baseline and FGReID: epoch length as the public code's
identity sampler, CUHK01 p486 sizes and classes from the data, the cosine-distance triplet,
FGReID's variance normalisation and FGReID* initialisation."""
import os
import os.path as osp
import types

import pytest
import torch
import torch.nn.functional as F
from conftest import REPO

import fastreid_ext
import fgreid
from fastreid.data.samplers import TrainingSampler
from fastreid.engine.defaults import DefaultTrainer
from fastreid.modeling import build_model
from fastreid.modeling.losses import triplet_loss
from fastreid_ext.config import build_config
from fastreid_ext.data.build import build_video_train_loader
from fastreid_ext.data.datasets.cuhk01 import CUHK01
from fastreid_ext.data.samplers import IdentityBalancedSampler
from fastreid_ext.engine.trainer import epoch_iterations
from fastreid_ext.modeling.losses import build_losses
from fastreid_ext.modeling.losses.host_losses import cosine_triplet_loss
from fgreid.losses.functional import variance_regularization

FGREID_CONFIGS = osp.join(REPO, "projects", "FGReID", "configs")


def _cfg(path=None, fgreid_keys=False):
    cfg = fastreid_ext.get_cfg()
    if fgreid_keys:
        fgreid.add_fgreid_config(cfg)
    if path:
        cfg.merge_from_file(path)
    return cfg


def _loader(num_ids, per_id, batch, k, sampler="identity"):
    items = [((f"f{p}_{i}",), p, 0) for p in range(num_ids) for i in range(per_id)]
    if sampler == "identity":
        s = IdentityBalancedSampler(items, batch, k, seed=0, rank=0, world_size=1)
    else:
        s = TrainingSampler(len(items), seed=0)
    return types.SimpleNamespace(dataset=items, batch_sampler=types.SimpleNamespace(sampler=s))


# ------------------------------------------------------------------ epoch length
@pytest.mark.parametrize("num_ids,per_id,batch,k,identities,samples", [
    (150, 2, 140, 5, 5, 2),    # iLIDS-VID, FGReID (P x K = 28 x 5): 750 // 140, 300 // 140
    (89, 2, 160, 5, 2, 1),     # PRID-2011, FGReID (32 x 5): 445 // 160, 178 // 160
    (625, 13, 32, 4, 78, 253),  # MARS-like, video baseline (8 x 4): 2500 // 32
])
def test_epoch_length_identities_vs_samples(num_ids, per_id, batch, k, identities, samples):
    cfg = _cfg()
    cfg.SOLVER.IMS_PER_BATCH = batch
    loader = _loader(num_ids, per_id, batch, k)
    assert cfg.DATALOADER.EPOCH_LENGTH == "samples"  # the default: the host's definition
    cfg.DATALOADER.EPOCH_LENGTH = "identities"
    assert epoch_iterations(cfg, loader) == identities == num_ids * k // batch
    cfg.DATALOADER.EPOCH_LENGTH = "samples"  # the host's definition
    assert epoch_iterations(cfg, loader) == samples == num_ids * per_id // batch
    # a sampler without identities: always samples // batch
    cfg.DATALOADER.EPOCH_LENGTH = "identities"
    assert epoch_iterations(cfg, _loader(num_ids, per_id, batch, k, "plain")) == samples
    with pytest.raises(ValueError, match="EPOCH_LENGTH"):  # refused when the config is built
        build_config("", ["DATALOADER.EPOCH_LENGTH", "tracklets"])


@pytest.mark.parametrize("name,num_ids,warmup_epochs,total", [
    ("iLIDSVID", 150, 10, 2500),   # 500 epochs x 5 (public sampler at the paper's batch)
    ("PRID2011", 89, 10, 1000),    # 500 epochs x 2
])
def test_fgreid_small_video_configs_train_as_many_iterations_as_the_public_code(name, num_ids, warmup_epochs, total):
    cfg = _cfg(osp.join(FGREID_CONFIGS, name, "fgreid.yml"), fgreid_keys=True)
    k, batch = cfg.DATALOADER.NUM_INSTANCE, cfg.SOLVER.IMS_PER_BATCH
    ipe = epoch_iterations(cfg, _loader(num_ids, 2, batch, k))
    assert ipe == num_ids * k // batch  # the public RandomIdentitySampler, drop_last
    assert cfg.SOLVER.MAX_EPOCH * ipe == total
    assert cfg.SOLVER.WARMUP_ITERS == warmup_epochs * ipe


# ------------------------------------------------------------------ CUHK01 p486
def _write_cuhk01(base, n_ids):
    os.makedirs(osp.join(base, "campus"))
    for pid in range(1, n_ids + 1):
        for img in (1, 2, 3, 4):
            open(osp.join(base, "campus", f"{pid:04d}{img:03d}.png"), "wb").close()


def test_cuhk01_p486_has_486_test_and_485_train_ids_and_the_config_takes_classes_from_data(tmp_path):
    _write_cuhk01(str(tmp_path / "cuhk01"), 971)
    for split in (0, 3):
        ds = CUHK01(root=str(tmp_path), protocol="p486", split=split)
        test_ids = {q[1] for q in ds.query}
        train_ids = {t[1] for t in ds.train}
        assert len(test_ids) == 486 and len(train_ids) == 485 and not test_ids & {int(t.split("_")[1]) for t in train_ids}
    p100 = CUHK01(root=str(tmp_path), protocol="p100")
    assert len({q[1] for q in p100.query}) == 100 and len({t[1] for t in p100.train}) == 871
    # the FGReID config leaves NUM_CLASSES to the data: 485 classes, labels 0..484
    cfg = _cfg(osp.join(FGREID_CONFIGS, "CUHK01", "fgreid.yml"), fgreid_keys=True)
    assert cfg.MODEL.HEADS.NUM_CLASSES == 0
    os.makedirs(str(tmp_path / "out"))
    cfg.merge_from_list(["DATASETS.ROOT", str(tmp_path), "DATALOADER.NUM_WORKERS", "0",
                         "OUTPUT_DIR", str(tmp_path / "out")])
    loader = build_video_train_loader(cfg)
    scaled = DefaultTrainer.auto_scale_hyperparams(cfg, loader.dataset.num_classes)
    assert scaled.MODEL.HEADS.NUM_CLASSES == 485


def test_every_fgreid_config_takes_num_classes_from_the_data():
    for root, _, files in os.walk(FGREID_CONFIGS):
        for f in files:
            cfg = _cfg(osp.join(root, f), fgreid_keys=True)
            if cfg.MODEL.META_ARCHITECTURE == "FGReID":
                assert cfg.MODEL.HEADS.NUM_CLASSES == 0, f


# ------------------------------------------------------------------ triplet on 1 - cos
def test_cosine_triplet_hand_value_and_relation_to_the_host():
    # 2-D unit vectors at angles: anchor 0 deg; positive 60 deg; negatives 90 and 180 deg
    ang = torch.tensor([0.0, 60.0, 90.0, 180.0]) * torch.pi / 180
    x = torch.stack([ang.cos(), ang.sin()], dim=1) * torch.tensor([[1.0], [2.0], [3.0], [0.5]])
    t = torch.tensor([0, 0, 1, 2])
    margin = 0.2
    # hand: per anchor, hardest positive / negative cosine distances 1 - cos
    #   a0: d_ap = 1 - cos60 = 0.5, d_an = min(1 - cos90, 1 - cos180) = 1.0 -> relu(0.5 - 1 + 0.2) = 0
    #   a1: d_ap = 0.5, d_an = min(1 - cos30, 1 - cos120) = 1 - cos30 -> relu(0.5 - 0.1340 + 0.2)
    #   a2 (alone): d_ap = 0, d_an = min(1 - cos90, 1 - cos30, 1 - cos90) = 1 - cos30 -> relu(-0.134 + 0.2)
    #   a3 (alone): d_ap = 0, d_an = min(2, 1 - cos120, 1 - cos90) = 1 -> 0
    c30 = 1 - torch.cos(torch.tensor(torch.pi / 6)).item()
    ref = (0 + (0.5 - c30 + margin) + (-c30 + margin) + 0) / 4
    assert cosine_triplet_loss(x, t, margin).item() == pytest.approx(ref, rel=1e-5)
    # the host's 2 - 2cos is twice the distance: host(2m) = 2 x ours(m)
    host = triplet_loss(x, t, 2 * margin, norm_feat=True, hard_mining=True)
    assert host.item() == pytest.approx(2 * ref, rel=1e-5)
    # through the registry
    cfg = _cfg()
    cfg.merge_from_list(["MODEL.LOSSES.NAME", '("TripletLoss",)', "MODEL.LOSSES.TRI.MARGIN", str(margin),
                         "MODEL.LOSSES.TRI.DISTANCE", "cosine", "MODEL.LOSSES.TRI.SCALE", "0.5",
                         "MODEL.LOSSES.TRI.HARD_MINING", "True"])
    out = build_losses(cfg)({"features": x}, t)["loss_triplet"]
    assert out.item() == pytest.approx(0.5 * ref, rel=1e-5)
    cfg.MODEL.LOSSES.TRI.DISTANCE = "angle"
    with pytest.raises(ValueError, match="DISTANCE"):
        build_losses(cfg)


def test_shipped_configs_use_the_cosine_triplet():
    for path in [osp.join(REPO, "configs", "Video-Baseline", f) for f in os.listdir(osp.join(REPO, "configs", "Video-Baseline"))] \
            + [osp.join(FGREID_CONFIGS, "Base-FGReID.yml")]:
        assert _cfg(path, fgreid_keys=True).MODEL.LOSSES.TRI.DISTANCE == "cosine", path


# ------------------------------------------------------------------ FGReID R_var normalisation
def test_variance_normalisations_hand_value():
    f = torch.tensor([[0.0, 0.0], [2.0, 0.0], [0.0, 1.0], [0.0, 3.0], [0.0, 5.0], [7.0, 7.0]])
    t = torch.tensor([0, 0, 1, 1, 1, 2])
    # squared deviations per id: id0: 1 + 1 = 2 (n 2); id1: 4 + 0 + 4 = 8 (n 3); id2: 0 (n 1)
    assert variance_regularization(f, t, "paper").item() == pytest.approx(2 / 2 + 8 / 3 + 0)
    assert variance_regularization(f, t, "code").item() == pytest.approx((2 / 1 + 8 / 2 + 0) / 3)
    # the public code's formula with K = T = 4 clips per id: sum / ((T - 1) * B // T)
    g = torch.randn(8, 5, dtype=torch.float64)
    ids = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1])
    onehot = F.one_hot(ids).double()
    proto = (onehot.t() @ g / 4)[ids]
    public = (g - proto).pow(2).sum(0).sum() / ((4 - 1) * 8 // 4)
    assert variance_regularization(g, ids, "code").item() == pytest.approx(public.item(), rel=1e-9)
    with pytest.raises(ValueError, match="normalisation"):
        variance_regularization(f, t, "batch")


# ------------------------------------------------------------------ FGReID*
def _tiny_fgreid(num_classes, **extra):
    cfg = _cfg(osp.join(FGREID_CONFIGS, "Synthetic", "fgreid.yml"), fgreid_keys=True)
    cfg.merge_from_list(["MODEL.DEVICE", "cpu", "MODEL.HEADS.NUM_CLASSES", str(num_classes),
                         "MODEL.FGREID.REDUCED_DIM", "16", "MODEL.FGREID.MARS_WEIGHTS", ""])
    for k, v in extra.items():
        cfg.MODEL.FGREID[k] = v
    return build_model(cfg)


def test_fgreid_star_loads_everything_but_the_class_dependent_weights(tmp_path):
    torch.manual_seed(0)
    mars = _tiny_fgreid(6)
    path = str(tmp_path / "mars_fgreid.pth")
    torch.save({"model": mars.state_dict()}, path)
    torch.manual_seed(1)
    star = _tiny_fgreid(3, PRETRAINED_MODEL=path)
    plain = _tiny_fgreid(3)
    src, dst = mars.state_dict(), star.state_dict()
    for k, v in dst.items():
        if k.startswith(("classifier.", "losses.")):
            assert v.shape != src[k].shape  # 3 classes here, 6 on "MARS": left at their init
        else:
            assert torch.equal(v, src[k]), k
    assert not torch.equal(plain.state_dict()["reduce_mars.weight"], src["reduce_mars.weight"])
    with pytest.raises(FileNotFoundError, match="PRETRAINED_MODEL"):
        _tiny_fgreid(3, PRETRAINED_MODEL=str(tmp_path / "missing.pth"))
    with pytest.raises(ValueError, match="shape mismatch"):
        _tiny_fgreid(3, PRETRAINED_MODEL=path, NL_REDUCTION=2)


@pytest.mark.parametrize("stage2,stage1", [
    ("VeRi/fgreid.yml", "VeRi/stage1_vehicleid_baseline.yml"),
    ("MARS/fgreid.yml", "MARS/stage1_video_baseline.yml"),
    ("iLIDSVID/fgreid.yml", "MARS/stage1_video_baseline.yml"),
    ("Market1501/fgreid_star.yml", "MARS/fgreid.yml"),
    ("CUHK01/fgreid_star.yml", "MARS/fgreid.yml"),
])
def test_stage_configs_point_at_the_checkpoint_their_stage_1_writes(stage2, stage1):
    from fastreid.data.datasets import DATASET_REGISTRY

    s2 = _cfg(osp.join(FGREID_CONFIGS, stage2), fgreid_keys=True)
    s1 = _cfg(osp.join(FGREID_CONFIGS, stage1), fgreid_keys=True)
    target = s2.MODEL.FGREID.PRETRAINED_MODEL or s2.MODEL.FGREID.MARS_WEIGHTS
    assert target == osp.join(s1.OUTPUT_DIR, "model_final.pth")
    for name in (*s1.DATASETS.NAMES, *s1.DATASETS.TESTS):
        assert name in DATASET_REGISTRY._obj_map, name
