"""Running a claim: every (row, seed) trained with the claim's budget, each result saved
atomically as soon as it is done and skipped when it is already there (resumable)."""
from __future__ import annotations

import importlib.util
import json
import os
import shutil
import time
from typing import Dict, List, Tuple

from .claims import BACKBONE_TOKEN, Claim, Row
from .common import (
    LAYOUT_DIRS,
    REPO,
    check_backbone_loaded,
    cpu_seconds,
    ensure_dataset,
    key_of,
    last_diagnostics,
    opts_list,
    read_json,
    remove_checkpoints,
    write_json_atomic,
)

#: the claims' training budget, the same for every row of a claim (``quick``: the short one)
BUDGETS: Dict[str, Dict] = {
    "full": dict(epochs=25, batch=16, instances=4, lr=0.00035, warmup=5, seq_len=4, max_clips=2),
    "quick": dict(epochs=2, batch=16, instances=4, lr=0.00035, warmup=5, seq_len=4, max_clips=2),
}
SIZE = (64, 32)


def installed_projects() -> Dict[str, object]:
    """``{entry-point name: entry point}`` from the plugin's project registry."""
    from fastreid_ext.config import project_entry_points

    return {ep.name: ep for ep in project_entry_points()}


def project_configs(name: str) -> str:
    """The ``configs/`` folder next to a registered project's package (``projects/<X>/configs``)."""
    ep = installed_projects()[name]
    module = ep.value.split(":")[0]
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.origin:
        raise ImportError(f"project {name!r}: package {module!r} not importable")
    return os.path.join(os.path.dirname(os.path.dirname(spec.origin)), "configs")


def availability(claim: Claim) -> Tuple[bool, str]:
    """(available, reason): every required project registered and every row config present."""
    projects = installed_projects()
    missing = [p for p in claim.requires if p not in projects]
    if missing:
        return False, f"not available: project(s) {', '.join(missing)} not installed (no entry point)"
    for row in claim.rows:
        path = config_path(row)
        if not os.path.isfile(path):
            return False, f"not available: row {row.name!r} config {path} missing"
    return True, ""


def config_path(row: Row) -> str:
    base = os.path.join(REPO, "configs") if row.project is None else project_configs(row.project)
    return os.path.join(base, row.config)


def budget_opts(claim: Claim, mode: str, seed: int, root: str, backbone: str, out: str) -> List[str]:
    b = BUDGETS[mode]
    h, w = SIZE
    t = 1 if claim.image else b["seq_len"]
    pairs = {
        "MODEL.DEVICE": "cpu", "MODEL.BACKBONE.DEPTH": "18x", "MODEL.BACKBONE.FEAT_DIM": 512,
        "MODEL.BACKBONE.LAST_STRIDE": 1, "MODEL.BACKBONE.WITH_IBN": False,
        "MODEL.BACKBONE.PRETRAIN": True, "MODEL.BACKBONE.PRETRAIN_PATH": backbone,
        "INPUT.SIZE_TRAIN": [h, w], "INPUT.SIZE_TEST": [h, w], "INPUT.PADDING.SIZE": 4,
        "INPUT.VIDEO.SEQ_LEN": t, "TEST.VIDEO.SEQ_LEN": t, "TEST.VIDEO.MAX_CLIPS": b["max_clips"],
        "DATASETS.NAMES": f'("{claim.dataset}",)', "DATASETS.TESTS": f'("{claim.dataset}",)',
        "DATASETS.ROOT": root, "DATALOADER.NUM_WORKERS": 0, "DATALOADER.NUM_WORKERS_TEST": 0,
        "DATALOADER.NUM_INSTANCE": b["instances"], "SOLVER.OPT": "Adam", "SOLVER.IMS_PER_BATCH": b["batch"],
        "SOLVER.BASE_LR": b["lr"], "SOLVER.MAX_EPOCH": b["epochs"] * claim.epoch_factor, "SOLVER.STEPS": [100000],
        "DATALOADER.EPOCH_LENGTH": "samples",  # pinned: a config's own epoch definition cannot move the budget
        "SOLVER.WARMUP_ITERS": b["warmup"], "SOLVER.CHECKPOINT_PERIOD": 10000,
        "TEST.EVAL_PERIOD": 10000, "TEST.IMS_PER_BATCH": 64, "TEST.PROTOCOL": claim.protocol,
        "TEST.FLIP.ENABLED": False, "TEST.PRECISE_BN.ENABLED": False, "SEED": seed, "OUTPUT_DIR": out,
    }
    if claim.backbone == "own":  # the method's own backbone and clip length (not pre-trained)
        pairs = {k: v for k, v in pairs.items() if not k.startswith("MODEL.BACKBONE.") and
                 not k.endswith("VIDEO.SEQ_LEN")}
    return list(opts_list(pairs))


# ----------------------------------------------------------------------------- extra checks
def marked_test_clips(model, cfg, root: str, claim: Claim, batch: int = 64):
    """The evaluation's dense test clips with the generator's marks of their frames: yields
    ``(images (B, T, C, H, W) on the model's device, marks)`` with ``marks[b][t]`` the
    ``frame_marks.json`` entry of frame ``t`` of clip ``b`` (``{}`` for an unmarked frame)."""
    import torch

    from fastreid_ext.data.build import build_video_test_loader

    folder = os.path.join(root, LAYOUT_DIRS[claim.data["layout"]])
    marks = read_json(os.path.join(folder, "frame_marks.json"))
    loader, _, _ = build_video_test_loader(cfg, claim.dataset)
    ds = loader.dataset
    for start in range(0, len(ds), batch):
        idx = list(range(start, min(len(ds), start + batch)))
        clip_marks = []
        for i in idx:
            k, frames = ds.clips[i]
            paths = ds.items[k][0]
            clip_marks.append([marks.get(os.path.relpath(paths[f], folder), {}) for f in frames])
        images = torch.stack([ds[i]["images"] for i in idx]).to(model.device)  # (B, T, C, H, W)
        yield images, clip_marks


def corrupted_attention(model, cfg, root: str, claim: Claim) -> Dict[str, float]:
    """Mean temporal-attention weight on corrupted test frames, over the test clips holding
    both corrupted and clean frames (the frames are the evaluation's dense clips)."""
    import torch

    from fastreid_ext.modeling.aggregation import aggregation_of

    agg = aggregation_of(model)
    if agg is None or agg.fixed_weights:
        return {}
    on_bad, n_clips, n_bad, t_len = 0.0, 0, 0, None
    model.eval()
    with torch.no_grad():
        for images, clip_marks in marked_test_clips(model, cfg, root, claim):
            weights = agg(model.frame_maps({"images": images})).frame_weights  # (B, T)
            t_len = weights.shape[1]
            for wrow, mrow in zip(weights.tolist(), clip_marks):
                frow = [bool(m.get("corrupted")) for m in mrow]
                if any(frow) and not all(frow):
                    n_clips += 1
                    for wv, fv in zip(wrow, frow):
                        if fv:
                            on_bad += wv
                            n_bad += 1
    if not n_bad:
        return {"att_corrupt_clips": 0}
    return {"att_on_corrupted": on_bad / n_bad, "uniform_weight": 1.0 / t_len, "att_corrupt_clips": n_clips}


def occluded_node_attention(model, cfg, root: str, claim: Claim) -> Dict[str, float]:
    """MG-RAFA's node attention on occluded test nodes, per granularity: the channel-mean
    softmax weight x K of the nodes whose cell centre lies inside their frame's occluder box
    (``frame_marks.json``), and of the other nodes, over the test clips with an occluder
    (1 = uniform = average pooling; < 1 = attended less), and the frame share x T of the frames
    with an occluder (``att_occluded_frames_g{m}``) and without (``att_clean_frames_g{m}``) in
    those clips. A node counts as occluded when its cell centre is inside the box, so at a 1x1
    granularity only a frame whose centre is covered counts (few): the frame shares are the
    frame-level measure. The checks read G-1 (the finest) or G-2."""
    import torch

    from fastreid_ext.modeling.aggregation import aggregation_of
    from fastreid_ext.modeling.aggregation.measures import (
        frame_attention_mass,
        occluded_node_weights,
    )

    agg = aggregation_of(model)
    if agg is None:
        return {}
    frame_size = tuple(claim.data["frame_size"])
    occluded, visible = {}, {}
    frames: Dict[Tuple[int, str], List[float]] = {}  # (granularity, "occluded" | "clean") -> share x T
    n_clips = 0
    model.eval()
    with torch.no_grad():
        for images, clip_marks in marked_test_clips(model, cfg, root, claim):
            groups = agg(model.frame_maps({"images": images})).node_weights  # N x (B, C/N, T, H_m, W_m)
            if groups is None:
                return {}
            for b, mrow in enumerate(clip_marks):
                boxes = [m.get("occluder") if not m.get("corrupted") else None for m in mrow]
                if all(box is None for box in boxes):
                    continue
                n_clips += 1
                for g, w in enumerate(groups, start=1):
                    occ, vis = occluded_node_weights(w[b], boxes, frame_size)
                    occluded.setdefault(g, []).extend(occ)
                    visible.setdefault(g, []).extend(vis)
                    share = frame_attention_mass(w[b]) * len(boxes)  # (T,): 1 = uniform
                    for t, box in enumerate(boxes):
                        frames.setdefault((g, "clean" if box is None else "occluded"), []).append(float(share[t]))
    out: Dict[str, float] = {"att_occluded_clips": n_clips}
    for (g, kind), vals in sorted(frames.items()):
        out[f"att_{kind}_frames_g{g}"] = sum(vals) / len(vals)
    for g in sorted(occluded):
        if occluded[g]:
            out[f"att_occluded_nodes_g{g}"] = sum(occluded[g]) / len(occluded[g])
        if visible[g]:
            out[f"att_visible_nodes_g{g}"] = sum(visible[g]) / len(visible[g])
    return out


EXTRA_CHECKS = {
    # name: (row it applies to, measure, passes(extra) -> bool, description)
    "corrupted_attention_below_uniform": (
        "attention", corrupted_attention,
        lambda e: "att_on_corrupted" in e and e["att_on_corrupted"] < e["uniform_weight"],
        "mean attention weight on corrupted test frames < 1/T"),
    "occluded_nodes_below_uniform": (
        "mg_rafa", occluded_node_attention,
        lambda e: "att_occluded_nodes_g1" in e and e["att_occluded_nodes_g1"] < 1.0,
        "mean G-1 node weight x K on occluded test nodes < 1 (uniform)"),
    "occluded_g2_nodes_below_uniform": (
        "mg_rafa", occluded_node_attention,
        lambda e: "att_occluded_nodes_g2" in e and e["att_occluded_nodes_g2"] < 1.0,
        "mean G-2 node weight x K on occluded test nodes < 1 (uniform)"),
}

#: the granularity whose occluded-node weight a check reads (for the report)
CHECK_GRANULARITY = {"occluded_nodes_below_uniform": 1, "occluded_g2_nodes_below_uniform": 2}


# ----------------------------------------------------------------------------- one run
def result_path(out: str, mode: str, claim: Claim, row: Row, seed: int) -> str:
    return os.path.join(out, mode, claim.name, row.name, f"seed{seed}.json")


def flat_config(cfg, prefix: str = "") -> Dict[str, object]:
    """``{"A.B.C": value}`` for every leaf of a yacs config."""
    out: Dict[str, object] = {}
    for k, v in cfg.items():
        if isinstance(v, dict):
            out.update(flat_config(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def run_key(claim: Claim, row: Row, cfg, backbone: str) -> str:
    """Resume key of one (claim, row, seed): the claim and row names, every resolved setting
    that differs from the defaults (so an edited config file or override reruns the row, while
    a new key added at its default value anywhere does not; ``OUTPUT_DIR`` left out) and the
    backbone's identity (file name = hash of its settings, and size). A changed default in code
    is not seen: rerun with a new ``--out`` after one."""
    from fastreid_ext.config import build_config

    defaults = flat_config(build_config(freeze=False))
    changed = {k: v for k, v in flat_config(cfg).items()
               if k != "OUTPUT_DIR" and (k not in defaults or defaults[k] != v)}
    return key_of([claim.name, row.name, sorted((k, repr(v)) for k, v in changed.items()),
                   os.path.basename(backbone), os.path.getsize(backbone)])


def run_one(claim: Claim, row: Row, seed: int, mode: str, out: str, cache: str, backbone: str,
            keep_logs: bool = False) -> Dict:
    """Train + test one (row, seed) unless its result is already saved; return the result."""
    import fastreid_ext  # noqa: F401  (compat shims, registrations)
    from fastreid_ext.config import build_config

    path = result_path(out, mode, claim, row, seed)
    root = ensure_dataset(dict(claim.data), cache)
    run_dir = os.path.join(out, mode, claim.name, row.name, f"seed{seed}_run")
    opts = [backbone if o == BACKBONE_TOKEN else o for o in row.opts] + \
        budget_opts(claim, mode, seed, root, backbone, run_dir)
    cfg = build_config(config_path(row), opts)
    ident = run_key(claim, row, cfg, backbone)
    if os.path.isfile(path):
        done = read_json(path)
        if done.get("key") == ident:
            return done
        print(f"[claims] {path} was made with other settings: running it again", flush=True)
    if os.path.isdir(run_dir):
        shutil.rmtree(run_dir)  # an interrupted run: start it over
    t0, c0 = time.perf_counter(), cpu_seconds()
    results, train_test_s, model = train_and_check(cfg, seed, backbone if claim.backbone == "shared" else "")
    extra: Dict[str, float] = {}
    for check in claim.checks:
        row_name, measure, _, _ = EXTRA_CHECKS[check]
        if row_name == row.name:
            extra.update(measure(model, cfg, root, claim))
    record = {
        "claim": claim.name, "row": row.name, "seed": seed, "mode": mode, "key": ident,
        "mAP": float(results["mAP"]), "Rank-1": float(results["Rank-1"]),
        "mINP": float(results["mINP"]) if "mINP" in results else None,
        "extra": extra, "diagnostics": last_diagnostics(run_dir),
        "train_test_s": round(train_test_s, 1), "seconds": round(time.perf_counter() - t0, 1),
        "cpu_seconds": round(cpu_seconds() - c0, 1), "config": os.path.relpath(config_path(row), REPO),
        "opts": opts[:-2],
    }
    write_json_atomic(path, record)
    if keep_logs:
        remove_checkpoints(run_dir)
    else:
        shutil.rmtree(run_dir, ignore_errors=True)
    return record


def train_and_check(cfg, seed: int, backbone: str):
    """Build once to check the pre-trained backbone is in the model, then train + test."""
    from fastreid_ext.engine import Trainer

    from .common import train_and_test

    if backbone:
        probe = cfg.clone()
        probe.defrost()
        probe.MODEL.HEADS.NUM_CLASSES = max(2, int(probe.MODEL.HEADS.NUM_CLASSES))
        check_backbone_loaded(Trainer.build_model(probe), backbone)
    return train_and_test(cfg, seed)


def run_claim(claim: Claim, seeds: List[int], mode: str, out: str, cache: str, backbone: str,
              keep_logs: bool = False, log=print) -> List[Dict]:
    records = []
    for seed in seeds:  # seed-major: an interrupted run leaves complete pairs behind
        for row in claim.rows:
            t0 = time.perf_counter()
            rec = run_one(claim, row, seed, mode, out, cache, backbone, keep_logs)
            took = time.perf_counter() - t0
            state = "cached" if took < 1.0 else f"{took:.0f} s"
            log(f"[claims] {claim.name} / {row.name} / seed {seed}: mAP {rec['mAP']:.2f} "
                f"Rank-1 {rec['Rank-1']:.2f} ({state})" + (f" extra {json.dumps(rec['extra'])}" if rec["extra"] else ""))
            records.append(rec)
    return records
