"""Metric losses under DDP: two gloo processes, each with its share of the identities, give the
loss and the gradient of one process on the whole batch; BN buffers come from rank 0 before
evaluation; a rank with fewer than two identities is refused or warned about."""
import importlib
import logging

import pytest
import torch
from torch import nn

from fastreid.utils.events import EventStorage
from fastreid_ext.config import build_config
from fastreid_ext.modeling.losses import build_losses
from fastreid_ext.modeling.losses.gather import check_identities_per_rank

launch_mod = importlib.import_module("fastreid_ext.engine.launch")

NAMES = ("CrossEntropyLoss", "TripletLoss", "CircleLoss", "CenterLoss", "OSMLoss")
B, D_IN, D, C = 8, 6, 5, 4


def _cfg(gather=True):
    cfg = build_config(freeze=False)
    cfg.MODEL.LOSSES.NAME = NAMES
    cfg.MODEL.LOSSES.GATHER = gather
    cfg.MODEL.LOSSES.TRI.HARD_MINING = True
    cfg.MODEL.LOSSES.OSM.CL_CENTERS = True
    return cfg


class _Net(nn.Module):
    """A linear embedding + a classifier, with the project's losses."""

    def __init__(self, gather=True):
        super().__init__()
        torch.manual_seed(0)
        self.emb = nn.Linear(D_IN, D)
        self.cls = nn.Linear(D, C)
        self.bn = nn.BatchNorm1d(D, affine=False)  # buffers only: no unused parameter for DDP
        self.losses = build_losses(_cfg(gather), feat_dim=D, num_classes=C)

    def forward(self, x, targets):
        f = self.emb(x)
        self.bn(f)  # running stats only
        with EventStorage():
            return self.losses({"features": f, "cls_outputs": self.cls(f)}, targets)


def _data():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(B, D_IN, generator=g)
    targets = torch.arange(C).repeat_interleave(B // C)  # rank 0: ids 0, 1; rank 1: ids 2, 3
    return x, targets


class _VarNet(nn.Module):
    """A linear embedding with FGReID's Eq. (11) variance loss alone ("paper": a sum over the
    batch's identities), not gathered (``MODEL.LOSSES.GATHER False``)."""

    def __init__(self):
        super().__init__()
        import fgreid  # noqa: F401  (registers VarianceLoss)

        torch.manual_seed(0)
        self.emb = nn.Linear(D_IN, D)
        cfg = build_config(freeze=False)
        cfg.MODEL.LOSSES.NAME = ("VarianceLoss",)
        cfg.MODEL.LOSSES.GATHER = False
        cfg.MODEL.LOSSES.VAR.NORM, cfg.MODEL.LOSSES.VAR.SCALE = "paper", 1.0
        self.losses = build_losses(cfg, feat_dim=D, num_classes=C)

    def forward(self, x, targets):
        return self.losses({"features": self.emb(x)}, targets)


def _whole_batch(gather=True):
    net = _Net(gather)
    x, t = _data()
    losses = net(x, t)
    sum(losses.values()).backward()
    return {k: v.item() for k, v in losses.items()}, net.emb.weight.grad.clone()


def _worker(out_dir):
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    from fastreid_ext.engine.ddp import sync_buffers

    rank, world = dist.get_rank(), dist.get_world_size()
    net = _Net(gather=True)
    net.bn.running_mean.fill_(float(rank + 1))  # rank-specific BN statistics
    ddp = DistributedDataParallel(net)
    x, t = _data()
    n = B // world
    losses = ddp(x[rank * n:(rank + 1) * n], t[rank * n:(rank + 1) * n])
    sum(losses.values()).backward()
    synced = sync_buffers(ddp)
    local = _Net(gather=False)(x[rank * n:(rank + 1) * n], t[rank * n:(rank + 1) * n])  # MODEL.LOSSES.GATHER False
    var_net = _VarNet()
    var_ddp = DistributedDataParallel(var_net)  # kept: a collected wrapper reduces nothing
    sum(var_ddp(x[rank * n:(rank + 1) * n], t[rank * n:(rank + 1) * n]).values()).backward()
    torch.save({"losses": {k: v.item() for k, v in losses.items()}, "grad": net.emb.weight.grad.clone(),
                "bn_mean": net.bn.running_mean.clone(), "synced": synced,
                "no_gather": {k: v.item() for k, v in local.items()}, "var_grad": var_net.emb.weight.grad.clone()},
               f"{out_dir}/rank{rank}.pt")


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    """One 2-process gloo run (spawning costs most of this file's time)."""
    out = tmp_path_factory.mktemp("ddp")
    # CUDA "visible": the backend must still be gloo for CPU models (MODEL.DEVICE cpu)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(torch.cuda, "is_available", lambda: True)
        launch_mod.launch(_worker, 2, device="cpu", args=(str(out),))
    return [torch.load(out / f"rank{r}.pt") for r in range(2)]


def test_two_gloo_processes_give_the_whole_batch_loss_and_gradient(ranks):
    expected, grad = _whole_batch()
    for r in ranks:
        assert r["losses"].keys() == expected.keys()
        for k in ("loss_triplet", "loss_circle", "loss_osm"):  # pairwise: the global batch
            assert r["losses"][k] == pytest.approx(expected[k], rel=1e-5, abs=1e-6), k
    for k in ("loss_cls", "loss_center"):  # per-sample means: the ranks' average
        assert (ranks[0]["losses"][k] + ranks[1]["losses"][k]) / 2 == pytest.approx(expected[k], rel=1e-5)
    for r in ranks:  # DDP-averaged gradient == one process on the whole batch
        torch.testing.assert_close(r["grad"], grad, rtol=1e-4, atol=1e-6 * grad.abs().max().item())
    # BN buffers: rank 0's everywhere
    assert ranks[1]["synced"] > 0
    torch.testing.assert_close(ranks[1]["bn_mean"], ranks[0]["bn_mean"])


def test_without_gathering_each_rank_mines_only_its_own_identities(ranks):
    expected, _ = _whole_batch(gather=False)
    per_rank = [r["no_gather"]["loss_triplet"] for r in ranks]
    assert sum(per_rank) / 2 != pytest.approx(expected["loss_triplet"], rel=1e-3)


def test_a_summed_loss_without_gathering_keeps_its_weight_on_two_processes(ranks):
    """Eq. (11) sums over identities: each rank sums its own (here disjoint) identities, DDP
    averages the gradients, and the world-size factor makes that the whole batch's gradient
    (without it, half of it)."""
    net = _VarNet()
    x, t = _data()
    sum(net(x, t).values()).backward()
    whole = net.emb.weight.grad
    assert whole.abs().max() > 0
    for r in ranks:
        torch.testing.assert_close(r["var_grad"], whole, rtol=1e-4, atol=1e-6 * whole.abs().max().item())


def _pk_cfg(p, k, gather, names=("CrossEntropyLoss", "TripletLoss")):
    cfg = _cfg(gather)
    cfg.MODEL.LOSSES.NAME = names
    cfg.SOLVER.IMS_PER_BATCH = p * k
    cfg.DATALOADER.NUM_INSTANCE = k
    cfg.DATALOADER.SAMPLER_TRAIN = "NaiveIdentitySampler"
    return cfg


def test_one_identity_per_rank_is_refused_without_gathering():
    with pytest.raises(ValueError, match="1 identities per rank"):
        check_identities_per_rank(_pk_cfg(8, 4, gather=False), world_size=8, pairwise=True)
    check_identities_per_rank(_pk_cfg(16, 4, gather=False), world_size=8, pairwise=True)  # 2 per rank
    check_identities_per_rank(_pk_cfg(8, 4, gather=False), world_size=8, pairwise=False)  # CE only
    check_identities_per_rank(_pk_cfg(8, 4, gather=False), world_size=1, pairwise=True)
    random = _pk_cfg(8, 4, gather=False)
    random.DATALOADER.SAMPLER_TRAIN = "TrainingSampler"  # no P x K batches: nothing to check
    check_identities_per_rank(random, world_size=8, pairwise=True)
    with pytest.raises(ValueError, match="1 identities per rank"):  # host Baseline: no LossSet
        check_identities_per_rank(_pk_cfg(8, 4, gather=True), world_size=8, pairwise=True, gathered=False)


def test_one_identity_per_rank_with_gathering_warns(caplog):
    with caplog.at_level(logging.WARNING, logger="fastreid_ext.modeling.losses.gather"):
        check_identities_per_rank(_pk_cfg(8, 4, gather=True), world_size=8, pairwise=True)
    assert "syncBN" in caplog.text
