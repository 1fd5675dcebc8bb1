"""Pre-train the claims' shared backbone once: ``python -m benchmarks.claims.pretrain``.

The stand-in for the papers' ImageNet start: a ResNet-18 (the host's ``build_resnet_backbone``,
last stride 1) trained as an identity classifier (cross-entropy + triplet, the plain image
baseline) on a synthetic Market-1501-layout set that is larger than any claim's set and drawn
with another seed (other people, other cameras). Deterministic (``SEED``), cached under
``<cache>/backbone-<hash of the settings>.pth`` (the host ResNet's own key names, loadable with
``MODEL.BACKBONE.PRETRAIN_PATH``) with a ``.json`` next to it holding the settings and the
measured cost (wall and CPU seconds, threads). A second call finds the file and returns.
"""
from __future__ import annotations

import argparse
import os
import time
from typing import Dict, Optional

from .common import (
    REPO,
    cache_dir,
    cpu_seconds,
    ensure_dataset,
    key_of,
    opts_list,
    read_json,
    remove_checkpoints,
    threads,
    train_and_test,
    write_json_atomic,
)

#: everything that changes the pre-trained weights
SETTINGS: Dict = dict(
    data=dict(layout="market1501", ids=300, cameras=6, frame_size=(64, 32), min_len=2, max_len=5,
              distractors=0.0, junk=0.0),
    data_seed=1000,  # not the claims' seed 0: other identities and cameras
    depth="18x", size=(64, 32), epochs=30, batch=64, instances=4, lr=0.00035, seed=0,
)


def backbone_path(cache: str = "") -> str:
    return os.path.join(cache_dir(cache), f"backbone-{key_of(SETTINGS)}.pth")


def pretrain(cache: str = "", force: bool = False) -> Dict:
    """Make (or find) the pre-trained backbone; returns its ``.json`` record."""
    import torch

    import fastreid_ext  # noqa: F401  (compat shims, registrations)
    from fastreid_ext.config import build_config

    path = backbone_path(cache)
    record_path = path[:-len(".pth")] + ".json"
    if os.path.isfile(path) and os.path.isfile(record_path) and not force:
        return read_json(record_path)
    s = SETTINGS
    root = ensure_dataset(dict(s["data"]), cache_dir(cache), seed=s["data_seed"])
    out = os.path.join(cache_dir(cache), "pretrain_run")
    h, w = s["size"]
    opts = opts_list({
        "MODEL.DEVICE": "cpu", "MODEL.BACKBONE.DEPTH": s["depth"], "MODEL.BACKBONE.FEAT_DIM": 512,
        "MODEL.BACKBONE.PRETRAIN": False, "INPUT.SIZE_TRAIN": [h, w], "INPUT.SIZE_TEST": [h, w],
        "INPUT.PADDING.SIZE": 4, "DATASETS.NAMES": '("SyntheticMarket1501",)',
        "DATASETS.TESTS": '("SyntheticMarket1501",)', "DATASETS.ROOT": root,
        "DATALOADER.NUM_WORKERS": 1, "DATALOADER.NUM_WORKERS_TEST": 0,
        "DATALOADER.NUM_INSTANCE": s["instances"], "SOLVER.IMS_PER_BATCH": s["batch"],
        "SOLVER.BASE_LR": s["lr"], "SOLVER.MAX_EPOCH": s["epochs"],
        "SOLVER.STEPS": [int(0.8 * s["epochs"])], "SOLVER.WARMUP_ITERS": 10,
        "SOLVER.CHECKPOINT_PERIOD": 1000, "TEST.EVAL_PERIOD": 1000, "TEST.IMS_PER_BATCH": 128,
        "SEED": s["seed"], "OUTPUT_DIR": out, "CUDNN_BENCHMARK": False,
    })
    cfg = build_config(os.path.join(REPO, "configs", "Base-image.yml"), opts)
    t0, c0 = time.perf_counter(), cpu_seconds()
    results, _, model = train_and_test(cfg, s["seed"])
    seconds, cpu = time.perf_counter() - t0, cpu_seconds() - c0
    state = {k: v.detach().cpu().clone() for k, v in model.backbone.state_dict().items()}
    tmp = f"{path}.tmp{os.getpid()}"
    torch.save(state, tmp)
    os.replace(tmp, path)
    remove_checkpoints(out)
    record = {"path": path, "settings": s, "seconds": round(seconds, 1), "cpu_seconds": round(cpu, 1),
              "torch_threads": threads(), "cpus": os.cpu_count(),
              "pretrain_test_mAP": round(float(results.get("mAP", float("nan"))), 2),
              "pretrain_test_rank1": round(float(results.get("Rank-1", float("nan"))), 2)}
    write_json_atomic(record_path, record)
    return record


def main(argv: Optional[list] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.claims.pretrain", description=__doc__.splitlines()[0])
    p.add_argument("--cache", default="", help="cache folder (default $FASTREID_EXT_CACHE or ~/.cache/fastreid_ext/claims)")
    p.add_argument("--force", action="store_true", help="pre-train again even if the cached file exists")
    args = p.parse_args(argv)
    rec = pretrain(args.cache, args.force)
    print(f"pre-trained backbone: {rec['path']}\n  cost: {rec['seconds']} s wall, {rec['cpu_seconds']} s CPU "
          f"({rec['torch_threads']} torch threads, {rec['cpus']} cpus); its own test mAP "
          f"{rec['pretrain_test_mAP']} / Rank-1 {rec['pretrain_test_rank1']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
