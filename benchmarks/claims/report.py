"""Verdicts, the per-claim JSON, the Markdown table and the PNG."""
from __future__ import annotations

import math
import os
from typing import Dict, List, Optional, Sequence

from .claims import HOLDS_RULE, Claim
from .common import write_json_atomic
from .runner import CHECK_GRANULARITY, EXTRA_CHECKS

MIN_SEEDS = 3


def mean_std(values: Sequence[float]) -> Dict[str, float]:
    """Mean and sample standard deviation (n - 1; NaN for one value)."""
    n = len(values)
    if n == 0:
        return {"mean": float("nan"), "std": float("nan"), "n": 0}
    m = sum(values) / n
    s = math.sqrt(sum((v - m) ** 2 for v in values) / (n - 1)) if n > 1 else float("nan")
    return {"mean": m, "std": s, "n": n}


def verdict(claim: Claim, records: List[Dict]) -> Dict:
    """The claim's JSON: per row mean +- sample std, each comparison's paired differences
    (by seed), the extra checks, and ``holds`` by :data:`HOLDS_RULE`."""
    by = {}
    for r in records:
        by.setdefault(r["row"], {})[r["seed"]] = r
    seeds = sorted(set.intersection(*(set(by.get(row.name, {})) for row in claim.rows))) if claim.rows else []
    rows = {}
    for row in claim.rows:
        vals = [by[row.name][s]["mAP"] for s in seeds]
        r1 = [by[row.name][s]["Rank-1"] for s in seeds]
        diag_keys = sorted({k for s in seeds for k in by[row.name][s].get("diagnostics", {})})
        rows[row.name] = {"label": row.label or row.name, "mAP": mean_std(vals), "Rank-1": mean_std(r1),
                          "per_seed_mAP": vals,
                          "diagnostics": {k: mean_std([by[row.name][s]["diagnostics"][k] for s in seeds
                                                       if k in by[row.name][s].get("diagnostics", {})])
                                          for k in diag_keys},
                          "seconds": mean_std([by[row.name][s]["seconds"] for s in seeds])}
    comparisons, ok = [], len(seeds) >= MIN_SEEDS
    for better, worse in claim.compare:
        diffs = [by[better][s]["mAP"] - by[worse][s]["mAP"] for s in seeds]
        positive = bool(diffs) and all(d > 0 for d in diffs)
        ok = ok and positive
        comparisons.append({"method": better, "reference": worse, "paired_diff_mAP": diffs,
                            "mean": mean_std(diffs)["mean"], "std": mean_std(diffs)["std"],
                            "min": min(diffs) if diffs else float("nan"), "positive_in_every_seed": positive})
    checks = []
    for name in claim.checks:
        row_name, _, passes, desc = EXTRA_CHECKS[name]
        extras = [by[row_name][s].get("extra", {}) for s in seeds]
        per_seed = [bool(passes(e)) for e in extras]
        good = bool(per_seed) and all(per_seed)
        ok = ok and good
        checks.append({"check": name, "description": desc, "per_seed": per_seed, "extra": extras, "passes": good})
    reason = "" if len(seeds) >= MIN_SEEDS else f"only {len(seeds)} complete seed(s) (< {MIN_SEEDS})"
    return {"claim": claim.name, "method": claim.method, "statement": claim.statement, "rule": HOLDS_RULE,
            "data": claim.data, "seeds": seeds, "rows": rows, "comparisons": comparisons, "checks": checks,
            "holds": ok, "not_decided": reason}


def _fmt(ms: Dict, digits: int = 1) -> str:
    if not ms.get("n"):
        return "-"
    if ms["n"] < 2 or math.isnan(ms["std"]):
        return f"{ms['mean']:.{digits}f}"
    return f"{ms['mean']:.{digits}f} ± {ms['std']:.{digits}f}"


def markdown(verdicts: List[Dict], unavailable: Dict[str, str], mode: str, wall: Optional[float]) -> str:
    lines = [f"Claims benchmark ({mode}); test mAP (%), mean ± sample std over seeds; paired difference "
             f"= method - reference per seed.", "",
             "| claim | rows: mAP | paired diff (mean ± std, min) | extra | verdict |",
             "|---|---|---|---|---|"]
    for v in verdicts:
        rows = "; ".join(f"{r['label']} {_fmt(r['mAP'])}" for r in v["rows"].values())
        diffs = "; ".join(f"{c['method']} - {c['reference']}: {c['mean']:+.1f} ± {c['std']:.1f} (min {c['min']:+.1f})"
                          for c in v["comparisons"])
        extra = []
        for c in v["checks"]:
            vals = [e.get("att_on_corrupted") for e in c["extra"] if "att_on_corrupted" in e]
            if vals:
                extra.append(f"att. on corrupted {sum(vals) / len(vals):.3f} vs 1/T "
                             f"{c['extra'][0].get('uniform_weight', float('nan')):.3f} "
                             f"({sum(c['per_seed'])}/{len(c['per_seed'])} seeds below)")
            g = CHECK_GRANULARITY.get(c["check"])
            occ = [e[f"att_occluded_nodes_g{g}"] for e in c["extra"] if f"att_occluded_nodes_g{g}" in e]
            vis = [e[f"att_visible_nodes_g{g}"] for e in c["extra"] if f"att_visible_nodes_g{g}" in e]
            if g is not None and occ:
                extra.append(f"G-{g} node weight x K on occluded nodes {sum(occ) / len(occ):.4f}"
                             + (f" / visible {sum(vis) / len(vis):.4f}" if vis else "")
                             + f" (1 = uniform; {sum(c['per_seed'])}/{len(c['per_seed'])} seeds below 1)")
        for row, r in v["rows"].items():
            for k, ms in r["diagnostics"].items():
                if (k.startswith("region_iou") or k.startswith("att_spread_g")
                        or k in ("att_dead_frac", "region_offmap_frac", "att_spread")):
                    extra.append(f"{row} {k} {ms['mean']:.2f}")
        word = "**holds**" if v["holds"] else ("not decided: " + v["not_decided"] if v["not_decided"]
                                              else "**does not hold**")
        lines.append(f"| {v['claim']} (seeds {len(v['seeds'])}) | {rows} | {diffs} | {'; '.join(extra) or '-'} | {word} |")
    for name, why in unavailable.items():
        lines.append(f"| {name} | - | - | - | {why} |")
    if wall is not None:
        lines += ["", f"Wall time of this invocation: {wall / 60:.1f} min."]
    return "\n".join(lines) + "\n"


def plot(verdicts: List[Dict], path: str) -> Optional[str]:
    """Bar chart (mean mAP with sample-std error bars and per-seed points) per claim; ``None``
    when matplotlib is missing (``pip install -r benchmarks/requirements.txt``)."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("[claims] matplotlib not installed: no PNG (pip install -r benchmarks/requirements.txt)")
        return None
    if not verdicts:
        return None
    fig, axes = plt.subplots(1, len(verdicts), figsize=(3.2 * len(verdicts), 3.4), squeeze=False)
    for ax, v in zip(axes[0], verdicts):
        names = list(v["rows"])
        means = [v["rows"][n]["mAP"]["mean"] for n in names]
        stds = [0.0 if math.isnan(v["rows"][n]["mAP"]["std"]) else v["rows"][n]["mAP"]["std"] for n in names]
        ax.bar(range(len(names)), means, yerr=stds, color="#9bb7d4", capsize=3)
        for i, n in enumerate(names):
            pts = v["rows"][n]["per_seed_mAP"]
            ax.plot([i] * len(pts), pts, "k.", ms=4)
        ax.set_xticks(range(len(names)))
        ax.set_xticklabels(names, rotation=30, ha="right", fontsize=8)
        ax.set_title(f"{v['claim']}: {'holds' if v['holds'] else 'does not hold'}", fontsize=9)
        ax.set_ylabel("test mAP (%)")
    fig.tight_layout()
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    tmp = path + ".tmp.png"
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, path)
    return path


def write_claim_json(v: Dict, out: str, mode: str) -> str:
    path = os.path.join(out, mode, v["claim"], "claim.json")
    write_json_atomic(path, v)
    return path
