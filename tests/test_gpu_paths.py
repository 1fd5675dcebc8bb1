"""GPU and multi-process paths that CPU can reach: the launch backend follows MODEL.DEVICE
(CUDA mocked visible), DDP arguments, precise BN with real labels, the GradScaler state through
a checkpoint."""
import importlib
import os

import pytest
import torch
import torch.nn.functional as F
from conftest import REPO, shipped_meta_architectures
from torch import nn

from fastreid_ext.engine.checkpoint import AtomicCheckpointer, ScalerCheckpointable
from fastreid_ext.engine.precise_bn import PreciseBN, update_bn_stats

TINY = os.path.join(REPO, "tests", "configs", "tiny_video.yml")
launch_mod = importlib.import_module("fastreid_ext.engine.launch")  # the module, not the function


# ---------------------------------------------------------------- 1. backend follows MODEL.DEVICE
@pytest.fixture()
def cuda_visible(monkeypatch):
    """One CUDA device "visible" (mocked): what used to make launch pick NCCL for CPU models."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)


def test_backend_follows_model_device_with_cuda_visible(cuda_visible):
    assert launch_mod.default_backend("cpu") == "gloo"
    assert launch_mod.default_backend("cuda") == "nccl"
    assert launch_mod.default_backend("cuda:0") == "nccl"
    assert launch_mod.default_backend(None) == "nccl"  # MODEL.DEVICE's default with a GPU


def test_backend_without_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert launch_mod.default_backend(None) == "gloo"
    with pytest.raises(RuntimeError, match="CUDA is not available"):
        launch_mod.default_backend("cuda")
    with pytest.raises(ValueError, match="no process-group backend"):
        launch_mod.default_backend("meta")


def _record_spawn(monkeypatch):
    calls = []
    monkeypatch.setattr(launch_mod.mp, "start_processes",
                        lambda fn, nprocs, args, **kw: calls.append((nprocs, args)))
    return calls


def test_four_cpu_processes_on_a_one_gpu_box_use_gloo(cuda_visible, monkeypatch):
    calls = _record_spawn(monkeypatch)
    launch_mod.launch(print, 4, device="cpu")
    (nprocs, args), = calls
    assert nprocs == 4 and args[-1] == "gloo"


def test_more_cuda_processes_than_gpus_is_refused_before_spawning(cuda_visible, monkeypatch):
    calls = _record_spawn(monkeypatch)
    with pytest.raises(RuntimeError, match="only 1 GPU"):
        launch_mod.launch(print, 4, device="cuda")
    assert calls == []
    launch_mod.launch(print, 1, device="cuda")  # one process: no process group, no spawn
    assert calls == []


# ---------------------------------------------------------------- DDP arguments
@pytest.fixture()
def one_process_group(tmp_path):
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'pg'}", rank=0, world_size=1)
    yield
    dist.destroy_process_group()


class _Toy(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3, 2)


class _ToyUnused(_Toy):
    ddp_find_unused_parameters = True


def _cfg(**model_keys):
    from fastreid_ext.config import build_config

    cfg = build_config(TINY, freeze=False)
    for k, v in model_keys.items():
        cfg.MODEL[k] = v
    return cfg


def test_ddp_find_unused_parameters_off_unless_asked(one_process_group):
    from fastreid_ext.engine.trainer import Trainer

    assert Trainer.wrap_ddp(_cfg(), _Toy()).find_unused_parameters is False
    assert Trainer.wrap_ddp(_cfg(), _ToyUnused()).find_unused_parameters is True  # declared
    forced = Trainer.wrap_ddp(_cfg(DDP_FIND_UNUSED_PARAMETERS=True), _Toy())
    assert forced.find_unused_parameters is True
    assert forced.device_ids is None  # CPU model: no device ids


def test_model_device_for_keeps_cpu_and_explicit_gpu():
    from fastreid_ext.engine.trainer import model_device_for

    assert model_device_for("cpu") == torch.device("cpu")
    assert model_device_for("cuda:1") == torch.device("cuda", 1)


# ---------------------------------------------------------------- precise BN keeps the labels
class _BNNet(nn.Module):
    """BN over (B, 3) inputs, then a cross-entropy that needs real labels (targets >= 0)."""

    def __init__(self):
        super().__init__()
        self.bn = nn.BatchNorm1d(3)
        self.fc = nn.Linear(3, 4)

    def forward(self, batch):
        x = self.bn(batch["images"])
        if self.training:
            return {"loss_cls": F.cross_entropy(self.fc(x), batch["targets"])}
        return x


def _bn_batches(n=3, b=6):
    g = torch.Generator().manual_seed(0)
    return [{"images": torch.randn(b, 3, generator=g) * (i + 1) + i, "targets": torch.arange(b) % 4}
            for i in range(n)]


def test_host_precise_bn_feeds_minus_one_labels():
    from fastreid.utils.precision_bn import update_bn_stats as host_update

    with pytest.raises((IndexError, RuntimeError)):  # the host fills targets with -1
        host_update(_BNNet().train(), iter(_bn_batches()), 3)


def test_precise_bn_uses_real_labels_and_averages_batch_statistics():
    net = _BNNet().train()
    batches = _bn_batches()
    targets_before = [b["targets"].clone() for b in batches]
    assert update_bn_stats(net, iter(batches), 3) == 3
    # reference: the plain mean over batches of each batch's mean and unbiased variance
    ref_mean = torch.stack([b["images"].double().mean(0) for b in batches]).mean(0)
    ref_var = torch.stack([b["images"].double().var(0, unbiased=True) for b in batches]).mean(0)
    torch.testing.assert_close(net.bn.running_mean.double(), ref_mean, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(net.bn.running_var.double(), ref_var, rtol=1e-5, atol=1e-6)
    assert net.bn.momentum == 0.1  # restored
    for b, t in zip(batches, targets_before):
        assert torch.equal(b["targets"], t)  # the batch is not modified


def test_precise_bn_with_a_short_loader_raises():
    with pytest.raises(ValueError, match="NUM_ITER"):
        update_bn_stats(_BNNet().train(), iter(_bn_batches(2)), 3)


def test_trainer_precise_bn_hook_runs_on_the_video_baseline(datasets_env, tmp_path):
    from fastreid_ext.engine.trainer import Trainer

    cfg = _cfg()
    cfg.TEST.PRECISE_BN.ENABLED = True
    cfg.TEST.PRECISE_BN.DATASET = "SyntheticMARS"
    cfg.TEST.PRECISE_BN.NUM_ITER = 2
    cfg.OUTPUT_DIR = str(tmp_path)
    cfg.freeze()
    trainer = Trainer(cfg)
    hooks = [h for h in trainer._hooks if isinstance(h, PreciseBN)]
    assert len(hooks) == 1
    bn = trainer.model.heads.bottleneck[0]
    before = bn.running_mean.clone()
    hooks[0].update_stats()  # the host's hook raises here (targets -1 reach the cross-entropy)
    assert not torch.equal(bn.running_mean, before)
    # the trainer's GradScaler is checkpointed
    assert trainer.checkpointer.checkpointables["grad_scaler"].scaler is trainer._trainer.grad_scaler


# ---------------------------------------------------------------- GradScaler state round trip
def _scaler_after_overflow():
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0, growth_interval=3, enabled=True)
    p = nn.Parameter(torch.ones(2))
    opt = torch.optim.SGD([p], lr=0.1)
    scaler.scale((p * float("inf")).sum()).backward()  # overflow: step skipped, scale halved
    scaler.step(opt)
    scaler.update()
    opt.zero_grad()
    scaler.scale(p.sum()).backward()  # one good step: growth tracker 1
    scaler.step(opt)
    scaler.update()
    return scaler


def test_grad_scaler_state_round_trips_through_a_checkpoint(tmp_path):
    scaler = _scaler_after_overflow()
    assert scaler.get_scale() == 512.0
    model = nn.Linear(2, 2)
    AtomicCheckpointer(model, str(tmp_path), grad_scaler=ScalerCheckpointable(scaler)).save("model_x")

    fresh = torch.amp.GradScaler("cpu", enabled=True)  # 65536 without the checkpoint
    ckpt = AtomicCheckpointer(nn.Linear(2, 2), str(tmp_path), grad_scaler=ScalerCheckpointable(fresh))
    ckpt.resume_or_load("", resume=True)
    assert fresh.get_scale() == 512.0
    assert fresh.state_dict() == scaler.state_dict()


def test_checkpoint_of_a_run_without_scaler_loads_into_a_float16_run(tmp_path):
    disabled = torch.amp.GradScaler("cpu", enabled=False)  # fp32 run: saves {}
    AtomicCheckpointer(nn.Linear(2, 2), str(tmp_path), grad_scaler=ScalerCheckpointable(disabled)).save("a")
    fresh = torch.amp.GradScaler("cpu", init_scale=256.0, enabled=True)
    AtomicCheckpointer(nn.Linear(2, 2), str(tmp_path), grad_scaler=ScalerCheckpointable(fresh)).load(
        str(tmp_path / "a.pth"))
    assert fresh.get_scale() == 256.0  # kept, no "state dict is empty" error


# ---------------------------------------------------------------- extraction over several GPUs
def test_data_parallel_runner_puts_the_models_own_gpu_first(monkeypatch):
    from fastreid_ext.deploy import extractor

    made = []
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 3)
    monkeypatch.setattr(extractor.nn, "DataParallel", lambda m, **kw: made.append(kw) or m)
    model = nn.Linear(2, 2)
    extractor.data_parallel_runner(model, torch.device("cuda", 1))
    assert made == [{"device_ids": [1, 0, 2], "output_device": 1}]
    assert extractor.data_parallel_runner(model, torch.device("cpu")) is model
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert extractor.data_parallel_runner(model, torch.device("cuda", 0)) is model


class _ClipMean(nn.Module):
    """Eval forward of a meta-arch: ``{"images": (B, T, C, H, W)} -> (B, C)``."""

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(3))

    def forward(self, batch):
        return batch["images"].mean(dim=(1, 3, 4)) * self.scale


def test_onnx_export_and_check_leave_the_callers_model_alone(tmp_path):
    """A CUDA model used to come back on the CPU (``EmbeddingGraph(model).to("cpu")`` moves
    the caller's module) and in eval mode; here the caller's module is not touched."""
    pytest.importorskip("onnx")
    from fastreid_ext.deploy.onnx_export import check_onnx, export_onnx

    model = _ClipMean().train()
    param = model.scale
    export_onnx(model, str(tmp_path / "m.onnx"), (2, 2, 3, 8, 4))
    check_onnx(str(tmp_path / "m.onnx"), model, torch.rand(2, 2, 3, 8, 4) * 255)
    assert model.training and model.scale is param


# ---------------------------------------------------------------- tools/gpu_selftest.py on CPU
def test_gpu_selftest_without_cuda_prints_a_skipped_table_and_exits_0(tmp_path):
    import subprocess
    import sys

    env = dict(os.environ, CUDA_VISIBLE_DEVICES="", OMP_NUM_THREADS="1")
    table = tmp_path / "table.txt"
    proc = subprocess.run([sys.executable, os.path.join(REPO, "tools", "gpu_selftest.py"), "--out", str(table)],
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = [line for line in proc.stdout.splitlines() if "  SKIP  " in line or "  PASS  " in line
            or "  FAIL  " in line]
    assert rows and all("SKIP" in r and "no CUDA device: skipped" in r for r in rows)
    # every meta-arch the projects register (found through their entry points), and the host's
    # Baseline and MGN, has an AMP row for both half types
    expected = shipped_meta_architectures() - {"Distiller", "MoCo"}
    for dtype in ("float16", "bfloat16"):
        trained = {r.split()[3] for r in rows if r.startswith(f"train AMP {dtype} ")}
        assert trained == expected
    for name in ("faiss GPU flat k=10", "faiss GPU flat k=3000", "faiss GPU ivf k=10", "faiss GPU ivf k=3000",
                 "re-ranking on GPU", "extraction from a CUDA model", "ONNX export from a CUDA model",
                 "2-process NCCL", "throughput VideoBaseline", "evaluation GPU == CPU (odd item count)",
                 "loader 4 workers + pin_memory", "faiss flat > 65,536 rows"):
        assert any(r.startswith(name) for r in rows), name
    for dtype in ("float16", "bfloat16"):  # train_net end to end + resume, per meta-arch with a synthetic config
        assert {r.split()[5] for r in rows if r.startswith(f"train_net AMP {dtype} + resume ")} == expected - {
            "Baseline", "MGN"}
    ddp = {r.split()[6] for r in rows if r.startswith("DDP NCCL gradients == one process ")}
    assert ddp == expected - {"Baseline", "MGN"}
    import importlib.util

    spec = importlib.util.spec_from_file_location("memory_plan", os.path.join(REPO, "tools", "memory_plan.py"))
    memory_plan = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(memory_plan)
    probed = {r.split()[3] for r in rows if r.startswith("memory probe AMP ")}
    assert probed == set(memory_plan.paper_configs()) and len(probed) > 20
    assert f"0 passed, 0 failed, {len(rows)} skipped" in proc.stdout
    assert table.read_text().strip() == proc.stdout.strip()  # the table a user attaches


# ---------------------------------------------------------------- evaluation batches: one copy each
class _InPlaceNormaliser(nn.Module):
    """Normalises its input in place (like the host ``Baseline``), then a width-sensitive
    embedding (so the flipped half differs)."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.linspace(-1, 1, 4))

    def forward(self, batch):
        x = batch["images"]
        x.sub_(100.0).div_(50.0)
        return (x.mean(dim=(1, 2, 3)) * self.w).view(x.shape[0], -1)[:, :1].expand(-1, 2) + x.mean(dim=(1, 2, 3, 4))[:, None]


class _Collect:
    def reset(self):
        self.out = []

    def process(self, batch, outputs):
        self.out.append(outputs)

    def evaluate(self):
        return {"n": len(self.out)}


class _CountImageCopies(torch.overrides.TorchFunctionMode):
    def __init__(self, images):
        super().__init__()
        self.images, self.copies = images, 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if args and args[0] is self.images and getattr(func, "__name__", "") in ("to", "flip", "clone", "cuda"):
            self.copies += 1
        return func(*args, **(kwargs or {}))


def test_evaluation_copies_the_images_once_per_batch_even_with_flip():
    from fastreid_ext.evaluation.inference import inference_on_dataset

    g = torch.Generator().manual_seed(0)
    batch = {"images": torch.rand(3, 2, 3, 4, 4, generator=g) * 255, "targets": torch.arange(3)}
    before = batch["images"].clone()
    model, ev = _InPlaceNormaliser(), _Collect()
    counter = _CountImageCopies(batch["images"])
    with counter:
        inference_on_dataset(model, [batch], ev, flip_test=True, progress=False)
    assert counter.copies == 1  # was 3: two copies of the images, one more for the flip
    assert torch.equal(batch["images"], before)
    with torch.no_grad():  # reference: the model on fresh copies of x and flip(x)
        ref = (model({"images": before.clone()}) + model({"images": before.flip(-1).clone()})) / 2
    torch.testing.assert_close(ev.out[0], ref)
