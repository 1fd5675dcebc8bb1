"""Pieces the method benchmarks share: the synthetic data set and one train + test run.

Imported by the scripts in this folder (``python benchmarks/bench_x.py`` puts the folder on the
import path).
"""
from __future__ import annotations

import os
import time
from typing import Dict, Optional, Tuple

import fastreid_ext  # noqa: F401  (compat shims, registrations)
from fastreid.utils.env import seed_all_rng
from fastreid_ext.data.synthetic import DONE_FILE, generate
from fastreid_ext.engine import Trainer

#: dataset folder of each synthetic layout under ``$FASTREID_DATASETS``
SYNTHETIC_DIRS = {
    "mars": os.path.join("synthetic", "mars"),
    "market1501": os.path.join("synthetic", "market1501", "Market-1501-v15.09.15"),
}


def datasets_root() -> str:
    return os.environ.get("FASTREID_DATASETS", "datasets")


def ensure_synthetic(layout: str, ids: int, root: Optional[str] = None) -> str:
    """Generate the synthetic ``layout`` set under ``root`` unless a finished one is there."""
    path = os.path.join(root or datasets_root(), SYNTHETIC_DIRS[layout])
    if not os.path.isfile(os.path.join(path, DONE_FILE)):
        print(f"generating synthetic {layout} ({ids} ids) in {path}", flush=True)
        generate(layout, path, ids=ids, seed=0)
    return path


def train_and_test(cfg, seed: Optional[int] = None) -> Tuple[Dict[str, float], float, object]:
    """Train ``cfg`` from scratch with :class:`Trainer`, evaluate it, and return
    ``(results, train + test seconds, model)``."""
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
    return dict(results), time.perf_counter() - t0, model
