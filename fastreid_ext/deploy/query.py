"""Answering queries against a :class:`~fastreid_ext.deploy.gallery_index.GalleryIndex`:
getting the query embeddings, formatting the top-k as a table or JSON, rank-list pictures."""
from __future__ import annotations

import json
import logging
import os
import re
from typing import Dict, List, Optional, Sequence, Tuple

from .features_file import FeaturesFile, check_hash, load_features
from .gallery_index import GalleryIndex, SearchResult
from .inputs import collect_inputs

__all__ = ["query_features", "format_table", "results_as_json", "draw_query_rank_lists"]

logger = logging.getLogger(__name__)


def query_features(index: GalleryIndex, features: Optional[str] = None, inputs: Optional[str] = None,
                   as_tracklet: bool = False, extractor=None) -> Tuple[FeaturesFile, List[Tuple[str, str]]]:
    """The query embeddings: from a features file (``features``), or embedded from ``inputs``
    (an image, a folder, a list file; ``as_tracklet``: the folder is one tracklet) with
    ``extractor``. Either way they must come from the index's model (``ConfigHashMismatch``)
    and have its dimension (``ValueError``). Returns ``(features, failed (name, reason))``."""
    if (features is None) == (inputs is None):
        raise ValueError("give exactly one of a query features file or query images / tracklets")
    if features is not None:
        feats = load_features(features)
        check_hash(feats.config_hash, index.config_hash, f"query features file {features!r}",
                   f"the gallery index ({index.describe()})")
        failed: List[Tuple[str, str]] = []
    else:
        if extractor is None:
            raise ValueError("embedding query images needs the model: give --config-file and --weights")
        check_hash(extractor.config_hash, index.config_hash, "the model given by --config-file/--weights",
                   f"the gallery index ({index.describe()})")
        feats, failed = extractor.embed(collect_inputs(inputs, as_tracklet=as_tracklet))
    if len(feats) == 0:
        raise ValueError("no query could be embedded" + (f" (unreadable: {[n for n, _ in failed]})" if failed else ""))
    if feats.dim != index.dim:
        raise ValueError(f"query features have dimension {feats.dim}, but the index holds "
                         f"{index.dim}-dimensional embeddings")
    return feats, failed


def format_table(queries: Sequence[str], result: SearchResult) -> str:
    """A plain-text table: query, rank, gallery name, distance."""
    rows = [(q, str(r + 1), n, f"{d if abs(d) >= 5e-5 else 0.0:.4f}")  # no "-0.0000" from rounding
            for q, row in zip(queries, result) for r, (n, d) in enumerate(row)]
    head = ("query", "rank", "gallery", "distance")
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(head)]
    line = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()  # noqa: E731
    return "\n".join([line(head), line(["-" * w for w in widths])] + [line(r) for r in rows])


def results_as_json(queries: Sequence[str], result: SearchResult, **extra) -> str:
    """``{"results": [{"query", "matches": [{"rank", "name", "distance"}]}], **extra}``."""
    out: Dict = dict(extra)
    out["results"] = [
        {"query": q, "matches": [{"rank": r + 1, "name": n, "distance": d} for r, (n, d) in enumerate(row)]}
        for q, row in zip(queries, result)
    ]
    return json.dumps(out, indent=1)


def draw_query_rank_lists(out_dir: str, queries: FeaturesFile, query_frames: Sequence[Sequence[str]],
                          index: GalleryIndex, result: SearchResult, label_regex: Optional[str] = None) -> List[str]:
    """One rank-list PNG per query (:func:`fastreid_ext.evaluation.visualize.draw_rank_list`).
    ``label_regex`` (one group: the identity in an item name) colours matches green / red;
    without it every border is red (identities unknown)."""
    from fastreid_ext.evaluation.visualize import draw_rank_list

    pat = re.compile(label_regex) if label_regex else None

    def label(name: str):
        m = pat.search(name) if pat else None
        return m.group(1) if m else None

    paths = []
    for qi, (qname, row) in enumerate(zip(queries.names, result)):
        frames = list(query_frames[qi]) if qi < len(query_frames) else []
        gidx = [int(j) for j in result.indices[qi] if j >= 0]
        gframes = [index.first_frames[j] for j in gidx]
        if not frames or not all(gframes):
            logger.warning("no frame paths for query %r or its matches; no picture", qname)
            continue
        ql = label(qname)
        correct = [ql is not None and label(index.names[j]) == ql for j in gidx]
        safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", qname)[-80:]
        out = os.path.join(out_dir, f"rank_q{qi:05d}_{safe}.png")
        draw_rank_list(frames, gframes, [d for _, d in row], correct, out)
        paths.append(out)
    return paths
