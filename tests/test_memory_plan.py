"""tools/memory_plan.py: the bytes autograd saves, counted against a hand count, and the probe
shared by configs that differ only in data (one probe per model and clip shape)."""
import importlib.util
import os

import torch
from conftest import REPO
from torch import nn

_spec = importlib.util.spec_from_file_location("memory_plan", os.path.join(REPO, "tools", "memory_plan.py"))
memory_plan = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(memory_plan)


class _MulRelu(nn.Module):
    """``relu(x * w)``: for the gradient of ``w`` autograd saves ``x`` (``w`` only when ``x`` needs
    a gradient too), and the ReLU's output."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.ones(4))

    def forward(self, batch):
        return {"loss": torch.relu(batch["images"] * self.w).sum()}


def test_saved_bytes_counts_each_saved_storage_once():
    for n in (2, 5):
        got = memory_plan.saved_bytes(_MulRelu(), {"images": torch.rand(n, 4)}, amp=False)
        assert got == n * 4 * 4 + n * 4 * 4  # x and relu(x * w), float32
        x = torch.rand(n, 4, requires_grad=True)
        assert memory_plan.saved_bytes(_MulRelu(), {"images": x}, amp=False) == got + 4 * 4  # and w


def test_configs_that_differ_only_in_data_share_one_probe():
    key = {p: memory_plan.probe_key(memory_plan._cfg(p)) for p in (
        "configs/Video-Baseline/mars.yml", "configs/Video-Baseline/ilidsvid.yml",
        "projects/MGRAFA/configs/mars_mgrafa.yml", "projects/MGRAFA/configs/mars_baseline.yml")}
    assert key["configs/Video-Baseline/mars.yml"] == key["configs/Video-Baseline/ilidsvid.yml"]
    assert key["projects/MGRAFA/configs/mars_mgrafa.yml"] != key["projects/MGRAFA/configs/mars_baseline.yml"]


def test_a_cached_probe_is_reused(monkeypatch):
    path = "configs/Video-Baseline/mars.yml"
    fake = {"per_clip": {"fp32": 2.0 ** 30, "amp": 2.0 ** 29}, "const": {"fp32": 0.0, "amp": 0.0}}
    probes = {memory_plan.probe_key(memory_plan._cfg(path)): fake}
    monkeypatch.setattr(memory_plan, "activation_probe", lambda *a: (_ for _ in ()).throw(AssertionError("probed")))
    row = memory_plan.plan_row(path, 70.0, probes)
    assert row["clip_mb_fp32"] == 1024 and row["clip_mb_amp"] == 512
    cfg = memory_plan._cfg(path)
    h, w = cfg.INPUT.SIZE_TRAIN
    inputs = cfg.SOLVER.IMS_PER_BATCH * cfg.INPUT.VIDEO.SEQ_LEN * 3 * h * w * 4
    assert abs(row["gb_fp32"] - (cfg.SOLVER.IMS_PER_BATCH + inputs / 2 ** 30 + row["state_gb"])) < 1e-9


def test_gpu_counts_the_batch_does_not_divide_into_are_not_offered(monkeypatch):
    """FGPose step 1's batch of 150 splits over 1 or 2 GPUs only (the loader refuses 4 and 8):
    1 GB per clip needs ~38 GB a GPU at 4 GPUs, which is refused, so no count fits; half of it
    fits 2 GPUs."""
    path = "projects/FGPose/configs/fgpr_step1.yml"
    fake = {"per_clip": {"fp32": 2.0 ** 30, "amp": 2.0 ** 29}, "const": {"fp32": 0.0, "amp": 0.0}}
    probes = {memory_plan.probe_key(memory_plan._cfg(path)): fake}
    monkeypatch.setattr(memory_plan, "activation_probe", lambda *a: (_ for _ in ()).throw(AssertionError("probed")))
    row = memory_plan.plan_row(path, 70.0, probes)
    assert row["batch"] == 150 and 150 < row["gb_fp32"] < 160
    assert row["gpus_fp32"] is None and row["gpus_amp"] == 2
    assert "| none / 2 |" in memory_plan.format_table([row], 70.0)


def test_the_probe_is_the_same_from_two_and_three_clips_as_from_two_and_four():
    """``--clips 2 3`` (for models whose 4-clip forward does not fit the CPU) projects the same
    per-clip and constant bytes as the default 2 and 4: ``relu(x * w)`` saves 2 x 4 bytes per
    input value and nothing else."""
    from fastreid.config import CfgNode

    cfg = CfgNode({"INPUT": {"VIDEO": {"SEQ_LEN": 3}, "SIZE_TRAIN": [2, 4]},
                   "MODEL": {"HEADS": {"NUM_CLASSES": 2}}})
    per_value = 2 * 4
    values = 3 * 3 * 2 * 4  # T x C x H x W
    for clips in ((2, 4), (2, 3)):
        got = memory_plan.activation_probe(cfg, _MulRelu(), clips)
        assert got["per_clip"]["fp32"] == per_value * values, clips
        assert got["const"]["fp32"] == 0, clips
