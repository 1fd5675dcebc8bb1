"""Verdicts, the per-claim JSON, the Markdown table, the forest plot and the learning curves."""
from __future__ import annotations

import math
import os
from typing import Dict, List, Optional, Sequence

from . import checks as claim_checks
from .claims import Claim
from .common import write_json_atomic
from .runner import design_key
from .stats import VERDICT_RULE, paired_summary

__all__ = ["mean_std", "complete_records", "verdict", "plateau", "markdown", "plot_forest", "plot_curves",
           "write_claim_json", "run_command"]


def mean_std(values: Sequence[float]) -> Dict[str, float]:
    """Mean and sample standard deviation (n - 1; NaN for one value)."""
    n = len(values)
    if n == 0:
        return {"mean": float("nan"), "std": float("nan"), "n": 0}
    m = math.fsum(values) / n
    s = math.sqrt(math.fsum((v - m) ** 2 for v in values) / (n - 1)) if n > 1 else float("nan")
    return {"mean": m, "std": s, "n": n}


def complete_records(claim: Claim, records: List[Dict], mode: str) -> List[Dict]:
    """The records that count: complete (``"complete": true``) and made under the claim's
    current design (:func:`benchmarks.claims.runner.design_key`)."""
    key = design_key(claim, mode)
    return [r for r in records if r.get("complete") is True and r.get("design") == key]


def _interp(curve: List[Dict], it: float) -> float:
    pts = sorted((c["iteration"], c["mAP"]) for c in curve)
    if it <= pts[0][0]:
        return pts[0][1]
    for (i0, m0), (i1, m1) in zip(pts, pts[1:]):
        if i0 <= it <= i1:
            return m0 + (m1 - m0) * (it - i0) / (i1 - i0)
    return pts[-1][1]


def plateau(curves: List[List[Dict]], half_width: float) -> Dict:
    """The reference row's move over the last quarter of its budget: per seed, final mAP minus
    the (linearly interpolated) mAP at 75 % of the iterations; its mean over seeds against the
    claim's 95 % half-width (``plateau`` True when ``|move| < half_width``)."""
    moves = []
    for c in curves:
        if len(c) >= 2:
            last = max(p["iteration"] for p in c)
            moves.append(_interp(c, last) - _interp(c, 0.75 * last))
    if not moves:
        return {"moves": [], "mean_move": float("nan"), "half_width": half_width, "plateau": None}
    m = math.fsum(moves) / len(moves)
    ok = None if not math.isfinite(half_width) else abs(m) < half_width
    return {"moves": moves, "mean_move": m, "half_width": half_width, "plateau": ok}


def verdict(claim: Claim, records: List[Dict], mode: str = "full") -> Dict:
    """The claim's JSON from its complete records: per row mean +- sd over the seeds every row
    has, each comparison's paired summary (:func:`benchmarks.claims.stats.paired_summary`), the
    mechanism checks, the reference row's learning curves and the plateau test."""
    by: Dict[str, Dict[int, Dict]] = {}
    for r in complete_records(claim, records, mode):
        by.setdefault(r["row"], {})[r["seed"]] = r
    seeds = sorted(set.intersection(*(set(by.get(row.name, {})) for row in claim.rows)))
    rows = {}
    for row in claim.rows:
        vals = [by[row.name][s]["mAP"] for s in seeds]
        rows[row.name] = {"label": row.label or row.name, "stage": row.stage, "source": row.source,
                          "mAP": mean_std(vals), "per_seed_mAP": vals,
                          "seconds": mean_std([by[row.name][s]["seconds"] for s in seeds])}
    comparisons = []
    for c in claim.comparisons:
        diffs = [by[c.method][s]["mAP"] - by[c.reference][s]["mAP"] for s in seeds]
        comparisons.append(dict(paired_summary(diffs, c.sesoi), method=c.method, reference=c.reference,
                                source=c.source, seeds=seeds))
    checks = []
    for name in claim.checks:
        spec = claim_checks.get_check(name)
        extras = [by[spec.row][s].get("extra", {}) for s in seeds]
        checks.append({"check": name, "description": spec.description, "granularity": spec.granularity,
                       "per_seed": [bool(spec.passes(e)) for e in extras], "extra": extras})
    curves = [by[claim.curve_row][s].get("curve", []) for s in seeds]
    first = comparisons[0] if comparisons else {}
    half = first.get("upper", float("nan")) - first.get("mean", float("nan")) if first else float("nan")
    return {"claim": claim.name, "method": claim.method, "statement": claim.statement, "rule": VERDICT_RULE,
            "data": claim.data, "seeds": seeds, "rows": rows, "comparisons": comparisons, "checks": checks,
            "curve_row": claim.curve_row, "curves": curves, "plateau": plateau(curves, half),
            "wall_seconds": sum(r["seconds"] for rs in by.values() for s, r in rs.items() if s in seeds)}


def run_command(claim: Claim, quick: bool = False) -> str:
    """The one command that runs ``claim`` at its full design (its seeds) or as a smoke test."""
    return f"python -m benchmarks.claims --claim {claim.name}" + (" --quick" if quick else "")


def _fmt(ms: Dict, digits: int = 1) -> str:
    if not ms.get("n"):
        return "-"
    if ms["n"] < 2 or math.isnan(ms["std"]):
        return f"{ms['mean']:.{digits}f}"
    return f"{ms['mean']:.{digits}f} ± {ms['std']:.{digits}f}"


def _num(x: float, fmt: str = "{:.1f}") -> str:
    return fmt.format(x) if x is not None and math.isfinite(x) else "-"


def _comparison_cell(c: Dict) -> List[str]:
    interval = f"{_num(c['mean'], '{:+.1f}')} [{_num(c['lower'], '{:+.1f}')}, {_num(c['upper'], '{:+.1f}')}]"
    need = f" (MDE <= SESOI needs {c['seeds_needed']} seeds)" if (
        c["sesoi"] and c["seeds_needed"] and c["seeds_needed"] > c["n"]) else ""
    return [f"{c['method']} - {c['reference']}", interval, _num(c["sd"]), _num(c["mde"]) + need,
            _num(c["sesoi"], "{:+.1f}") if c["sesoi"] is not None else "none claimed", f"**{c['verdict']}**"]


def markdown(verdicts: List[Dict], unavailable: Dict[str, str], mode: str, wall: Optional[float]) -> str:
    lines = [f"Claims benchmark ({mode}); test mAP (%), rows as mean ± sample sd over seeds; paired "
             "difference = method - reference per seed, mean [one-sided 95 % lower, upper bound] "
             "(t, n - 1 df); MDE at 80 % power, one-sided alpha 0.05.", "",
             "| claim (seeds) | rows: mAP | comparison | paired diff [95 % bounds] | sd | MDE | SESOI | verdict |",
             "|---|---|---|---|---|---|---|---|"]
    for v in verdicts:
        rows = "; ".join(f"{r['label']} {_fmt(r['mAP'])}" for r in v["rows"].values() if not r["stage"])
        for i, c in enumerate(v["comparisons"]):
            head = [f"{v['claim']} ({len(v['seeds'])})", rows] if i == 0 else ["", ""]
            lines.append("| " + " | ".join(head + _comparison_cell(c)) + " |")
        p = v["plateau"]
        if p["moves"]:
            lines.append(f"| | {v['curve_row']} learning curve: last quarter moved mAP {p['mean_move']:+.2f} "
                         f"(95 % half-width {_num(p['half_width'], '{:.2f}')}: "
                         f"{'plateau' if p['plateau'] else 'not at a plateau' if p['plateau'] is False else 'n/a'}) "
                         "| | | | | | |")
    for name, why in unavailable.items():
        lines.append(f"| {name} | - | - | - | - | - | - | {why} |")
    if wall is not None:
        lines += ["", f"Wall time of this invocation: {wall / 60:.1f} min."]
    return "\n".join(lines) + "\n"


def _pyplot():
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("[claims] matplotlib not installed: no PNG (pip install -r benchmarks/requirements.txt)")
        return None
    return plt


def _save(fig, plt, path: str) -> str:
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    tmp = path + ".tmp.png"
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, path)
    return path


def plot_forest(verdicts: List[Dict], path: str) -> Optional[str]:
    """One line per comparison: the paired differences by seed (points), their mean with the
    one-sided 95 % bounds (bar), zero (solid) and the SESOI (red tick)."""
    plt = _pyplot()
    comps = [(v["claim"], c) for v in verdicts for c in v["comparisons"]]
    if plt is None or not comps:
        return None
    fig, ax = plt.subplots(figsize=(7.5, 0.45 * len(comps) + 1.2))
    for y, (claim, c) in enumerate(reversed(comps)):
        ax.plot(c["diffs"], [y] * len(c["diffs"]), "o", ms=3, color="#777777")
        if math.isfinite(c["lower"]):
            ax.plot([c["lower"], c["upper"]], [y, y], "-", color="#1f4e79", lw=2)
        ax.plot([c["mean"]], [y], "D", color="#1f4e79", ms=5)
        if c["sesoi"] is not None:
            ax.plot([c["sesoi"]], [y], "|", color="#c00000", ms=14, mew=2)
    ax.axvline(0.0, color="k", lw=0.8)
    ax.set_yticks(range(len(comps)))
    ax.set_yticklabels([f"{claim}: {c['method']} - {c['reference']} ({c['verdict']})" for claim, c in reversed(comps)],
                       fontsize=7)
    ax.set_xlabel("paired mAP difference (points); bar: one-sided 95 % bounds; red: SESOI")
    fig.tight_layout()
    return _save(fig, plt, path)


def plot_curves(verdicts: List[Dict], path: str) -> Optional[str]:
    """The reference row's test mAP against iterations, one line per seed, one panel per claim."""
    plt = _pyplot()
    vs = [v for v in verdicts if any(v["curves"])]
    if plt is None or not vs:
        return None
    fig, axes = plt.subplots(1, len(vs), figsize=(3.2 * len(vs), 3.0), squeeze=False)
    for ax, v in zip(axes[0], vs):
        for seed, c in zip(v["seeds"], v["curves"]):
            ax.plot([p["iteration"] for p in c], [p["mAP"] for p in c], "o-", ms=3, label=f"seed {seed}")
        ax.set_title(f"{v['claim']}: {v['curve_row']}", fontsize=8)
        ax.set_xlabel("iteration", fontsize=8)
        ax.set_ylabel("test mAP (%)", fontsize=8)
        ax.legend(fontsize=6)
    fig.tight_layout()
    return _save(fig, plt, path)


def write_claim_json(v: Dict, out: str, mode: str) -> str:
    path = os.path.join(out, mode, v["claim"], "claim.json")
    write_json_atomic(path, v)
    return path
