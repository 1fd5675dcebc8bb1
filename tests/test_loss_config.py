"""The loss base class's config contract: a loss declares ``config_node`` / ``config_args`` and
implements ``compute``; :class:`ReIDLoss` reads the node (``SCALE`` -> ``scale``) and applies the
weight in ``forward`` for every registered loss (the core's and the projects')."""
import inspect

import pytest
import torch

import fastreid_ext  # noqa: F401  (compat shims, registrations)
from fastreid.modeling.losses.circle_loss import pairwise_circleloss
from fastreid_ext.config import build_config
from fastreid_ext.modeling.losses import LOSS_REGISTRY, ReIDLoss, build_losses, get_loss_class


def _registered():
    build_config("")  # imports the projects, whose losses register themselves
    return {name: get_loss_class(name) for name in sorted(LOSS_REGISTRY._obj_map)}


def test_every_registered_loss_declares_its_node_and_leaves_the_weight_to_the_base():
    cfg = build_config("")
    for name, cls in _registered().items():
        assert cls.forward is ReIDLoss.forward, f"{name} overrides forward: SCALE belongs to ReIDLoss.forward"
        assert cls.compute is not ReIDLoss.compute, f"{name} implements no compute"
        assert cls.config_node in cfg.MODEL.LOSSES, f"{name}: MODEL.LOSSES.{cls.config_node} is not a config node"
        params = inspect.signature(cls.__init__).parameters
        for arg, key in cls.config_args.items():
            assert arg in params, f"{name}: config_args names {arg!r}, not an argument of __init__"
            assert key in cfg.MODEL.LOSSES[cls.config_node], f"{name}: MODEL.LOSSES.{cls.config_node}.{key} missing"
        assert "scale" in params


def test_from_config_reads_scale_and_the_declared_keys_of_every_loss():
    names = sorted(_registered())
    opts = ["MODEL.LOSSES.NAME", str(tuple(names)), "MODEL.LOSSES.OSM.CL_CENTERS", "False"]
    for i, name in enumerate(names):  # a distinct weight per node
        opts += [f"MODEL.LOSSES.{get_loss_class(name).config_node}.SCALE", str(0.5 + i / 8)]
    cfg = build_config("", opts)
    losses = build_losses(cfg, feat_dim=4, num_classes=3)
    for name, loss in losses.items():
        node = cfg.MODEL.LOSSES[loss.config_node]
        assert loss.scale == node.SCALE, name
        for arg, key in loss.config_args.items():
            stored = getattr(loss, arg, None)
            if stored is not None:  # most keep the argument under its own name
                assert stored == node[key], (name, arg)


class _Throwaway(ReIDLoss):
    """A loss written to the contract only: node, argument map, compute."""

    output_name = "loss_throwaway"
    config_node = "CIRCLE"
    config_args = {"margin": "MARGIN", "gamma": "GAMMA"}

    def __init__(self, margin: float = 0.0, gamma: float = 1.0, scale: float = 1.0):
        super().__init__(scale)
        self.margin, self.gamma = margin, gamma

    def compute(self, outputs, targets):
        x = outputs["features"]
        return (x * self.gamma - self.margin).pow(2).mean()


def test_a_new_loss_needs_only_its_node_its_arguments_and_compute():
    cfg = build_config("", ["MODEL.LOSSES.CIRCLE.SCALE", "0.25", "MODEL.LOSSES.CIRCLE.MARGIN", "0.5",
                            "MODEL.LOSSES.CIRCLE.GAMMA", "3"])
    loss = _Throwaway.from_config(cfg)
    assert (loss.scale, loss.margin, loss.gamma) == (0.25, 0.5, 3)
    x = torch.randn(5, 4, dtype=torch.float64)
    want = 0.25 * ((x * 3.0 - 0.5) ** 2).sum() / x.numel()
    torch.testing.assert_close(loss({"features": x}, torch.zeros(5, dtype=torch.long)), want)


def test_the_weighted_loss_is_the_host_loss_times_scale():
    cfg = build_config("", ["MODEL.LOSSES.NAME", "('CircleLoss',)", "MODEL.LOSSES.CIRCLE.SCALE", "0.7"])
    (loss,) = build_losses(cfg).values()
    torch.manual_seed(0)
    feats, targets = torch.randn(8, 6), torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    c = cfg.MODEL.LOSSES.CIRCLE
    want = pairwise_circleloss(feats, targets, c.MARGIN, c.GAMMA) * 0.7
    assert torch.equal(loss({"features": feats}, targets), want)  # the same ops in the same order


def test_a_loss_without_a_node_says_so():
    class Nameless(ReIDLoss):
        def compute(self, outputs, targets):
            return outputs["features"].sum()

    with pytest.raises(NotImplementedError, match="Nameless sets no config_node"):
        Nameless.from_config(build_config(""))
