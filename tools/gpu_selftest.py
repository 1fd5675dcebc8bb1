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
  paper configs (clips/s, fp32 vs AMP float16, inference).

Without a CUDA device it prints the same table with every row ``SKIP no CUDA device: skipped``
and exits 0. Exit status: 1 when any check failed.
"""
from __future__ import annotations

import argparse
import contextlib
import glob
import importlib
import importlib.util
import math
import os
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
    from fastreid_ext.evaluation.retrieval import search

    if faiss_search.faiss_num_gpus() == 0 and DEVICE == "cuda":
        raise AssertionError("the installed faiss has no GPU support (faiss-gpu needed)")
    q, g = _features(200, seed=1), _features(5000, seed=2)
    _, ref_idx = search(q, g, k, "cosine", backend="torch")
    t0 = time.perf_counter()
    if kind == "flat":
        _, idx = search(q, g, k, "cosine", backend="faiss", device=DEVICE)
    else:
        ann = faiss_search.ApproximateSearch(g.cpu(), kind="ivf", metric="cosine", nlist=64, nprobe=64,
                                             train_size=5000, use_gpu=True)
        _, idx = ann.search(q.cpu(), k)
    dt = time.perf_counter() - t0
    recall = faiss_search.recall_at_k(idx[:, :10], ref_idx[:, :10])
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
        torch.save({"ddp": result, "whole": {k: v.item() for k, v in whole.items()}},
                   os.path.join(out_dir, "nccl.pt"))


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
    rates = {}
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
    return (f"{h}x{w}, T={t}, batch {batch}: fp32 {rates['fp32']:.1f} clips/s, AMP {str(half)[6:]} "
            f"{rates['amp']:.1f} clips/s (x{rates['amp'] / rates['fp32']:.2f})")


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
    if not args.skip_throughput:
        for arch in sorted(configs):
            path = configs[arch].get("paper")
            if path is not None:
                checks.append((f"throughput {arch} ({os.path.relpath(path, REPO)})",
                               lambda p=path: throughput(p, args.iters)))
    return checks


def _raise(e: Exception):
    raise e


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
    args = parser.parse_args(argv)
    if args.quick:
        args.steps, args.iters = 2, 5

    import fastreid_ext  # noqa: F401  (compat shims, registrations)

    global DEVICE
    DEVICE = "cpu" if args.dry_run_cpu else "cuda"
    cuda = torch.cuda.is_available() or args.dry_run_cpu
    with tempfile.TemporaryDirectory(prefix="gpu_selftest_") as tmp:
        root, out_dir = os.path.join(tmp, "datasets"), os.path.join(tmp, "out")
        os.makedirs(out_dir)
        with contextlib.redirect_stdout(sys.stderr):  # libraries' prints away from the table
            checks = [c for c in plan(args, root, out_dir) if args.only in c[0]]
            header = (f"GPU self-test: torch {torch.__version__}, "
                      + ("DRY RUN ON THE CPU (not a GPU test)" if args.dry_run_cpu else
                         f"{torch.cuda.device_count()} x {torch.cuda.get_device_name(0)}" if cuda else NO_CUDA))
            rows = run(checks, cuda)
    print(header)
    print(format_table(rows))
    return 1 if any(r.status == "FAIL" for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
