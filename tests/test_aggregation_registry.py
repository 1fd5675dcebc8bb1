"""A new temporal aggregation is one registered class and one config value.

The throw-away aggregation below (max pooling over ``T`` of the per-frame GAP features) is
registered here, in the test file, selected by ``MODEL.TEMPORAL.AGG``, trained in a tiny video
baseline for a few iterations and evaluated; the test checks that it was really used (the head
sees max over T of the frame features, computed here independently) and that its declared
diagnostics reach ``metrics.json``.
"""
import os

import pytest
import torch
from conftest import REPO, metrics_rows

import fastreid_ext  # noqa: F401  (compat shims, registrations)
from fastreid.config import configurable
from fastreid.modeling import build_model
from fastreid.utils.env import seed_all_rng
from fastreid_ext.config import build_config
from fastreid_ext.engine import Trainer
from fastreid_ext.engine.train_loop import DIAG_PREFIX
from fastreid_ext.modeling.aggregation import (
    AGGREGATION_REGISTRY,
    AggregationOutput,
    AvgPooling,
    TemporalAggregation,
    TemporalAttention,
    aggregation_of,
)

TINY = os.path.join(REPO, "tests", "configs", "tiny_video.yml")


@AGGREGATION_REGISTRY.register_as("throwaway_max")
class MaxOverTime(TemporalAggregation):
    """Max over T of the per-frame GAP features; a frame's weight is the share of channels whose
    maximum it holds. Counts its forwards per mode."""

    @configurable
    def __init__(self):
        super().__init__()
        self.calls = {"train": 0, "eval": 0}
        self._last_share = None

    @classmethod
    def from_config(cls, cfg, channels, map_size):
        return {}

    def forward(self, maps):
        frame_feats = maps.mean(dim=(-2, -1))  # (B, T, C)
        features, argmax = frame_feats.max(dim=1)  # (B, C)
        t = frame_feats.shape[1]
        share = torch.nn.functional.one_hot(argmax, t).to(maps.dtype).mean(dim=1)  # (B, T)
        self.calls["train" if self.training else "eval"] += 1
        if self.training:
            self._last_share = share.detach()
        return AggregationOutput(features=features, frame_weights=share)

    def diagnostics(self, erased=None):
        if self._last_share is None:
            return {}
        return {"max_first_frame_share": float(self._last_share[:, 0].mean())}


def test_throwaway_aggregation_on_a_hand_made_clip():
    """Two clips of three constant frames (GAP = the constant): max over T per channel."""
    maps = torch.zeros(2, 3, 2, 2, 1)
    values = [[[1.0, 5.0], [4.0, 2.0], [3.0, 3.0]],   # clip 0: channel maxima at frames 1 and 0
              [[0.0, -1.0], [-2.0, -3.0], [-1.0, 7.0]]]
    for b, clip in enumerate(values):
        for t, frame in enumerate(clip):
            for c, v in enumerate(frame):
                maps[b, t, c] = v
    out = MaxOverTime()(maps)
    assert out.features.tolist() == [[4.0, 5.0], [0.0, 7.0]]
    assert out.frame_weights.tolist() == [[0.5, 0.5, 0.0], [0.5, 0.0, 0.5]]
    assert out.scores is None and out.node_weights is None


def test_throwaway_aggregation_trains_and_evaluates_by_one_config_value(datasets_env, tmp_path):
    out = str(tmp_path / "run")
    os.makedirs(out)
    cfg = build_config(TINY, ["MODEL.TEMPORAL.AGG", "throwaway_max", "SOLVER.MAX_EPOCH", "1",
                              "SOLVER.CHECKPOINT_PERIOD", "100", "OUTPUT_DIR", out])
    seed_all_rng(0)
    trainer = Trainer(cfg)
    trainer.train()
    model = trainer.model
    agg = aggregation_of(model)
    assert isinstance(agg, MaxOverTime)
    assert agg.calls["train"] == trainer.iters_per_epoch > 0

    results = Trainer.test(cfg, model)
    assert 0.0 <= results["mAP"] <= 100.0 and agg.calls["eval"] > 0
    # the declared diagnostics reached metrics.json at the end of the epoch
    rows = [r for r in metrics_rows(out) if DIAG_PREFIX + "max_first_frame_share" in r]
    assert rows and 0.0 <= rows[-1][DIAG_PREFIX + "max_first_frame_share"] <= 1.0

    # the head sees max over T of the frame features (an independent recomputation)
    seen = []
    hook = model.heads.register_forward_pre_hook(lambda module, args: seen.append(args[0]))
    images = torch.rand(3, 4, 3, *cfg.INPUT.SIZE_TEST, generator=torch.Generator().manual_seed(0)) * 255
    model.eval()
    with torch.no_grad():
        model({"images": images})
        frame_feats = model.frame_maps({"images": images}).double().mean(dim=(-2, -1))  # (B, T, C)
    hook.remove()
    reference = frame_feats.max(dim=1).values
    assert seen[0].shape == (3, frame_feats.shape[2], 1, 1)
    assert torch.allclose(seen[0][..., 0, 0].double(), reference, atol=1e-5)
    assert not torch.allclose(reference, frame_feats.mean(dim=1), atol=1e-3)  # max is not the mean


def _tiny_model(agg):
    return build_model(build_config(TINY, ["MODEL.TEMPORAL.AGG", agg, "MODEL.HEADS.NUM_CLASSES", "4"]))


def test_core_values_unchanged_and_unknown_value_lists_the_registry():
    assert isinstance(_tiny_model("avg").aggregation, AvgPooling)
    assert isinstance(_tiny_model("attention").aggregation, TemporalAttention)
    with pytest.raises(ValueError, match="MODEL.TEMPORAL.AGG 'nope'") as err:
        _tiny_model("nope")
    listed = str(err.value).split("known: ")[1].split(", ")
    assert listed == AGGREGATION_REGISTRY.names()
    assert {"avg", "attention", "throwaway_max"} <= set(listed)


def test_a_project_variant_is_a_video_baseline_aggregation_too():
    """MG-RAFA's variants sit in the same registry: ``MODEL.TEMPORAL.AGG mgrafa_afa`` puts its
    attention into the video baseline, whose head then sees the aggregation's clip feature."""
    pytest.importorskip("mgrafa")
    from mgrafa.aggregation import MultiGranularityAggregation

    torch.manual_seed(0)
    model = _tiny_model("mgrafa_afa").eval()
    agg = aggregation_of(model)
    assert isinstance(agg, MultiGranularityAggregation) and agg.attention == "afa"
    images = torch.rand(2, 3, 3, 32, 16, generator=torch.Generator().manual_seed(1)) * 255
    seen = []
    hook = model.heads.register_forward_pre_hook(lambda module, args: seen.append(args[0]))
    with torch.no_grad():
        model({"images": images})
        out = agg(model.frame_maps({"images": images}))
    hook.remove()
    assert torch.allclose(seen[0][..., 0, 0], out.features, atol=1e-6)
    assert out.frame_weights.shape == (2, 3)
    assert torch.allclose(out.frame_weights.sum(dim=1), torch.ones(2), atol=1e-6)


def test_frame_share_hand_worked():
    """Two groups, one clip, T = 2: per channel the frame mass normalised over T, then the
    mean over all channels of all groups."""
    from fastreid_ext.modeling.aggregation import frame_share

    g1 = torch.tensor([[0.1, 0.3], [0.2, 0.4]]).view(1, 1, 2, 2, 1)   # (B, C_1, T, h, w): 0.4 / 0.6
    g2 = torch.tensor([[[0.5], [0.5]], [[0.25], [0.25]]]).view(1, 2, 2, 1, 1) * 2  # gates, each channel 0.5 / 0.5
    share = frame_share([g1, g2])
    assert share.shape == (1, 2)
    assert share[0].tolist() == pytest.approx([(0.4 + 0.5 + 0.5) / 3, (0.6 + 0.5 + 0.5) / 3])


def test_loss_inputs_follow_the_contract_and_one_aggregation_per_model():
    maps = torch.rand(2, 3, 4, 2, 1)
    avg_out = AvgPooling()(maps)
    assert AvgPooling().loss_inputs(avg_out) == {}  # fixed weights: nothing for the attention loss
    att = TemporalAttention(4, 3, (2, 1))
    out = att(maps)
    entries = att.loss_inputs(out)
    assert entries["attention_scores"] is out.scores and entries["attention_weights"] is out.frame_weights
    assert MaxOverTime().loss_inputs(MaxOverTime()(maps)).keys() == {"attention_weights"}
    assert aggregation_of(torch.nn.Linear(2, 2)) is None
    with pytest.raises(ValueError, match="2 temporal aggregations"):
        aggregation_of(torch.nn.Sequential(AvgPooling(), att))
