#!/usr/bin/env python
"""GPU self-test: every GPU path of the plugin in one command, with a pass / fail table.

    python tools/gpu_selftest.py                 # or: make gpu-selftest
    python tools/gpu_selftest.py --skip-throughput --steps 2

What it runs on one CUDA GPU (under 10 minutes on one GPU is the budget; ``--quick`` halves it):

- a few AMP training steps, float16 (with the grad scaler) and bfloat16, of every
  meta-architecture: the host's ``Baseline`` and ``MGN``, the video baseline (``VideoBaseline``)
  and every meta-architecture the installed projects register (found through the
  ``fastreid_ext.projects`` entry points and the configs each project ships, never by name),
  each on a tiny synthetic set generated on the fly, through the real loader and
  :class:`~fastreid_ext.engine.train_loop.DeviceTrainer`; every loss must stay finite;
- evaluation search with faiss on the GPU: flat and IVF indexes, ``k = 10`` and ``k = 3000``
  (above faiss's GPU limit of 2048: the CPU fallback), checked against exact torch search;
- k-reciprocal re-ranking on the GPU against the same computation on the CPU;
- extraction (``FeatureExtractor``) and ONNX export from a CUDA model;
- a 2-process NCCL run (metric losses gathered across ranks == one process on the whole batch)
  when at least two GPUs are visible;
- throughput of the video baseline and of each project's method at the input size of its
  paper configs (clips/s, fp32 vs AMP float16, inference), with the AMP embeddings within
  cosine :data:`AMP_MIN_COSINE` of the fp32 ones;
- ``tools/train_net.py`` end to end with AMP float16 and bfloat16 on every meta-architecture's
  synthetic config: one epoch, then ``--resume`` to a second;
- DDP on every visible GPU (NCCL) per meta-architecture: one step's gradients (BN statistics
  frozen, TF32 off) equal one process on the whole batch;
- evaluation with ``MODEL.DEVICE cuda`` equal to the CPU's on an odd item count; the training
  loader with 4 workers and ``pin_memory``; a flat faiss index over 70,000 rows (above one
  65,536-row add chunk) on every GPU (sharded when several);
- a memory probe per paper config: one AMP training step at its per-GPU batch
  (``IMS_PER_BATCH`` / visible GPUs), ``torch.cuda.max_memory_allocated`` (the estimate:
  ``docs/memory_plan.md``).

Each row runs in its own process (a device-side assert or an out-of-memory state cannot poison
the rows after it; ``--in-process`` to debug). The table is printed and written to ``--out``
(``logs/gpu_selftest.txt``) to attach to a report. Without a CUDA device it prints the same
table with every row ``SKIP no CUDA device: skipped`` and exits 0. Exit status: 1 when any
check failed.
"""
from __future__ import annotations

import argparse
import contextlib
import glob
import importlib
import importlib.util
import math
import os
import re
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Tuple

import torch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
#: the host's image meta-architectures the issue asks for (the host registers more: Distiller,
#: MoCo, which need a teacher / no identity labels)
HOST_ARCHS = ("Baseline", "MGN")
NO_CUDA = "no CUDA device: skipped"
#: fp16 / bf16 inference embeddings vs fp32: every clip's cosine similarity at least this
#: (half precision keeps ~3 significant digits; a failing row means a layer overflows or drifts)
AMP_MIN_COSINE = 0.99
#: where the checks run: "cuda", or "cpu" for ``--dry-run-cpu`` (developers: the same code
#: paths on the CPU, to catch errors in this script without a GPU; not a GPU test)
DEVICE = "cuda"


class Skip(Exception):
    """A check that cannot run here (reason in the message)."""


@dataclass
class Row:
    check: str
    status: str  # PASS | FAIL | SKIP
    detail: str
    seconds: float = 0.0


# ----------------------------------------------------------------------------- discovery
def project_config_dirs() -> Dict[str, str]:
    """``{entry point name: configs folder}`` of the installed projects (the folder next to
    the project package, as every project ships it)."""
    from fastreid_ext.config import project_entry_points

    out = {}
    for ep in project_entry_points():
        module = importlib.import_module(ep.value.split(":")[0])
        root = os.path.dirname(os.path.dirname(os.path.abspath(module.__file__)))
        folder = os.path.join(root, "configs")
        if os.path.isdir(folder):
            out[ep.name] = folder
    return out


def _meta_arch_of(path: str) -> Optional[str]:
    from fastreid_ext.config import build_config

    try:
        return build_config(path, freeze=False).MODEL.META_ARCHITECTURE
    except Exception:  # a config of another kind (a _BASE_ fragment, a stage file needing more)
        return None


def discover_meta_arch_configs() -> Dict[str, Dict[str, str]]:
    """``{meta-arch: {"synthetic": config, "paper": config}}`` for the video baseline (this
    repository's ``configs/``) and every project's meta-architectures (their ``configs/``).

    ``synthetic``: a config on a synthetic set (``synthetic_cpu.yml`` first), for training
    steps; ``paper``: a config on a real dataset (MARS first), whose input size and clip length
    are the paper's, for throughput."""
    folders = [os.path.join(REPO, "configs")] + sorted(project_config_dirs().values())
    found: Dict[str, Dict[str, List[str]]] = {}
    for folder in folders:
        for path in sorted(glob.glob(os.path.join(folder, "**", "*.yml"), recursive=True)):
            name = os.path.basename(path)
            if name.startswith("Base"):
                continue
            arch = _meta_arch_of(path)
            if arch is None or arch in HOST_ARCHS:
                continue
            kind = "synthetic" if "synthetic" in path.lower() else "paper"
            found.setdefault(arch, {}).setdefault(kind, []).append(path)

    def pick(paths: List[str], kind: str) -> str:
        if kind == "synthetic":
            key = lambda p: (os.path.basename(p) != "synthetic_cpu.yml", "baseline" in p, "step" in p, len(p), p)  # noqa: E731
        else:
            key = lambda p: ("mars" not in p.lower(), "baseline" in os.path.basename(p), len(p), p)  # noqa: E731
        return sorted(paths, key=key)[0]

    return {arch: {kind: pick(paths, kind) for kind, paths in kinds.items()} for arch, kinds in found.items()}


# ----------------------------------------------------------------------------- helpers
def _empty_missing_weights(cfg) -> None:
    """Checkpoint paths a config names (stage-1 weights) that do not exist here -> ``""``: the
    self-test trains from scratch."""
    def walk(node):
        for key, value in node.items():
            if hasattr(value, "items"):
                walk(value)
            elif isinstance(value, str) and value.endswith((".pth", ".pt", ".pkl")) and not os.path.isfile(value):
                node[key] = ""
    walk(cfg)


def _ensure_synthetic(cfg, root: str) -> None:
    """Generate the tiny synthetic dataset(s) ``cfg.DATASETS.NAMES`` name under ``root``."""
    from fastreid.data.datasets import DATASET_REGISTRY
    from fastreid_ext.data.synthetic import generate

    for name in cfg.DATASETS.NAMES:
        folder = getattr(DATASET_REGISTRY.get(name), "dataset_dir", "")
        if not folder.startswith("synthetic/"):
            raise Skip(f"dataset {name} is not synthetic")
        out = os.path.join(root, folder)
        if not os.path.isdir(out):
            generate(folder.split("/", 1)[1], out, ids=16, seed=0, frame_size=(64, 32), workers=1)


def _train_cfg(path: str, arch: str, dtype: str, root: str):
    from fastreid_ext.config import build_config

    cfg = build_config(path, freeze=False)
    cfg.MODEL.META_ARCHITECTURE = arch
    cfg.MODEL.DEVICE = DEVICE
    cfg.MODEL.BACKBONE.PRETRAIN = False
    cfg.MODEL.WEIGHTS = ""
    _empty_missing_weights(cfg)
    cfg.SOLVER.AMP.ENABLED = True
    cfg.SOLVER.AMP.DTYPE = dtype
    cfg.DATALOADER.NUM_WORKERS = 0
    cfg.DATALOADER.NUM_INSTANCE = 2
    cfg.SOLVER.IMS_PER_BATCH = 8
    cfg.DATASETS.ROOT = root
    cfg.OUTPUT_DIR = ""
    _ensure_synthetic(cfg, root)
    return cfg


class _FirstFrame:
    """A clip loader as an image loader: ``images`` ``(B, 1, C, H, W)`` -> ``(B, C, H, W)``
    (the host's ``Baseline`` / ``MGN`` take images)."""

    def __init__(self, loader):
        self.loader, self.dataset = loader, loader.dataset

    def __iter__(self):
        for batch in self.loader:
            images = batch["images"]
            images = images[:, 0] if images.dim() == 5 else images
            # float: the host normalises in place (fastreid/modeling/meta_arch/baseline.py:130,
            # images.sub_), which a uint8 train clip cannot hold
            yield dict(batch, images=images.float())


def train_steps(cfg, steps: int, image_model: bool = False) -> str:
    """``steps`` AMP steps of ``DeviceTrainer``; returns the losses; raises on a non-finite one."""
    from fastreid.utils.events import EventStorage
    from fastreid_ext.data.build import build_video_train_loader
    from fastreid_ext.engine.train_loop import DeviceTrainer
    from fastreid_ext.engine.trainer import Trainer

    loader = build_video_train_loader(cfg)
    cfg.MODEL.HEADS.NUM_CLASSES = loader.dataset.num_classes
    cfg.freeze()
    model = Trainer.build_model(cfg)
    optimizer, param_wrapper = Trainer.build_optimizer(cfg, model)
    trainer = DeviceTrainer(model, _FirstFrame(loader) if image_model else loader, optimizer, param_wrapper,
                            amp=True, amp_dtype=cfg.SOLVER.AMP.DTYPE)
    totals = []
    with EventStorage(0) as storage:
        for i in range(steps):
            trainer.iter = storage.iter = i
            trainer.run_step()
            latest = {k: v[0] for k, v in storage.latest().items() if k.startswith("loss") or k == "total_loss"}
            bad = sorted(k for k, v in latest.items() if not math.isfinite(v))
            if bad:
                raise AssertionError(f"non-finite {bad} at step {i}")
            totals.append(latest["total_loss"])
    scale = trainer.grad_scaler.get_scale() if trainer.grad_scaler.is_enabled() else None
    return (f"total loss {' -> '.join(f'{t:.3g}' for t in totals)}"
            + (f"; loss scale {scale:g}" if scale is not None else ""))


def _host_cfg(arch: str, dtype: str, root: str):
    cfg = _train_cfg(os.path.join(REPO, "configs", "Video-Baseline", "synthetic_cpu.yml"), arch, dtype, root)
    cfg.DATASETS.NAMES = ("SyntheticMarket1501",)
    cfg.DATASETS.TESTS = ("SyntheticMarket1501",)
    cfg.INPUT.SIZE_TRAIN = [96, 48] if arch == "MGN" else [64, 32]  # MGN splits the map in 2 and 3
    cfg.INPUT.SIZE_TEST = list(cfg.INPUT.SIZE_TRAIN)
    cfg.MODEL.BACKBONE.DEPTH = "50x"
    cfg.MODEL.BACKBONE.FEAT_DIM = 2048
    cfg.MODEL.LOSSES.NAME = ("CrossEntropyLoss", "TripletLoss")
    _ensure_synthetic(cfg, root)
    return cfg


# ----------------------------------------------------------------------------- checks
def _features(n: int, d: int = 128, seed: int = 0) -> torch.Tensor:
    g = torch.Generator(device="cpu").manual_seed(seed)
    return torch.randn(n, d, generator=g).to(DEVICE)


def check_faiss(kind: str, k: int) -> str:
    from fastreid_ext.evaluation import faiss_search
    from fastreid_ext.evaluation.approximate_search import ApproximateSearch, recall_at_k
    from fastreid_ext.evaluation.retrieval import search

    if faiss_search.faiss_num_gpus() == 0 and DEVICE == "cuda":
        raise AssertionError("the installed faiss has no GPU support (faiss-gpu needed)")
    q, g = _features(200, seed=1), _features(5000, seed=2)
    _, ref_idx = search(q, g, k, "cosine", backend="torch")
    t0 = time.perf_counter()
    if kind == "flat":
        _, idx = search(q, g, k, "cosine", backend="faiss", device=DEVICE)
    else:
        ann = ApproximateSearch(g.cpu(), kind="ivf", metric="cosine", nlist=64, nprobe=64,
                                train_size=5000, use_gpu=True)
        _, idx = ann.search(q.cpu(), k)
    dt = time.perf_counter() - t0
    recall = recall_at_k(idx[:, :10], ref_idx[:, :10])
    if recall < 0.99:
        raise AssertionError(f"recall@10 {recall:.3f} against exact torch search")
    return f"recall@10 {recall:.3f} vs torch exact; {dt:.2f} s"


def check_rerank() -> str:
    from fastreid_ext.evaluation.rerank import k_reciprocal_rerank

    q, g = _features(100, 64, seed=3), _features(600, 64, seed=4)
    gpu = k_reciprocal_rerank(q, g, device=DEVICE)
    cpu = k_reciprocal_rerank(q.cpu(), g.cpu(), device="cpu")
    diff = (gpu - cpu).abs()
    # float32 on two devices: a near-tie may change a k-reciprocal set, so a few entries may move;
    # the ranking must not
    same_top1 = (gpu.argmin(dim=1) == cpu.argmin(dim=1)).float().mean().item()
    if diff.median().item() > 1e-4 or same_top1 < 0.99:
        raise AssertionError(f"GPU vs CPU re-ranking: median |diff| {diff.median().item():.3g}, "
                             f"same top-1 for {same_top1:.1%} of queries")
    return f"max |GPU - CPU| {diff.max().item():.2g}, same top-1 {same_top1:.0%}"


def _tiny_video_model(root: str):
    from fastreid.modeling import build_model
    from fastreid_ext.config import build_config

    cfg = build_config(os.path.join(REPO, "configs", "Video-Baseline", "synthetic_cpu.yml"), freeze=False)
    cfg.MODEL.DEVICE = DEVICE
    cfg.MODEL.BACKBONE.PRETRAIN = False
    cfg.MODEL.HEADS.NUM_CLASSES = 4
    cfg.freeze()
    torch.manual_seed(0)
    return build_model(cfg).to(DEVICE).eval(), cfg


def check_extraction(root: str) -> str:
    from fastreid_ext.deploy.extractor import FeatureExtractor

    model, cfg = _tiny_video_model(root)
    h, w = cfg.INPUT.SIZE_TEST
    clips = torch.rand(4, cfg.TEST.VIDEO.SEQ_LEN, 3, h, w) * 255
    got = FeatureExtractor(cfg, model, "selftest")._forward(clips)  # the extractor's batch path
    with torch.inference_mode():
        ref = model({"images": clips.to(DEVICE)})
        if cfg.TEST.FLIP.ENABLED:
            ref = (ref + model({"images": clips.flip(dims=[-1]).to(DEVICE)})) / 2
    diff = (got - ref.double().cpu()).abs().max().item()
    if diff > 1e-4:
        raise AssertionError(f"extractor and direct forward differ by {diff:.3g}")
    if next(model.parameters()).device.type != DEVICE:
        raise AssertionError("the model left the GPU")
    return f"(4, {got.shape[1]}) embeddings, max |diff| {diff:.2g}"


def check_onnx(root: str, out_dir: str) -> str:
    from fastreid_ext.deploy.onnx_export import check_onnx as run_check
    from fastreid_ext.deploy.onnx_export import export_onnx

    if importlib.util.find_spec("onnx") is None:
        raise Skip("the onnx package is not installed (pip install onnx onnxruntime)")
    model, cfg = _tiny_video_model(root)
    h, w = cfg.INPUT.SIZE_TEST
    path = os.path.join(out_dir, "video_baseline.onnx")
    exporter = export_onnx(model, path, (2, cfg.TEST.VIDEO.SEQ_LEN, 3, h, w))
    if next(model.parameters()).device.type != DEVICE:
        raise AssertionError("export moved the caller's model off the GPU")
    diff = run_check(path, model, torch.rand(2, cfg.TEST.VIDEO.SEQ_LEN, 3, h, w) * 255)
    return f"{exporter} exporter; " + ("onnxruntime not installed: graph not run" if diff is None
                                       else f"onnxruntime max |diff| {diff:.2g}")


def _nccl_worker(out_dir: str, device: str) -> None:
    import torch.distributed as dist

    from fastreid.utils.events import EventStorage
    from fastreid_ext.config import build_config
    from fastreid_ext.modeling.losses import build_losses
    from fastreid_ext.utils.safe_io import atomic_write

    rank = dist.get_rank()
    cfg = build_config(freeze=False)
    cfg.MODEL.LOSSES.NAME = ("TripletLoss", "CircleLoss")
    losses = build_losses(cfg, feat_dim=16, num_classes=4).to(device)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(8, 16, generator=g).to(device).requires_grad_(True)
    t = torch.arange(4).repeat_interleave(2).to(device)
    with EventStorage():
        out = losses({"features": x[rank * 4:(rank + 1) * 4]}, t[rank * 4:(rank + 1) * 4])
        cfg.MODEL.LOSSES.GATHER = False  # the reference: one process, the whole batch
        whole = build_losses(cfg, feat_dim=16, num_classes=4).to(device)({"features": x}, t) if rank == 0 else None
    result = {k: v.item() for k, v in out.items()}
    if whole is not None:
        report = {"ddp": result, "whole": {k: v.item() for k, v in whole.items()}}
        atomic_write(os.path.join(out_dir, "nccl.pt"), lambda f: torch.save(report, f))


def check_nccl(out_dir: str) -> str:
    if DEVICE == "cuda" and torch.cuda.device_count() < 2:
        raise Skip(f"{torch.cuda.device_count()} GPU visible: the 2-process NCCL run needs 2")
    from fastreid_ext.engine.launch import launch

    launch(_nccl_worker, 2, device=DEVICE, args=(out_dir, DEVICE))  # NCCL for cuda (gloo in a dry run)
    r = torch.load(os.path.join(out_dir, "nccl.pt"))
    for k, v in r["whole"].items():
        if abs(r["ddp"][k] - v) > 1e-4 * max(1.0, abs(v)):
            raise AssertionError(f"{k}: 2 ranks {r['ddp'][k]:.6g} vs one process {v:.6g}")
    return "gathered losses == one process on the whole batch: " + ", ".join(
        f"{k} {v:.4g}" for k, v in r["whole"].items())


def check_train_net(path: str, dtype: str, root: str, out_dir: str) -> str:
    """``tools/train_net.py`` end to end on ``path`` (AMP ``dtype``): 1 epoch, then ``--resume``
    to a 2nd; the resumed run must start from epoch 2 and write results.json."""
    import json
    import subprocess

    from fastreid_ext.config import build_config

    _ensure_synthetic(build_config(path), root)
    out = os.path.join(out_dir, f"train_net_{os.path.basename(path)[:-4]}_{dtype}")
    opts = ["MODEL.DEVICE", DEVICE, "SOLVER.AMP.ENABLED", "True", "SOLVER.AMP.DTYPE", dtype,
            "MODEL.BACKBONE.PRETRAIN", "False", "DATALOADER.NUM_WORKERS", "2", "SOLVER.CHECKPOINT_PERIOD", "1",
            "TEST.EVAL_PERIOD", "100", "OUTPUT_DIR", out]
    env = dict(os.environ, FASTREID_DATASETS=root)
    cmd = [sys.executable, os.path.join(REPO, "tools", "train_net.py"), "--config-file", path]
    logs = []
    for extra in (["SOLVER.MAX_EPOCH", "1"], ["--resume", "SOLVER.MAX_EPOCH", "2"]):
        flags = [a for a in extra if a.startswith("--")]
        proc = subprocess.run(cmd + flags + opts + [a for a in extra if not a.startswith("--")],
                              env=env, capture_output=True, text=True, timeout=600)
        if proc.returncode:
            raise AssertionError((proc.stdout + proc.stderr).strip().splitlines()[-1][:300])
        logs.append(proc.stdout + proc.stderr)
    started = re.findall(r"Starting training from epoch (\d+)", logs[1])
    if not started or int(started[-1]) == 0:
        raise AssertionError(f"the resumed run did not resume (log: {started})")
    with open(os.path.join(out, "results.json")) as f:
        res = json.load(f)
    return f"1 epoch, then resumed at epoch {started[-1]}; results.json for {sorted(res)[:2]}"


def _ddp_grad_cfg(path: str, world: int):
    sys.path.insert(0, os.path.join(REPO, "tools"))
    import memory_plan

    cfg = memory_plan._cfg(path)
    cfg.defrost()
    cfg.MODEL.DEVICE = DEVICE
    cfg.MODEL.HEADS.NUM_CLASSES = 2 * world
    cfg.SOLVER.IMS_PER_BATCH, cfg.DATALOADER.NUM_INSTANCE = 4 * world, 2
    cfg.freeze()
    return cfg, memory_plan._batch(cfg, 4 * world)


def _ddp_grad_step(path: str, world: int, rank: int, out_dir: str) -> None:
    """One step with frozen BN statistics on this rank's rows (all of them in one process);
    the gradients saved for the comparison."""
    import torch.distributed as dist

    from fastreid.utils.events import EventStorage
    from fastreid_ext.engine.trainer import Trainer
    from fastreid_ext.utils.modules import train_with_frozen_statistics
    from fastreid_ext.utils.safe_io import atomic_write

    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    cfg, batch = _ddp_grad_cfg(path, world)
    torch.manual_seed(0)
    model = train_with_frozen_statistics(Trainer.build_model(cfg))
    distributed = dist.is_available() and dist.is_initialized()
    net = Trainer.wrap_ddp(cfg, model) if distributed else model
    n = 4 if distributed else 4 * world
    dev = next(model.parameters()).device  # build_model: the current CUDA device (the rank's)
    rows = {k: v[rank * n:(rank + 1) * n].to(dev) for k, v in batch.items()}
    with EventStorage():
        sum(net(rows).values()).backward()
    grads = {k: p.grad.cpu() for k, p in model.named_parameters() if p.grad is not None}
    atomic_write(os.path.join(out_dir, f"grads_{'ddp' if distributed else 'one'}_{rank}.pt"),
                 lambda f: torch.save(grads, f))


def _ddp_grad_worker(path: str, out_dir: str, device: str) -> None:
    import torch.distributed as dist

    global DEVICE
    DEVICE = device  # a spawned process starts from the module's default
    if device == "cuda":
        torch.cuda.set_device(dist.get_rank())
    _ddp_grad_step(path, dist.get_world_size(), dist.get_rank(), out_dir)


def check_ddp_gradients(path: str, out_dir: str) -> str:
    """DDP on every visible GPU (NCCL): one step's gradients == one process on the whole batch."""
    from fastreid_ext.engine.launch import launch

    world = torch.cuda.device_count() if DEVICE == "cuda" else 2
    if world < 2:
        raise Skip(f"{world} GPU visible: DDP needs 2")
    out = os.path.join(out_dir, "ddp_" + os.path.basename(path)[:-4])
    os.makedirs(out, exist_ok=True)
    launch(_ddp_grad_worker, world, device=DEVICE, args=(path, out, DEVICE))
    _ddp_grad_step(path, world, 0, out)
    got, ref = (torch.load(os.path.join(out, f"grads_{k}_0.pt")) for k in ("ddp", "one"))
    scale = max(g.abs().max().item() for g in ref.values())
    worst = max(((got[k] - g).abs().max().item() / scale, k) for k, g in ref.items())
    if got.keys() != ref.keys() or worst[0] > 1e-3:
        raise AssertionError(f"DDP vs one process: {worst[1]} differs by {worst[0]:.2g} of the largest gradient")
    return f"{world} ranks, {len(ref)} gradients: max diff {worst[0]:.2g} of the largest"


def check_eval_gpu_vs_cpu() -> str:
    """The evaluator with ``MODEL.DEVICE cuda`` equals the CPU one on an odd item count."""
    from fastreid_ext.config import build_config
    from fastreid_ext.evaluation.video_evaluator import VideoClipEvaluator

    n, q = 1001, 201
    feats = _features(n, 64, seed=5).cpu()
    pids = (torch.arange(n) % 97).tolist()
    camids = [0] * q + [1] * (n - q)
    results = {}
    for device in (DEVICE, "cpu"):
        cfg = build_config("", ["MODEL.DEVICE", device, "TEST.METRIC", "cosine"])
        ev = VideoClipEvaluator(cfg, q, n, pids, camids)
        ev.process({"track_idx": torch.arange(n)}, feats)
        results[device] = ev.evaluate()
    diff = max(abs(results[DEVICE][k] - results["cpu"][k]) for k in ("mAP", "Rank-1", "mINP"))
    if diff > 1e-3:
        raise AssertionError(f"GPU vs CPU metrics differ by {diff:.3g} points")
    return f"{n} items: mAP {results['cpu']['mAP']:.2f} on both (max diff {diff:.1g} points)"


def check_loader_workers(root: str) -> str:
    """The training loader with 4 workers and ``pin_memory``: 3 batches to the GPU."""
    from fastreid_ext.engine.trainer import Trainer

    path = os.path.join(REPO, "configs", "Video-Baseline", "synthetic_cpu.yml")
    cfg = _train_cfg(path, "VideoBaseline", "float16", root)
    cfg.DATALOADER.NUM_WORKERS = 4
    loader = Trainer.build_train_loader(cfg)
    if DEVICE == "cuda" and not loader.pin_memory:
        raise AssertionError("pin_memory is off with CUDA available")
    shapes = []
    for i, batch in zip(range(3), loader):
        images = batch["images"].to(DEVICE, non_blocking=True)
        shapes.append(tuple(images.shape))
    return f"4 workers, pin_memory {loader.pin_memory}: batches {shapes[0]} x {len(shapes)}"


def check_sharded_faiss() -> str:
    """A flat index over more than 65,536 rows on every visible GPU (sharded when several)."""
    from fastreid_ext.evaluation import faiss_search
    from fastreid_ext.evaluation.approximate_search import recall_at_k
    from fastreid_ext.evaluation.retrieval import search

    if faiss_search.faiss_num_gpus() == 0:
        raise Skip("the installed faiss has no GPU support")
    g, q = _features(70000, 64, seed=6).cpu(), _features(50, 64, seed=7).cpu()
    index = faiss_search.build_index(g, kind="flat", metric="cosine", use_gpu=True)
    _, idx = index.search(faiss_search.to_faiss_array(q, "cosine"), 10)
    _, ref = search(q, g, 10, "cosine", backend="torch")
    recall = recall_at_k(torch.from_numpy(idx).long(), ref)
    if recall < 0.99:
        raise AssertionError(f"recall@10 {recall:.3f}")
    return f"70,000 rows on {faiss_search.faiss_num_gpus()} GPU(s): recall@10 {recall:.3f} vs torch exact"


def memory_probe(path: str) -> str:
    """One AMP training step of ``path``'s model at its per-GPU batch (IMS_PER_BATCH / visible
    GPUs): ``torch.cuda.max_memory_allocated`` (compare with docs/memory_plan.md)."""
    sys.path.insert(0, os.path.join(REPO, "tools"))
    import memory_plan

    from fastreid.modeling import build_model
    from fastreid.utils.events import EventStorage

    cfg = memory_plan._cfg(path)
    gpus = max(1, torch.cuda.device_count()) if DEVICE == "cuda" else 1
    batch = int(cfg.SOLVER.IMS_PER_BATCH) // gpus if DEVICE == "cuda" else 2
    model = build_model(cfg).to(DEVICE).train()
    opt = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9)
    data = {k: v.to(DEVICE) for k, v in memory_plan._batch(cfg, batch).items()}
    if DEVICE == "cuda":
        torch.cuda.reset_peak_memory_stats()
    half = torch.float16 if DEVICE == "cuda" else torch.bfloat16
    with EventStorage(), torch.autocast(DEVICE, dtype=half):
        loss = sum(model(data).values())
    loss.backward()
    opt.step()
    peak = torch.cuda.max_memory_allocated() / 2 ** 30 if DEVICE == "cuda" else float("nan")
    return f"batch {batch} per GPU ({gpus} GPU(s)), AMP {str(half)[6:]}: max_memory_allocated {peak:.1f} GB"


def throughput(path: str, iters: int) -> str:
    """Inference clips/s at the config's input size and clip length, fp32 vs AMP float16."""
    from fastreid.modeling import build_model
    from fastreid_ext.config import build_config

    cfg = build_config(path, freeze=False)
    cfg.MODEL.DEVICE = DEVICE
    cfg.MODEL.BACKBONE.PRETRAIN = False
    cfg.MODEL.WEIGHTS = ""
    _empty_missing_weights(cfg)
    cfg.MODEL.HEADS.NUM_CLASSES = max(1, cfg.MODEL.HEADS.NUM_CLASSES or 625)
    cfg.freeze()
    model = build_model(cfg).to(DEVICE).eval()
    h, w = cfg.INPUT.SIZE_TEST
    t = cfg.TEST.VIDEO.SEQ_LEN
    batch, warmup = (16, 3) if DEVICE == "cuda" else (1, 0)  # a dry run only runs the code
    iters = iters if DEVICE == "cuda" else 1
    half = torch.float16 if DEVICE == "cuda" else torch.bfloat16
    clips = torch.rand(batch, t, 3, h, w, device=DEVICE) * 255
    keypoints = torch.rand(batch, t, 17, 3, device=DEVICE)  # pose models read them; others ignore them
    keypoints[..., 2] = 1.0
    sync = torch.cuda.synchronize if DEVICE == "cuda" else (lambda: None)
    rates, outs = {}, {}
    for name, amp in (("fp32", False), ("amp", True)):
        with torch.inference_mode(), torch.autocast(DEVICE, dtype=half, enabled=amp):
            for _ in range(warmup):
                model({"images": clips, "keypoints": keypoints})
            sync()
            t0 = time.perf_counter()
            for _ in range(iters):
                out = model({"images": clips, "keypoints": keypoints})
            sync()
        if not torch.isfinite(out).all():
            raise AssertionError(f"non-finite embeddings ({name})")
        rates[name] = iters * batch / (time.perf_counter() - t0)
        outs[name] = out.float()
    cos = torch.nn.functional.cosine_similarity(outs["amp"], outs["fp32"], dim=1).min().item()
    if cos < AMP_MIN_COSINE:
        raise AssertionError(f"AMP vs fp32 embeddings: min cosine {cos:.4f} < {AMP_MIN_COSINE}")
    return (f"{h}x{w}, T={t}, batch {batch}: fp32 {rates['fp32']:.1f} clips/s, AMP {str(half)[6:]} "
            f"{rates['amp']:.1f} clips/s (x{rates['amp'] / rates['fp32']:.2f}); AMP vs fp32 embeddings "
            f"min cosine {cos:.4f} (>= {AMP_MIN_COSINE})")


# ----------------------------------------------------------------------------- plan / table
def plan(args, root: str, out_dir: str) -> List[Tuple[str, Callable[[], str]]]:
    configs = discover_meta_arch_configs()
    checks: List[Tuple[str, Callable[[], str]]] = []
    for dtype in ("float16", "bfloat16"):
        for arch in HOST_ARCHS:
            checks.append((f"train AMP {dtype} {arch} (host)",
                           lambda a=arch, d=dtype: train_steps(_host_cfg(a, d, root), args.steps, image_model=True)))
        for arch in sorted(configs):
            path = configs[arch].get("synthetic")
            if path is None:
                checks.append((f"train AMP {dtype} {arch}", lambda a=arch: _raise(Skip(f"{a}: no synthetic config"))))
                continue
            checks.append((f"train AMP {dtype} {arch} ({os.path.relpath(path, REPO)})",
                           lambda a=arch, p=path, d=dtype: train_steps(_train_cfg(p, a, d, root), args.steps)))
    for kind in ("flat", "ivf"):
        for k in (10, 3000):
            checks.append((f"faiss GPU {kind} k={k}", lambda kd=kind, kk=k: check_faiss(kd, kk)))
    checks.append(("re-ranking on GPU", check_rerank))
    checks.append(("extraction from a CUDA model", lambda: check_extraction(root)))
    checks.append(("ONNX export from a CUDA model", lambda: check_onnx(root, out_dir)))
    checks.append(("2-process NCCL (gathered metric losses)", lambda: check_nccl(out_dir)))
    for arch in sorted(configs):
        path = configs[arch].get("synthetic")
        if path is not None:
            checks.append((f"DDP NCCL gradients == one process {arch}",
                           lambda p=path: check_ddp_gradients(p, out_dir)))
    for arch in sorted(configs):
        path = configs[arch].get("synthetic")
        for dtype in ("float16", "bfloat16"):
            if path is not None:
                checks.append((f"train_net AMP {dtype} + resume {arch}",
                               lambda p=path, d=dtype: check_train_net(p, d, root, out_dir)))
    checks.append(("evaluation GPU == CPU (odd item count)", check_eval_gpu_vs_cpu))
    checks.append(("loader 4 workers + pin_memory", lambda: check_loader_workers(root)))
    checks.append(("faiss flat > 65,536 rows on all GPUs (sharded)", check_sharded_faiss))
    sys.path.insert(0, os.path.join(REPO, "tools"))
    import memory_plan

    for path in memory_plan.paper_configs():
        checks.append((f"memory probe AMP {path}", lambda p=path: memory_probe(p)))
    if not args.skip_throughput:
        for arch in sorted(configs):
            path = configs[arch].get("paper")
            if path is not None:
                checks.append((f"throughput {arch} ({os.path.relpath(path, REPO)})",
                               lambda p=path: throughput(p, args.iters)))
    return checks


def _raise(e: Exception):
    raise e


def run_isolated(names: List[str], argv: List[str], work: str) -> List[Row]:
    """Each check in its own process (``--row NAME``): a device-side assert or an out-of-memory
    state cannot poison the rows after it. A child that dies without its row is a FAIL row."""
    import json
    import subprocess

    rows = []
    for i, name in enumerate(names):
        out = os.path.join(work, f"row{i}.json")
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, os.path.abspath(__file__), *argv, "--row", name, "--row-json", out,
                               "--work", work], capture_output=True, text=True)
        if os.path.isfile(out):
            with open(out) as f:
                rows.append(Row(**json.load(f)))
        else:
            last = ((proc.stderr or proc.stdout).strip().splitlines() or ["no output"])[-1]
            rows.append(Row(name, "FAIL", f"the row's process exited {proc.returncode}: {last[:240]}",
                            time.perf_counter() - t0))
    return rows


def run(checks, cuda: bool) -> List[Row]:
    rows = []
    for name, fn in checks:
        if not cuda:
            rows.append(Row(name, "SKIP", NO_CUDA))
            continue
        t0 = time.perf_counter()
        try:
            rows.append(Row(name, "PASS", fn(), time.perf_counter() - t0))
        except Skip as e:
            rows.append(Row(name, "SKIP", str(e), time.perf_counter() - t0))
        except Exception as e:  # a failed check is a row, the others still run
            where = traceback.extract_tb(e.__traceback__)[-1]
            last = (str(e).strip().splitlines() or [""])[-1]  # a child process's error: its last line
            rows.append(Row(name, "FAIL", f"{type(e).__name__}: {last[:240]} [{os.path.basename(where.filename)}:"
                                          f"{where.lineno}]", time.perf_counter() - t0))
        finally:
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
    return rows


def format_table(rows: List[Row]) -> str:
    width = max([len(r.check) for r in rows] + [5])
    lines = [f"{'check':<{width}}  status  {'time':>7}  detail", "-" * (width + 40)]
    for r in rows:
        lines.append(f"{r.check:<{width}}  {r.status:<6}  {r.seconds:6.1f}s  {r.detail}")
    counts = {s: sum(r.status == s for r in rows) for s in ("PASS", "FAIL", "SKIP")}
    lines.append("-" * (width + 40))
    lines.append(f"{counts['PASS']} passed, {counts['FAIL']} failed, {counts['SKIP']} skipped")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=3, help="AMP training steps per meta-arch and dtype")
    parser.add_argument("--iters", type=int, default=10, help="timed batches per throughput row")
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--quick", action="store_true", help="2 steps, 5 timed batches")
    parser.add_argument("--dry-run-cpu", action="store_true",
                        help="developers: run the checks' code on the CPU (bfloat16 autocast; no faiss GPU, "
                             "NCCL or throughput); not a GPU test")
    parser.add_argument("--only", default="", help="run only the checks whose name contains this text")
    parser.add_argument("--out", default=os.path.join("logs", "gpu_selftest.txt"),
                        help="the table is also written here (attach it to a report)")
    parser.add_argument("--in-process", action="store_true", help="run the rows in this process (debugging)")
    parser.add_argument("--row", default="", help=argparse.SUPPRESS)       # child: run this one check
    parser.add_argument("--row-json", default="", help=argparse.SUPPRESS)  # child: write its row here
    parser.add_argument("--work", default="", help=argparse.SUPPRESS)      # child: the parent's folder
    args = parser.parse_args(argv)
    if args.quick:
        args.steps, args.iters = 2, 5

    import fastreid_ext  # noqa: F401  (compat shims, registrations)
    from fastreid_ext.utils.safe_io import atomic_write

    global DEVICE
    DEVICE = "cpu" if args.dry_run_cpu else "cuda"
    cuda = torch.cuda.is_available() or args.dry_run_cpu
    with tempfile.TemporaryDirectory(prefix="gpu_selftest_") as tmp:
        work = args.work or tmp
        root, out_dir = os.path.join(work, "datasets"), os.path.join(work, "out")
        os.makedirs(out_dir, exist_ok=True)
        with contextlib.redirect_stdout(sys.stderr):  # libraries' prints away from the table
            checks = [c for c in plan(args, root, out_dir)
                      if (c[0] == args.row if args.row else args.only in c[0])]
            if args.row:
                return _run_child(checks, args.row_json)
            header = (f"GPU self-test: torch {torch.__version__}, "
                      + ("DRY RUN ON THE CPU (not a GPU test)" if args.dry_run_cpu else
                         f"{torch.cuda.device_count()} x {torch.cuda.get_device_name(0)}" if cuda else NO_CUDA))
            if cuda and not args.in_process:
                passed = [a for a in (argv if argv is not None else sys.argv[1:])
                          if a not in ("--in-process",)]
                rows = run_isolated([c[0] for c in checks], _without_option(passed, "--only"), work)
            else:
                rows = run(checks, cuda)
    table = header + "\n" + format_table(rows)
    print(table)
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        atomic_write(args.out, lambda f: f.write((table + "\n").encode()))
    return 1 if any(r.status == "FAIL" for r in rows) else 0


def _without_option(argv: List[str], option: str) -> List[str]:
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == option:
            skip = True
        elif not a.startswith(option + "="):
            out.append(a)
    return out


def _run_child(checks, row_json: str) -> int:
    """``--row``: run the one check in this process and write its row (JSON) for the parent."""
    import dataclasses
    import json

    from fastreid_ext.utils.safe_io import atomic_write

    if len(checks) != 1:
        raise SystemExit(f"--row must name exactly one check, matched {len(checks)}")
    row = run(checks, cuda=True)[0]
    atomic_write(row_json, lambda f: f.write(json.dumps(dataclasses.asdict(row)).encode()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
