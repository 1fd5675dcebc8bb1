"""``--list`` and ``--plan``: each claim's design, and its estimated time from measured
iteration and evaluation times.

The timing probe (``--probe``) trains every row of a claim for about 6 iterations on a small set
drawn with the claim's generator settings (same frame size, clip length, model and budget; every
row from scratch, the pre-trained file not needed: timing does not depend on the start) and
evaluates it once; it records the
seconds per iteration (the trainer's median ``time`` over its last logged iterations) and the
evaluation seconds per test item, with the machine's load average, in
``<cache>/timing/<claim>.json`` (one entry per row, with the settings it depends on). ``--plan`` scales them to the
design: iterations = epochs x training items / batch (``DATALOADER.EPOCH_LENGTH samples``),
evaluations = one, or one per period on the curve row; expected item counts from
:func:`benchmarks.claims.claims.expected_test_size`.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from typing import Dict, List, Optional

from .claims import CLAIMS, Claim
from .common import key_of, read_json, write_json_atomic
from .report import complete_records
from .runner import BUDGET, THREADS, availability, curve_period, result_path
from .stats import VERDICT_RULE, mde, seeds_for_mde

__all__ = ["describe", "probe", "estimate", "plan_text", "PRIOR_SD", "HOURS_PER_CLAIM"]

#: the design's time limit per claim on this 2-core machine
HOURS_PER_CLAIM = 4.0
#: sd of the paired mAP differences assumed before a claim has >= 2 seeds under this design: the
#: sd measured on the small sets (32 test ids, 150 iterations, 3 seeds; docs/claims.md) --
#: larger test sets should lower it
PRIOR_SD = {"video_baseline": 1.9, "fgreid": 5.7, "mgrafa": 8.1, "mgrafa_residual": 7.6, "mgre": 1.4,
            "fgpose": 3.8, "fgpose_mars": 3.8}
#: the probe's small set and its iterations (the trainer logs iteration times from its 3rd on)
PROBE = dict(ids=16, fgpr_ids=30, iterations=6)


def timing_key(claim: Claim) -> str:
    """What a row's time per iteration and per test item depends on: the data settings but the
    number of ids, each row's config and overrides but its epochs and start, the sizes, batch
    and threads (a claim's epochs or seeds can change without probing again)."""
    data = {k: v for k, v in claim.data.items() if k != "ids"}
    rows = [(r.name, r.project, r.config, r.opts) for r in claim.rows]
    return key_of([data, rows, claim.size, claim.seq_len, claim.image, claim.backbone, claim.protocol,
                   BUDGET["batch"], BUDGET["instances"], BUDGET["max_clips"], THREADS])


def timing_path(cache: str, claim: str) -> str:
    """One file per claim: probes of different claims may run at the same time."""
    return os.path.join(cache, "timing", f"{claim}.json")


def describe(claim: Claim) -> str:
    """``--list``: statement, SESOIs with sources, rows, seeds, test-set size, budget."""
    from .claims import expected_test_size

    ok, why = availability(claim)
    size = expected_test_size(claim.data)
    lines = [f"{claim.name}  [{claim.method}]  {'available' if ok else why}",
             f"  claim: {claim.statement}",
             f"  registered: {claim.registered}"]
    for c in claim.comparisons:
        lines.append(f"  compare {c.method} - {c.reference}: SESOI "
                     + (f"{c.sesoi:+.1f} mAP" if c.sesoi is not None else "none (no size claimed)")
                     + f" [{c.source}]")
    for r in claim.rows:
        lines.append(f"  row {r.name}: {r.label} ({r.source}; {claim.row_epochs(r)} epochs"
                     + (f"; starts from {r.init_from} via {r.init_key}" if r.init_from else "")
                     + ("; stage" if r.stage else "") + ")")
    lines.append(f"  data: {claim.data}")
    lines.append(f"  test set (expected): {size['test_ids']} test ids, {size['queries']} queries, "
                 f"{size['gallery']} gallery items; {size['train_items']} training items")
    lines.append(f"  budget: input {claim.size[0]}x{claim.size[1]}, T {1 if claim.image else claim.seq_len}, "
                 f"batch {BUDGET['batch']}, Adam lr {BUDGET['lr']}, {THREADS} thread(s); seeds 0..{claim.seeds - 1}; "
                 f"learning curve: {claim.curve_row}; protocol {claim.protocol}")
    return "\n".join(lines)


def _probe_claim(claim: Claim, train_items: int = 0) -> Claim:
    """The claim on the probe's small set, every row from scratch for about PROBE iterations."""
    ids = PROBE["fgpr_ids"] if claim.data["layout"] == "fgpr" else PROBE["ids"]
    epochs = max(1, math.ceil(PROBE["iterations"] / max(1, train_items // BUDGET["batch"])))
    rows = tuple(dataclasses.replace(r, init_from=None, epochs=epochs,
                                     opts=r.opts + ((r.init_key, '""') if r.init_from else ())) for r in claim.rows)
    return dataclasses.replace(claim, data=dict(claim.data, ids=ids), rows=rows, epochs=epochs, curve_row="",
                               checks=())


def _last_time(run_dir: str) -> float:
    times = []
    with open(os.path.join(run_dir, "metrics.json")) as f:
        for line in f:
            try:
                row = json.loads(line)
            except ValueError:
                continue
            if "time" in row:
                times.append(float(row["time"]))
    if not times:
        raise RuntimeError(f"no iteration time logged in {run_dir}/metrics.json")
    return times[-1]


def _cpu_step_timer():
    """A trainer hook summing the process CPU seconds of each training step after the first
    two (the process runs 1 torch thread and no loader workers: on an idle core CPU seconds
    are wall seconds, and they do not grow with other processes' load)."""
    from fastreid.engine.hooks import HookBase

    class CpuStepTimer(HookBase):
        def __init__(self):
            self.seconds, self.steps, self._t0, self._n = 0.0, 0, 0.0, 0

        def before_step(self):
            self._t0 = time.process_time()

        def after_step(self):
            self._n += 1
            if self._n > 2:
                self.seconds += time.process_time() - self._t0
                self.steps += 1

    return CpuStepTimer()


def _probe_row(cfg) -> Dict[str, float]:
    """Train ``cfg`` (a few iterations) and evaluate it once; CPU and wall seconds."""
    from fastreid.utils.env import seed_all_rng
    from fastreid_ext.engine import Trainer

    os.makedirs(cfg.OUTPUT_DIR, exist_ok=True)
    seed_all_rng(0)
    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=False)
    timer = _cpu_step_timer()
    trainer.register_hooks([timer])
    trainer.train()
    model = trainer.model
    c0, t0 = time.process_time(), time.perf_counter()
    Trainer.test(cfg, model)
    return {"cpu_s_per_iter": timer.seconds / max(1, timer.steps), "eval_cpu_s": time.process_time() - c0,
            "eval_wall_s": time.perf_counter() - t0, "s_per_iter": _last_time(cfg.OUTPUT_DIR)}


def probe(claim: Claim, cache: str, out: str, log=print) -> Dict:
    """Measure CPU seconds per iteration and per evaluated test item of every row (and the
    wall seconds, which on a loaded machine are larger)."""
    import shutil

    import torch

    import fastreid_ext  # noqa: F401
    from fastreid_ext.config import build_config

    from .common import ensure_dataset
    from .pretrain import backbone_path
    from .runner import budget_opts, config_path

    root = ensure_dataset(dict(_probe_claim(claim).data), cache)
    counts = read_json(os.path.join(root, _layout_dir(claim), ".synthetic_done.json"))["counts"]
    n_test = _test_items(counts)
    small = _probe_claim(claim, _train_items(counts))
    torch.set_num_threads(THREADS)
    timings = {claim.name: {}}
    for row in small.rows:
        run_dir = os.path.join(out, "probe", claim.name, row.name)
        shutil.rmtree(run_dir, ignore_errors=True)
        opts = list(row.opts) + budget_opts(small, row, 0, root, backbone_path(cache), run_dir)
        if claim.backbone == "shared":  # timing does not depend on the start: no pre-trained file needed
            opts += ["MODEL.BACKBONE.PRETRAIN", "False"]
        cfg = build_config(config_path(row), opts)
        load = os.getloadavg()[0]
        m = _probe_row(cfg)
        entry = {"cpu_s_per_iter": m["cpu_s_per_iter"], "eval_cpu_s_per_item": m["eval_cpu_s"] / n_test,
                 "wall_s_per_iter": m["s_per_iter"], "eval_wall_s_per_item": m["eval_wall_s"] / n_test,
                 "load_average": load, "threads": THREADS, "design": timing_key(claim),
                 "measured": time.strftime("%Y-%m-%d %H:%M")}
        timings.setdefault(claim.name, {})[row.name] = entry
        write_json_atomic(timing_path(cache, claim.name), timings[claim.name])
        log(f"[probe] {claim.name}/{row.name}: {entry['cpu_s_per_iter']:.3f} CPU s/iteration "
            f"(wall {entry['wall_s_per_iter']:.3f}), {entry['eval_cpu_s_per_item'] * 1000:.1f} CPU ms per test item "
            f"(load {load:.2f})")
        shutil.rmtree(run_dir, ignore_errors=True)
    return timings[claim.name]


def _layout_dir(claim: Claim) -> str:
    from .common import LAYOUT_DIRS

    return LAYOUT_DIRS[claim.data["layout"]]


def _test_items(counts: Dict) -> int:
    if "test_tracklets" in counts:
        return int(counts["test_tracklets"])
    if "query_images" in counts:
        return int(counts["query_images"]) + int(counts["gallery_images"])
    return 2 * int(counts["test_ids_per_split"])  # fgpr: one tracklet per camera, two cameras


def _train_items(counts: Dict) -> int:
    if "train_tracklets" in counts:
        return int(counts["train_tracklets"])
    if "train_images" in counts:
        return int(counts["train_images"])
    return 2 * int(counts["train_ids_per_split"])


def _read_timings(cache: str) -> Dict:
    """``{claim: {row: timing}}`` from ``<cache>/timing/<claim>.json``."""
    folder = os.path.join(cache, "timing")
    if not os.path.isdir(folder):
        return {}
    return {name[:-len(".json")]: read_json(os.path.join(folder, name))
            for name in sorted(os.listdir(folder)) if name.endswith(".json")}


def estimate(claim: Claim, timings: Dict) -> Optional[Dict]:
    """Seconds per row run, per seed and for the design's seeds; ``None`` without a probe of
    every row under the current design."""
    from .claims import expected_test_size

    t = timings.get(claim.name, {})
    key = timing_key(claim)
    if any(t.get(r.name, {}).get("design") != key or "cpu_s_per_iter" not in t.get(r.name, {})
           for r in claim.rows):
        return None
    size = expected_test_size(claim.data)
    per_epoch = max(1, size["train_items"] // BUDGET["batch"])
    rows = {}
    for r in claim.rows:
        epochs = claim.row_epochs(r)
        evals = epochs // curve_period(epochs) + (1 if epochs % curve_period(epochs) else 0) \
            if r.name == claim.curve_row else 1
        iters = epochs * per_epoch
        secs = iters * t[r.name]["cpu_s_per_iter"] + evals * size["test_items"] * t[r.name]["eval_cpu_s_per_item"]
        rows[r.name] = {"iterations": iters, "evaluations": evals, "seconds": secs}
    per_seed = sum(v["seconds"] for v in rows.values())
    slow = max(v["wall_s_per_iter"] / v["cpu_s_per_iter"] for v in t.values())
    return {"rows": rows, "per_seed_s": per_seed, "total_s": per_seed * claim.seeds,
            "wall_jobs2_s": per_seed * math.ceil(claim.seeds / 2),
            "load_average": max(v["load_average"] for v in t.values()), "wall_over_cpu": slow}


def _sd_of(claim: Claim, out: str, comparison) -> (float, str):
    """The measured sd of a comparison's paired differences under this design (>= 2 seeds), else the prior."""
    recs = []
    for r in claim.rows:
        for s in range(claim.seeds):
            p = result_path(out, "full", claim, r, s)
            if os.path.isfile(p):
                recs.append(read_json(p))
    by = {}
    for r in complete_records(claim, recs, "full"):
        by.setdefault(r["row"], {})[r["seed"]] = r["mAP"]
    seeds = sorted(set(by.get(comparison.method, {})) & set(by.get(comparison.reference, {})))
    if len(seeds) >= 2:
        d = [by[comparison.method][s] - by[comparison.reference][s] for s in seeds]
        m = sum(d) / len(d)
        return math.sqrt(sum((x - m) ** 2 for x in d) / (len(d) - 1)), f"measured, {len(seeds)} seeds"
    return PRIOR_SD.get(claim.name, float("nan")), "prior: the small-set sd"


def plan_text(claims: List[Claim], cache: str, out: str) -> str:
    timings = _read_timings(cache)
    loads = [e["load_average"] for c in timings.values() for e in c.values()]
    lines = [f"Verdict rule: {VERDICT_RULE}.",
             f"Times: CPU seconds measured by the timing probe ({os.path.join(cache, 'timing')}; {THREADS} torch thread, "
             "no loader workers per run: the wall time of one run on an idle core; --jobs 2 runs two seeds "
             "at a time on 2 cores)"
             + (f"; load average {min(loads):.1f}-{max(loads):.1f} on {os.cpu_count()} cores when measured" if loads
                else ""), ""]
    for claim in claims:
        est = estimate(claim, timings)
        lines.append(f"{claim.name}: {claim.seeds} seeds x {len(claim.rows)} rows")
        if est is None:
            lines.append(f"  no timing under this design: python -m benchmarks.claims --probe --claim {claim.name}")
        else:
            for name, v in est["rows"].items():
                lines.append(f"  {name}: {v['iterations']} iterations, {v['evaluations']} evaluation(s): "
                             f"{v['seconds'] / 60:.1f} min")
            fits = est["wall_jobs2_s"] <= HOURS_PER_CLAIM * 3600
            lines.append(f"  per seed {est['per_seed_s'] / 3600:.2f} h; its {claim.seeds} seeds {est['total_s'] / 3600:.2f} "
                         f"CPU h, {est['wall_jobs2_s'] / 3600:.2f} h wall with --jobs 2 on 2 idle cores "
                         f"({'fits' if fits else 'exceeds'} {HOURS_PER_CLAIM:.0f} h); at the probe's load the wall "
                         f"time was up to {est['wall_over_cpu']:.1f}x the CPU time")
        for c in claim.comparisons:
            sd, src = _sd_of(claim, out, c)
            m = mde(sd, claim.seeds)
            text = f"  {c.method} - {c.reference}: sd {sd:.1f} ({src}), MDE {m:.1f} at {claim.seeds} seeds"
            if c.sesoi is not None:
                text += f", SESOI {c.sesoi:+.1f}"
                if not m <= c.sesoi:
                    need = seeds_for_mde(sd, c.sesoi)
                    cost = (f"{need * est['per_seed_s'] / 3600:.1f} CPU h, "
                            f"{math.ceil(need / 2) * est['per_seed_s'] / 3600:.1f} h wall with --jobs 2"
                            if (need and est) else "unknown time")
                    text += (f": CANNOT reach MDE <= SESOI at {claim.seeds} seeds; needs "
                             + (f"{need} seeds ({cost} on this machine)" if need else "> 200 seeds"))
            lines.append(text)
    return "\n".join(lines) + "\n"


def list_text() -> str:
    return f"Verdict rule: {VERDICT_RULE}.\n\n" + "\n\n".join(describe(c) for c in CLAIMS) + "\n"
