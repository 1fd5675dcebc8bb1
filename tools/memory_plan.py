#!/usr/bin/env python
"""Memory plan: per paper config, the GPU memory one training step needs at its per-GPU batch,
fp32 and AMP, and the number of 80 GB GPUs that makes it fit.

    python tools/memory_plan.py                       # every shipped paper config
    python tools/memory_plan.py --out docs/memory_plan.md
    python tools/memory_plan.py --configs projects/FGPose/configs/fgpr_step1.yml
    python tools/memory_plan.py --cache logs/memory_plan.json   # resumable: finished probes kept

Method (measured on the CPU, no GPU needed):

1. the config's model at its input size and clip length, random initialisation, training mode;
2. one training forward at a batch of 2 and of 4 clips (once per model and clip shape: configs
   that differ only in data, schedule or batch share the probe), counting the bytes of every tensor
   autograd saves for the backward pass (``torch.autograd.graph.saved_tensors_hooks``, each
   storage once): the activation memory of the step; half the difference of the two is the
   memory per clip, the rest the per-step constant, projected linearly to the per-GPU batch
   ``SOLVER.IMS_PER_BATCH / GPUs``;
3. AMP: the same forward under ``torch.autocast("cpu", dtype=torch.bfloat16)`` (convolutions
   and matrix products keep 2-byte activations, as CUDA fp16 autocast does);
4. plus the model state: fp32 weights, their gradients and the optimizer's state (SGD with
   momentum: 1 copy, Adam: 2), and the float32 input batch itself.

Not counted: the backward pass's transient buffers, cuDNN workspaces, the caching allocator's
fragmentation and the CUDA context (about 0.5-1 GB); a row is marked as fitting an 80 GB GPU
when the estimate is under ``--budget-gb`` (default 70 of 80 GB, leaving that margin). The GPU
self-test's memory-probe rows (``tools/gpu_selftest.py``) measure ``max_memory_allocated`` on
a GPU. Also reported: the shared memory one float32 batch takes when loader workers hand it
over (``/dev/shm``; ``DATALOADER.NUM_WORKERS`` x 2 batches are in flight per rank).
"""
from __future__ import annotations

import argparse
import ctypes
import gc
import glob
import json
import os
import sys
from typing import Dict, List, Optional, Tuple

import torch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GPU_COUNTS = (1, 2, 4, 8)
GB = 1024 ** 3


def paper_configs() -> List[str]:
    """Every shipped config that trains on a real dataset (not the CPU-sized synthetic ones,
    not ``Base-`` fragments)."""
    paths = []
    for pattern in ("configs/*/*.yml", "projects/*/configs/*.yml", "projects/*/configs/*/*.yml"):
        for p in sorted(glob.glob(os.path.join(REPO, pattern))):
            name = os.path.basename(p)
            if not name.startswith("Base-") and "synthetic" not in p.lower():
                paths.append(os.path.relpath(p, REPO))
    return paths


def _cfg(path: str):
    from fastreid_ext.config import build_config

    cfg = build_config(os.path.join(REPO, path), freeze=False)
    cfg.MODEL.DEVICE = "cpu"
    cfg.MODEL.BACKBONE.PRETRAIN = False
    cfg.MODEL.WEIGHTS = ""
    for key in ("MARS_WEIGHTS", "PRETRAINED_MODEL"):
        if "FGREID" in cfg.MODEL and key in cfg.MODEL.FGREID:
            cfg.MODEL.FGREID[key] = ""
    cfg.MODEL.HEADS.NUM_CLASSES = int(cfg.MODEL.HEADS.NUM_CLASSES) or 1000
    cfg.freeze()
    return cfg


def _batch(cfg, n: int) -> Dict[str, torch.Tensor]:
    t = int(cfg.INPUT.VIDEO.SEQ_LEN)
    h, w = (int(v) for v in cfg.INPUT.SIZE_TRAIN)
    g = torch.Generator().manual_seed(0)  # the same batch in every process (GPU self-test's DDP row)
    kp = torch.rand(n, t, 17, 3, generator=g)
    kp[..., 2] = 1.0
    return {"images": torch.rand(n, t, 3, h, w, generator=g) * 255, "keypoints": kp, "erased": torch.zeros(n, t, dtype=torch.bool),
            "targets": torch.arange(n) % int(cfg.MODEL.HEADS.NUM_CLASSES)}


def saved_bytes(model, batch, amp: bool) -> int:
    """Bytes of the tensors autograd saves in one training forward of ``batch`` (each storage
    counted once)."""
    from fastreid.utils.events import EventStorage

    seen: Dict[int, int] = {}

    def pack(x):
        try:
            s = x.untyped_storage()
            seen[s.data_ptr()] = s.nbytes()
        except (RuntimeError, NotImplementedError):  # sparse / opaque tensors: their own size
            seen[id(x)] = x.numel() * x.element_size()
        return x

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda x: x), EventStorage(), \
            torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
        losses = model(dict(batch))
    del losses
    return sum(seen.values())


def state_bytes(cfg, model) -> int:
    """fp32 weights + gradients + optimizer state of the trainable parameters."""
    n = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    per = {"Adam": 2, "AdamW": 2, "SGD": 1 if float(cfg.SOLVER.MOMENTUM) else 0}.get(str(cfg.SOLVER.OPT), 2)
    return 4 * n + 4 * trainable * (1 + per)


def probe_key(cfg) -> str:
    """What the activation probe depends on: the model config (class count aside: it sizes the
    classifier's weights, counted in the state; loss weights and margins aside) and the input
    clip's shape. Configs that differ
    only in data, schedule or batch share one probe."""
    model = cfg.MODEL.clone()
    model.defrost()
    model.HEADS.NUM_CLASSES = 0
    model.DEVICE = "cpu"
    for name in list(model.LOSSES):  # which losses run, not their weights or margins
        if name != "NAME":
            del model.LOSSES[name]
    return json.dumps([model.dump(), list(cfg.INPUT.SIZE_TRAIN), int(cfg.INPUT.VIDEO.SEQ_LEN)], sort_keys=True)


def activation_probe(cfg, model, clips: Tuple[int, int] = (2, 4)) -> Dict[str, Dict[str, float]]:
    """``{"per_clip": {fp32, amp}, "const": {fp32, amp}}`` in bytes, from forwards at ``clips``
    (two batch sizes, >= 2 clips each: BN needs two values per channel)."""
    small, large = clips
    per_clip, const = {}, {}
    for amp, name in ((False, "fp32"), (True, "amp")):
        low, high = (_saved_bytes_released(model, _batch(cfg, n), amp) for n in (small, large))
        per_clip[name] = (high - low) / (large - small)
        const[name] = low - small * per_clip[name]
    return {"per_clip": per_clip, "const": const}


def _saved_bytes_released(model, batch, amp: bool) -> int:
    """:func:`saved_bytes`, then the freed memory handed back to the OS (glibc keeps it otherwise,
    and the next, larger forward would come on top of it)."""
    n = saved_bytes(model, batch, amp)
    del batch
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to trim
        pass
    return n


def plan_row(path: str, budget_gb: float, probes: Optional[Dict[str, Dict]] = None,
             clips: Tuple[int, int] = (2, 4)) -> Dict[str, object]:
    """One config's row; ``probes`` (probe key -> :func:`activation_probe` result) is read and
    filled, so configs of the same model and clip shape are probed once."""
    from fastreid.modeling import build_model

    cfg = _cfg(path)
    torch.manual_seed(0)
    model = build_model(cfg).train()
    probes = {} if probes is None else probes
    key = probe_key(cfg)
    if key not in probes:
        probes[key] = activation_probe(cfg, model, clips)
    per_clip = {False: probes[key]["per_clip"]["fp32"], True: probes[key]["per_clip"]["amp"]}
    const = {False: probes[key]["const"]["fp32"], True: probes[key]["const"]["amp"]}
    state = state_bytes(cfg, model)
    t = int(cfg.INPUT.VIDEO.SEQ_LEN)
    h, w = (int(v) for v in cfg.INPUT.SIZE_TRAIN)
    input_per_clip = t * 3 * h * w * 4
    batch = int(cfg.SOLVER.IMS_PER_BATCH)

    def total(amp: bool, gpus: int) -> float:
        b = batch / gpus
        return (const[amp] + b * (per_clip[amp] + input_per_clip) + state) / GB

    def fits(amp: bool) -> Optional[int]:
        # only GPU counts the batch divides into: the training loader refuses the others
        return next((g for g in GPU_COUNTS if batch % g == 0 and total(amp, g) <= budget_gb), None)

    return {"config": path, "arch": cfg.MODEL.META_ARCHITECTURE, "batch": batch, "frames": t, "size": f"{h}x{w}",
            "clip_mb_fp32": per_clip[False] / 2 ** 20, "clip_mb_amp": per_clip[True] / 2 ** 20,
            "state_gb": state / GB, "gb_fp32": total(False, 1), "gb_amp": total(True, 1),
            "gpus_fp32": fits(False), "gpus_amp": fits(True),
            "shm_mb": batch * input_per_clip / 2 ** 20, "workers": int(cfg.DATALOADER.NUM_WORKERS)}


def format_table(rows: List[Dict[str, object]], budget_gb: float) -> str:
    def gpus(v):
        return str(v) if v is not None else "none"

    lines = [f"| config | arch | batch (clips x frames, HxW) | act. MB / clip fp32 / AMP | state GB | "
             f"1 GPU GB fp32 / AMP | 80 GB GPUs fp32 / AMP (<= {budget_gb:g} GB each) | shm MB / batch |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| `{r['config']}` | {r['arch']} | {r['batch']} x {r['frames']}, {r['size']} | "
                     f"{r['clip_mb_fp32']:.0f} / {r['clip_mb_amp']:.0f} | {r['state_gb']:.2f} | "
                     f"{r['gb_fp32']:.1f} / {r['gb_amp']:.1f} | {gpus(r['gpus_fp32'])} / {gpus(r['gpus_amp'])} | "
                     f"{r['shm_mb']:.0f} |")
    return "\n".join(lines)


def _load_probes(path: str) -> Dict[str, Dict]:
    if not path or not os.path.exists(path):
        return {}
    with open(path) as f:
        return json.load(f)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configs", nargs="*", help="configs (default: every shipped paper config)")
    parser.add_argument("--budget-gb", type=float, default=70.0, help="usable GB of one 80 GB GPU")
    parser.add_argument("--out", default="", help="also write the table (Markdown) to this file")
    parser.add_argument("--cache", default="", help="JSON file of finished probes, written after each "
                        "config and read at start: an interrupted run resumes where it stopped")
    parser.add_argument("--clips", type=int, nargs=2, default=(2, 4), metavar=("SMALL", "LARGE"),
                        help="the two probe batch sizes in clips (>= 2; 2 3 for models whose 4-clip "
                        "forward does not fit the CPU's memory)")
    args = parser.parse_args(argv)
    if not 2 <= args.clips[0] < args.clips[1]:
        parser.error(f"--clips needs 2 <= SMALL < LARGE, got {args.clips}")

    import fastreid_ext  # noqa: F401  (registrations)
    from fastreid_ext.utils.safe_io import atomic_write

    torch.set_grad_enabled(True)
    probes = _load_probes(args.cache)
    rows = []
    for path in args.configs or paper_configs():
        try:
            rows.append(plan_row(path, args.budget_gb, probes, tuple(args.clips)))
        except Exception as e:  # a config that needs more than this tool provides: named, skipped
            print(f"skipped {path}: {type(e).__name__}: {str(e).splitlines()[0][:200]}", file=sys.stderr)
            continue
        if args.cache:
            atomic_write(args.cache, lambda f: f.write(json.dumps(probes).encode()))
        print(f"measured {path}", file=sys.stderr, flush=True)
    table = format_table(rows, args.budget_gb)
    print(table)
    if args.out:
        atomic_write(args.out, lambda f: f.write((table + "\n").encode()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
