"""The claims' statistics: one-sided t bounds on paired differences, the three-way verdict and
the minimum detectable effect.

Paired differences ``d_s = mAP(method, seed s) - mAP(reference, seed s)`` over ``n`` seeds,
mean ``m``, sample sd ``s`` (n - 1), standard error ``se = s / sqrt(n)``, ``t_q = t_{q, n-1}``
(Student's t quantile with n - 1 degrees of freedom):

- one-sided 95 % lower bound ``m - t_0.95 se`` and one-sided 95 % upper bound ``m + t_0.95 se``
  (together the two-sided 90 % interval);
- verdict (pre-registered smallest effect of interest ``SESOI``, the paper's own gain):
  **holds** when the lower bound is > 0, **smaller than claimed** when the upper bound is
  < SESOI (both can be true: a real effect smaller than the paper's), **inconclusive**
  otherwise; without a SESOI (the paper claims no size) only "holds" / "inconclusive";
- minimum detectable effect at 80 % power, one-sided alpha 0.05 (the usual t approximation):
  ``MDE = (t_{1-alpha, n-1} + t_{power, n-1}) s / sqrt(n)``; the seeds that bring the MDE to
  the SESOI for a given sd: the smallest such ``n``.
"""
from __future__ import annotations

import math
from typing import Dict, Optional, Sequence

__all__ = ["ALPHA", "POWER", "t_quantile", "paired_summary", "verdict_word", "mde", "seeds_for_mde",
           "HOLDS", "SMALLER", "INCONCLUSIVE", "VERDICT_RULE"]

ALPHA = 0.05
POWER = 0.80
HOLDS, SMALLER, INCONCLUSIVE = "holds", "smaller than claimed", "inconclusive"
VERDICT_RULE = ("per comparison, from the paired mAP differences (method - reference, by seed): one-sided "
                "95 % t bounds m -+ t_{0.95,n-1} s/sqrt(n); 'holds' when the lower bound > 0, 'smaller "
                "than claimed' when the upper bound < SESOI (the paper's own gain), 'inconclusive' "
                "otherwise; MDE = (t_{0.95,n-1} + t_{0.80,n-1}) s/sqrt(n)")


def t_quantile(q: float, df: int) -> float:
    """Student's t quantile (``scipy.stats.t.ppf``)."""
    from scipy.stats import t

    if df < 1:
        raise ValueError(f"t quantile needs >= 1 degree of freedom, got {df}")
    return float(t.ppf(q, df))


def _mean_sd(values: Sequence[float]):
    n = len(values)
    m = math.fsum(values) / n
    s = math.sqrt(math.fsum((v - m) ** 2 for v in values) / (n - 1)) if n > 1 else float("nan")
    return m, s


def mde(sd: float, n: int, alpha: float = ALPHA, power: float = POWER) -> float:
    """Minimum detectable effect of a one-sided paired t test with ``n`` seeds."""
    if n < 2 or not math.isfinite(sd):
        return float("nan")
    return (t_quantile(1 - alpha, n - 1) + t_quantile(power, n - 1)) * sd / math.sqrt(n)


def seeds_for_mde(sd: float, target: float, max_n: int = 200) -> Optional[int]:
    """Smallest ``n >= 2`` whose MDE at ``sd`` is <= ``target`` (``None`` past ``max_n``)."""
    if not (math.isfinite(sd) and target and target > 0):
        return None
    for n in range(2, max_n + 1):
        if mde(sd, n) <= target:
            return n
    return None


def verdict_word(lower: float, upper: float, sesoi: Optional[float]) -> str:
    """The three-way verdict from the one-sided 95 % bounds (see the module docstring)."""
    if not (math.isfinite(lower) and math.isfinite(upper)):
        return INCONCLUSIVE
    smaller = sesoi is not None and upper < sesoi
    if lower > 0:
        return f"{HOLDS} ({SMALLER})" if smaller else HOLDS
    return SMALLER if smaller else INCONCLUSIVE


def paired_summary(diffs: Sequence[float], sesoi: Optional[float]) -> Dict:
    """Mean, sd, one-sided 95 % bounds, MDE, the seeds the MDE needs and the verdict of the
    paired differences ``diffs`` (fewer than 2: no sd, no bounds, "inconclusive")."""
    n = len(diffs)
    out: Dict = {"n": n, "diffs": list(diffs), "sesoi": sesoi}
    if n == 0:
        out.update(mean=float("nan"), sd=float("nan"), lower=float("nan"), upper=float("nan"),
                   mde=float("nan"), seeds_needed=None, verdict=INCONCLUSIVE)
        return out
    m, s = _mean_sd(diffs)
    if n < 2:
        lower = upper = float("nan")
    else:
        half = t_quantile(1 - ALPHA, n - 1) * s / math.sqrt(n)
        lower, upper = m - half, m + half
    out.update(mean=m, sd=s, lower=lower, upper=upper, mde=mde(s, n),
               seeds_needed=seeds_for_mde(s, sesoi) if sesoi else None,
               verdict=verdict_word(lower, upper, sesoi))
    return out
