"""Running a claim: every (row, seed) trained with the claim's design, each result saved
atomically as soon as it is complete and skipped when it is already there (resumable).

The runner fixes what moves a result besides the seed: torch threads (:data:`THREADS`),
deterministic algorithms, the budget (:data:`BUDGET`, the claim's epochs), and records them
with each result, with the machine load. A row with ``init_from`` starts from its source row's
final checkpoint of the same seed, kept as ``<claim>/<source>/seed<k>.pth`` next to the
source's result; the dependent row's resume key holds the source result's key, so a source run
again makes its dependents run again. The claim's ``curve_row`` is evaluated every
``epochs // CURVE_POINTS`` epochs (its learning curve, read from ``metrics.json``).
"""
from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import shutil
import time
from typing import Dict, List, Tuple

from . import checks as claim_checks
from .claims import BACKBONE_TOKEN, CURVE_POINTS, QUICK, Claim, Row
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

#: the budget shared by every row of every claim (epochs: the claim's / row's)
BUDGET: Dict = dict(batch=16, instances=4, lr=0.00035, warmup=5, max_clips=2)
#: torch threads of every run (the thread count alone moves a result; part of the design key)
THREADS = 1


def mode_claim(claim: Claim, mode: str) -> Claim:
    """The claim as run in ``mode``: ``full`` = the design; ``quick`` = a small data set
    (:data:`benchmarks.claims.claims.QUICK` ids), its epochs scaled to QUICK's (at least 1 per row)."""
    if mode == "full":
        return claim
    ids = QUICK["fgpr_ids"] if claim.data["layout"] == "fgpr" else QUICK["ids"]
    scale = QUICK["epochs"] / claim.epochs
    rows = tuple(dataclasses.replace(r, epochs=max(1, round(r.epochs * scale))) if r.epochs is not None else r
                 for r in claim.rows)
    return dataclasses.replace(claim, data=dict(claim.data, ids=ids), epochs=QUICK["epochs"], rows=rows)


def design_key(claim: Claim, mode: str) -> str:
    """Hash of everything in a claim that moves a run (data, rows, the budget settings the runner
    adds, threads, sizes);
    not the statement, seeds or comparisons. Saved with each result; the report counts only
    results of the current design."""
    c = mode_claim(claim, mode)
    budget = [budget_opts(c, r, 0, "", "", "") for r in c.rows]  # the settings the runner adds, as code makes them
    return key_of([mode, c.data, c.dataset, [dataclasses.asdict(r) for r in c.rows], c.epochs, c.curve_row,
                   c.protocol, c.image, c.size, c.seq_len, c.backbone, BUDGET, THREADS, CURVE_POINTS, budget])


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


def curve_period(epochs: int) -> int:
    """Evaluation period (epochs) of a curve row: at least CURVE_POINTS points when epochs allow."""
    return max(1, epochs // CURVE_POINTS)


def budget_opts(claim: Claim, row: Row, seed: int, root: str, backbone: str, out: str) -> List[str]:
    """The claim's budget and sizes as ``KEY VALUE`` overrides (``claim`` already in its mode)."""
    b = BUDGET
    h, w = claim.size
    t = 1 if claim.image else claim.seq_len
    epochs = claim.row_epochs(row)
    eval_period = curve_period(epochs) if row.name == claim.curve_row else 100000
    pairs = {
        "MODEL.DEVICE": "cpu", "MODEL.BACKBONE.DEPTH": "18x", "MODEL.BACKBONE.FEAT_DIM": 512,
        "MODEL.BACKBONE.LAST_STRIDE": 1, "MODEL.BACKBONE.WITH_IBN": False,
        "MODEL.BACKBONE.PRETRAIN": True, "MODEL.BACKBONE.PRETRAIN_PATH": backbone,
        "INPUT.SIZE_TRAIN": [h, w], "INPUT.SIZE_TEST": [h, w], "INPUT.PADDING.SIZE": max(4, h // 16),
        "INPUT.VIDEO.SEQ_LEN": t, "TEST.VIDEO.SEQ_LEN": t, "TEST.VIDEO.MAX_CLIPS": b["max_clips"],
        "DATASETS.NAMES": f'("{claim.dataset}",)', "DATASETS.TESTS": f'("{claim.dataset}",)',
        "DATASETS.ROOT": root, "DATALOADER.NUM_WORKERS": 0, "DATALOADER.NUM_WORKERS_TEST": 0,
        "DATALOADER.NUM_INSTANCE": 2 if claim.data["layout"] == "fgpr" else b["instances"],
        "SOLVER.OPT": "Adam", "SOLVER.IMS_PER_BATCH": b["batch"],
        "SOLVER.BASE_LR": b["lr"], "SOLVER.MAX_EPOCH": epochs, "SOLVER.SCHED": "MultiStepLR", "SOLVER.STEPS": [100000],
        "DATALOADER.EPOCH_LENGTH": "samples",  # pinned: a config's own epoch definition cannot move the budget
        "SOLVER.WARMUP_ITERS": b["warmup"], "SOLVER.CHECKPOINT_PERIOD": 100000,
        "TEST.EVAL_PERIOD": eval_period, "TEST.IMS_PER_BATCH": 64, "TEST.PROTOCOL": claim.protocol,
        "TEST.FLIP.ENABLED": False, "TEST.PRECISE_BN.ENABLED": False, "CUDNN_BENCHMARK": False,
        "SEED": seed, "OUTPUT_DIR": out,
    }
    if claim.backbone == "own":  # the method's own backbone, clip length and learning rates (per step)
        pairs = {k: v for k, v in pairs.items() if not k.startswith("MODEL.BACKBONE.") and
                 not k.endswith("VIDEO.SEQ_LEN") and k != "SOLVER.BASE_LR"}
    return list(opts_list(pairs))


# ----------------------------------------------------------------------------- mechanism checks
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


def corrupted_attention(model, clips, data) -> Dict[str, float]:
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
        for images, clip_marks in clips():
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




claim_checks.register_check(
    "corrupted_attention_below_uniform", "attention", corrupted_attention,
    lambda e: "att_on_corrupted" in e and e["att_on_corrupted"] < e["uniform_weight"],
    "mean attention weight on corrupted test frames < 1/T")


# ----------------------------------------------------------------------------- one run
def result_path(out: str, mode: str, claim: Claim, row: Row, seed: int) -> str:
    return os.path.join(out, mode, claim.name, row.name, f"seed{seed}.json")


def checkpoint_path(out: str, mode: str, claim: Claim, row: Row, seed: int) -> str:
    """Where a source row keeps its final checkpoint for the rows that start from it."""
    return os.path.join(out, mode, claim.name, row.name, f"seed{seed}.pth")


def is_source(claim: Claim, row: Row) -> bool:
    return any(r.init_from == row.name for r in claim.rows)


def flat_config(cfg, prefix: str = "") -> Dict[str, object]:
    """``{"A.B.C": value}`` for every leaf of a yacs config."""
    out: Dict[str, object] = {}
    for k, v in cfg.items():
        if isinstance(v, dict):
            out.update(flat_config(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def run_key(claim: Claim, row: Row, cfg, backbone: str, source_key: str = "") -> str:
    """Resume key of one (claim, row, seed): the claim and row names, every resolved setting
    that differs from the defaults (so an edited config file or override reruns the row, while
    a new key added at its default value anywhere does not; ``OUTPUT_DIR`` left out), the
    backbone's identity (file name = hash of its settings, and size) and, for a staged row, its
    source result's key and checkpoint hash. A changed default in code is not seen: rerun with a new ``--out``."""
    from fastreid_ext.config import build_config

    defaults = flat_config(build_config(freeze=False))
    changed = {k: v for k, v in flat_config(cfg).items()
               if k != "OUTPUT_DIR" and (k not in defaults or defaults[k] != v)}
    start = [os.path.basename(backbone), os.path.getsize(backbone)] if claim.backbone == "shared" else []
    return key_of([claim.name, row.name, sorted((k, repr(v)) for k, v in changed.items()), start, source_key,
                   THREADS])


def learning_curve(output_dir: str, final: Dict = None) -> List[Dict[str, float]]:
    """``[{"iteration", "mAP", "Rank-1"}]`` of every evaluation logged in ``metrics.json``, plus
    ``final`` (the run's results) at the last iteration when the log lacks it (the host's
    writer does not write after the last epoch's evaluation)."""
    path = os.path.join(output_dir, "metrics.json")
    curve, last = [], 0
    if os.path.isfile(path):
        with open(path) as f:
            for line in f:
                try:
                    row = json.loads(line)
                except ValueError:
                    continue
                last = max(last, int(row.get("iteration", -1)) + 1)
                if "mAP" in row:
                    curve.append({"iteration": int(row["iteration"]) + 1, "mAP": float(row["mAP"]),
                                  "Rank-1": float(row.get("Rank-1", float("nan")))})
    if final is not None and last and (not curve or curve[-1]["iteration"] < last):
        curve.append({"iteration": last, "mAP": float(final["mAP"]), "Rank-1": float(final["Rank-1"])})
    return curve


def _source_record(claim: Claim, row: Row, seed: int, mode: str, out: str) -> Tuple[str, str]:
    """(checkpoint path, result key) of a staged row's source; raises when it is not complete."""
    src = claim.row(row.init_from)
    rec_path, ckpt = result_path(out, mode, claim, src, seed), checkpoint_path(out, mode, claim, src, seed)
    if not (os.path.isfile(rec_path) and os.path.isfile(ckpt)):
        raise RuntimeError(f"{claim.name}/{row.name}/seed {seed}: its source row {src.name!r} has no complete "
                           f"result and checkpoint ({rec_path}, {ckpt}); run the claim's rows in order")
    rec = read_json(rec_path)
    return ckpt, f"{rec['key']}:{rec.get('checkpoint_sha256', '')}"


def _record(claim, row, seed, mode, ident, results, extra, run_dir, t0, c0, opts) -> Dict:
    return {
        "claim": claim.name, "row": row.name, "seed": seed, "mode": mode, "key": ident,
        "design": design_key(claim, mode), "complete": True,
        "mAP": float(results["mAP"]), "Rank-1": float(results["Rank-1"]),
        "mINP": float(results["mINP"]) if "mINP" in results else None,
        "extra": extra, "diagnostics": last_diagnostics(run_dir),
        "curve": learning_curve(run_dir, results) if row.name == claim.curve_row else [],
        "seconds": round(time.perf_counter() - t0, 1), "cpu_seconds": round(cpu_seconds() - c0, 1),
        "threads": THREADS, "deterministic": True, "load_average_at_start": os.getloadavg()[0],
        "config": os.path.relpath(config_path(row), REPO), "opts": opts[:-2],
    }


def run_one(claim: Claim, row: Row, seed: int, mode: str, out: str, cache: str, backbone: str,
            keep_logs: bool = False) -> Dict:
    """Train + test one (row, seed) unless its complete result is already saved; return it."""
    import torch

    import fastreid_ext  # noqa: F401  (compat shims, registrations)
    from fastreid_ext.config import build_config

    design = claim
    claim = mode_claim(claim, mode)
    row = claim.row(row.name)  # its epochs in this mode
    path = result_path(out, mode, claim, row, seed)
    root = ensure_dataset(dict(claim.data), cache)
    run_dir = os.path.join(out, mode, claim.name, row.name, f"seed{seed}_run")
    opts = [backbone if o == BACKBONE_TOKEN else o for o in row.opts]
    source_key = ""
    if row.init_from:
        ckpt, source_key = _source_record(claim, row, seed, mode, out)
        opts += [row.init_key, ckpt]
    opts += budget_opts(claim, row, seed, root, backbone, run_dir)
    cfg = build_config(config_path(row), opts)
    ident = run_key(claim, row, cfg, backbone, source_key)
    if os.path.isfile(path):
        done = read_json(path)
        have_ckpt = not is_source(claim, row) or os.path.isfile(checkpoint_path(out, mode, claim, row, seed))
        if done.get("key") == ident and done.get("complete") and have_ckpt:
            return done
        print(f"[claims] {path} was made with other settings (or lacks its checkpoint): running it again", flush=True)
    if os.path.isdir(run_dir):
        shutil.rmtree(run_dir)  # an interrupted run: start it over
    torch.set_num_threads(THREADS)
    torch.use_deterministic_algorithms(True, warn_only=True)
    t0, c0 = time.perf_counter(), cpu_seconds()
    pretrained = backbone if (claim.backbone == "shared" and not row.init_from) else ""
    results, _, model = train_and_check(cfg, seed, pretrained)
    extra: Dict[str, float] = {}
    for name in claim.checks:
        spec = claim_checks.get_check(name)
        if spec.row == row.name:
            extra.update(spec.measure(model, lambda: marked_test_clips(model, cfg, root, claim), claim.data))
    if is_source(claim, row):  # the checkpoint first: a result on disk always has its checkpoint
        ckpt = os.path.join(run_dir, "model_final.pth")
        if not os.path.isfile(ckpt):
            raise RuntimeError(f"{claim.name}/{row.name}/seed {seed}: no {ckpt} to start the next rows from")
        os.replace(ckpt, checkpoint_path(out, mode, claim, row, seed))
    record = _record(design, row, seed, mode, ident, results, extra, run_dir, t0, c0, opts)
    if is_source(claim, row):  # the dependents' keys hold it: a source trained again reruns them
        from fastreid_ext.deploy.features_file import file_sha256

        record["checkpoint_sha256"] = file_sha256(checkpoint_path(out, mode, claim, row, seed))
    write_json_atomic(path, record)
    if keep_logs:
        remove_checkpoints(run_dir)
    else:
        shutil.rmtree(run_dir, ignore_errors=True)
    return read_json(path)


def train_and_check(cfg, seed: int, backbone: str):
    """Build once to check the pre-trained backbone is in the model, then train + test
    (``backbone`` empty: no check, e.g. a row started from another row's checkpoint)."""
    from fastreid_ext.engine import Trainer

    from .common import train_and_test

    if backbone:
        probe = cfg.clone()
        probe.defrost()
        probe.MODEL.HEADS.NUM_CLASSES = max(2, int(probe.MODEL.HEADS.NUM_CLASSES))
        check_backbone_loaded(Trainer.build_model(probe), backbone)
    return train_and_test(cfg, seed)


def ordered_rows(claim: Claim) -> List[Row]:
    """The claim's rows with every source before the rows that start from it."""
    done: List[Row] = []
    pending = list(claim.rows)
    while pending:
        ready = [r for r in pending if r.init_from is None or r.init_from in {d.name for d in done}]
        if not ready:
            raise ValueError(f"claim {claim.name!r}: rows {[r.name for r in pending]} start from rows not in the claim "
                             "(or from each other)")
        done += ready
        pending = [r for r in pending if r not in ready]
    return done


def run_claim(claim: Claim, seeds: List[int], mode: str, out: str, cache: str, backbone: str,
              keep_logs: bool = False, log=print) -> List[Dict]:
    records = []
    for seed in seeds:  # seed-major: an interrupted run leaves complete pairs behind
        for row in ordered_rows(claim):
            t0 = time.perf_counter()
            rec = run_one(claim, row, seed, mode, out, cache, backbone, keep_logs)
            took = time.perf_counter() - t0
            state = "cached" if took < 1.0 else f"{took:.0f} s"
            log(f"[claims] {claim.name} / {row.name} / seed {seed}: mAP {rec['mAP']:.2f} "
                f"Rank-1 {rec['Rank-1']:.2f} ({state})" + (f" extra {json.dumps(rec['extra'])}" if rec["extra"] else ""))
            records.append(rec)
    return records
