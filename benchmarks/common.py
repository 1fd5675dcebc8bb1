"""The benchmarks' harness: the synthetic data sets and one train + test run.

Imported by the scripts in this folder (``python benchmarks/bench_x.py`` puts the folder on the
import path) and by the claims benchmark (``benchmarks/claims/common.py``).
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from typing import Dict, Optional, Sequence, Tuple

import fastreid_ext  # noqa: F401  (compat shims, registrations)
from fastreid_ext.data.synthetic import DATASET_DIRS, DONE_FILE, generate

#: dataset folder of each synthetic layout under a datasets root (where its dataset class reads it)
LAYOUT_DIRS = DATASET_DIRS


def datasets_root() -> str:
    return os.environ.get("FASTREID_DATASETS", "datasets")


def ensure_synthetic(layout: str, ids: int, root: Optional[str] = None) -> str:
    """Generate the synthetic ``layout`` set under ``root`` unless a finished one is there."""
    path = os.path.join(root or datasets_root(), LAYOUT_DIRS[layout])
    if not os.path.isfile(os.path.join(path, DONE_FILE)):
        print(f"generating synthetic {layout} ({ids} ids) in {path}", flush=True)
        generate(layout, path, ids=ids, seed=0)
    return path


def variants_parser(doc: str, ids: int, epochs: int, variants: Sequence[str],
                    default: Sequence[str]) -> argparse.ArgumentParser:
    """Command line of a method benchmark that trains variants: ``--ids --epochs --seeds
    --variants --out`` and ``KEY VALUE`` config overrides for every variant."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ids", type=int, default=ids)
    parser.add_argument("--epochs", type=int, default=epochs)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--variants", nargs="+", default=list(default), choices=sorted(variants))
    parser.add_argument("--out", default="", help="output folder (default: a temporary one)")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE config overrides for every variant")
    return parser


def prepare_variants(args, layout: str, prefix: str) -> Tuple[str, str]:
    """The synthetic ``layout`` set (generated with ``args.ids`` identities unless there), the
    output folder (``args.out`` or a new temporary one) and at most 2 torch threads; returns
    ``(datasets root, output folder)``."""
    import torch

    root = datasets_root()
    ensure_synthetic(layout, args.ids, root)
    out_dir = args.out or tempfile.mkdtemp(prefix=prefix)
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    return root, out_dir


def train_and_test(cfg, seed: Optional[int] = None) -> Tuple[Dict[str, float], float, object]:
    """Train ``cfg`` from scratch with the plugin's :class:`Trainer` (after ``seed_all_rng(seed)``
    when a seed is given), evaluate it once at the end when no evaluation hook did, and return
    ``(results, train + test seconds, model)``, the model unwrapped and in eval mode."""
    from fastreid.utils.env import seed_all_rng
    from fastreid_ext.engine import Trainer

    os.makedirs(cfg.OUTPUT_DIR, exist_ok=True)  # the host writes config.yaml there
    if seed is not None:
        seed_all_rng(seed)
    t0 = time.perf_counter()
    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=False)
    results = trainer.train()
    if not results:  # no evaluation hook ran: evaluate explicitly
        results = Trainer.test(cfg, trainer.model)
    model = trainer.model.module if hasattr(trainer.model, "module") else trainer.model
    model.eval()
    return dict(results), time.perf_counter() - t0, model
