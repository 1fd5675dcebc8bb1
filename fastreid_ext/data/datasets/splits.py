"""Multi-split protocols (iLIDS-VID, PRID-2011, CUHK01 report the mean over 10 splits): the
split-range syntax of ``tools/run_splits.py --splits``. The statistics over the splits are
:mod:`fastreid_ext.evaluation.split_stats`.
"""
from __future__ import annotations

from typing import List

__all__ = ["parse_splits"]


def parse_splits(spec: str) -> List[int]:
    """``"0-9"`` -> [0, ..., 9]; ``"0,3,5-6"`` -> [0, 3, 5, 6]; ``"2"`` -> [2].

    Raises ``ValueError`` on empty, negative, reversed or repeated entries.
    """
    out: List[int] = []
    for part in spec.split(","):
        part = part.strip()
        try:
            if "-" in part[1:]:
                lo, hi = (int(x) for x in part.split("-", 1))
                if lo > hi:
                    raise ValueError
                out.extend(range(lo, hi + 1))
            else:
                out.append(int(part))
        except ValueError:
            raise ValueError(f"bad split spec {spec!r}: expected e.g. '0-9' or '0,2,5-7'") from None
    if not out or min(out) < 0 or len(set(out)) != len(out):
        raise ValueError(f"bad split spec {spec!r}: splits must be distinct non-negative ints")
    return out
