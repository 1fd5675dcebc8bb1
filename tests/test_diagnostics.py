"""Trainer side of the diagnostics contract: a meta-arch's ``diagnostics()`` reaches
``metrics.json`` as ``diag/<key>`` at the log period and at the end of every epoch."""
import os

import pytest
import torch
from conftest import REPO, metrics_rows

import fastreid_ext  # noqa: F401  (compat shims, registrations)
from fastreid.modeling.meta_arch import META_ARCH_REGISTRY
from fastreid.utils.events import EventStorage
from fastreid_ext.config import build_config
from fastreid_ext.engine import Trainer
from fastreid_ext.engine.train_loop import DIAG_PREFIX, DeviceTrainer, collect_diagnostics
from fastreid_ext.modeling.aggregation import AvgPooling
from fastreid_ext.modeling.meta_arch.video_baseline import VideoBaseline

TINY = os.path.join(REPO, "tests", "configs", "tiny_video.yml")


class _CountingAvg(AvgPooling):
    """Average pooling that counts its training forwards and keeps the mean absolute clip
    feature of the last one."""

    forwards = 0
    last_abs = float("nan")

    def forward(self, maps):
        out = super().forward(maps)
        if self.training:
            self.forwards += 1
            self.last_abs = float(out.features.detach().abs().mean())
        return out


@META_ARCH_REGISTRY.register()
class DiagToyVideoBaseline(VideoBaseline):
    """The video baseline plus diagnostics: the number of training forwards so far and the
    mean absolute clip feature of the last one; every value handed out is recorded."""

    @classmethod
    def from_config(cls, cfg):
        return {**super().from_config(cfg), "aggregation": _CountingAvg()}

    def diagnostics(self):
        agg = self.aggregation
        if "handed_out" not in self.__dict__:
            self.handed_out = []  # (forwards, last_abs) at each diagnostics() call
        self.handed_out.append((agg.forwards, agg.last_abs))
        return {"forwards": agg.forwards, "clip_abs": torch.tensor(agg.last_abs)}


def test_toy_diagnostics_reach_metrics_json(datasets_env, tmp_path):
    out = str(tmp_path / "run")
    os.makedirs(out)
    cfg = build_config(TINY, ["MODEL.META_ARCHITECTURE", "DiagToyVideoBaseline", "SOLVER.MAX_EPOCH", "2",
                              "SOLVER.CHECKPOINT_PERIOD", "100", "OUTPUT_DIR", out])
    torch.manual_seed(0)
    trainer = Trainer(cfg)
    trainer.train()
    model = trainer.model
    ipe = trainer.iters_per_epoch
    assert ipe >= 2
    # read at the end of each epoch (the tiny run never reaches the 200-iteration period)
    assert [f for f, _ in model.handed_out] == [ipe, 2 * ipe]

    rows = [r for r in metrics_rows(out) if DIAG_PREFIX + "forwards" in r]
    assert [r["iteration"] for r in rows] == [ipe - 1, 2 * ipe - 1]
    for row, (forwards, clip_abs) in zip(rows, model.handed_out):
        assert row[DIAG_PREFIX + "forwards"] == forwards
        assert row[DIAG_PREFIX + "clip_abs"] == pytest.approx(clip_abs, rel=1e-6)
        assert clip_abs > 0
    # the ordinary losses are still there
    assert any("total_loss" in r for r in metrics_rows(out))


class _Stub(torch.nn.Module):
    def __init__(self, diag):
        super().__init__()
        self.w = torch.nn.Parameter(torch.ones(1))
        self._diag = diag

    def diagnostics(self):
        return self._diag


@pytest.mark.parametrize("diag, message", [
    ([1.0], "must return a dict"),
    ({"": 1.0}, "non-empty strings"),
    ({"a": "x"}, "must be a number"),
    ({"a": torch.ones(2)}, "must be a scalar"),
])
def test_bad_diagnostics_are_clear_errors(diag, message):
    with pytest.raises(TypeError, match=message):
        collect_diagnostics(_Stub(diag))


def test_no_diagnostics_method_gives_nothing():
    assert collect_diagnostics(torch.nn.Linear(2, 2)) == {}


def test_period_and_epoch_end_schedule():
    """diag at iterations whose count is a multiple of the period or of the epoch length."""
    model = _Stub({"v": 1.0})
    tr = DeviceTrainer.__new__(DeviceTrainer)  # only the schedule and the storage write
    tr.model, tr.iters_per_epoch, tr.diag_period = model, 7, 5
    seen = []
    with EventStorage(0) as storage:
        for it in range(21):
            tr.iter = it
            storage.iter = it
            tr._write_diagnostics()
            if (DIAG_PREFIX + "v") in storage.latest() and storage.latest()[DIAG_PREFIX + "v"][1] == it:
                seen.append(it + 1)
    assert seen == [5, 7, 10, 14, 15, 20, 21]


def test_diagnostics_are_read_through_ddp(tmp_path):
    """A DistributedDataParallel-wrapped model: the trainer reads the wrapped module's values."""
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    store = dist.FileStore(str(tmp_path / "store"), 1)
    dist.init_process_group("gloo", store=store, rank=0, world_size=1)
    try:
        wrapped = DistributedDataParallel(_Stub({"att_dead_frac": 0.25}))
        assert not hasattr(wrapped, "diagnostics")
        assert collect_diagnostics(wrapped) == {"att_dead_frac": 0.25}
    finally:
        dist.destroy_process_group()
