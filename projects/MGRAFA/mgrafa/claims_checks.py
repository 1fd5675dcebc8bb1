"""MG-RAFA's checks for the claims benchmark (``benchmarks/claims``): the node attention on the
occluded test nodes, registered there through ``CLAIM_CHECKS`` (``benchmarks.claims.checks``)."""
from __future__ import annotations

from typing import Dict, List, Tuple

__all__ = ["occluded_node_attention", "CLAIM_CHECKS"]


def occluded_node_attention(model, clips, data) -> Dict[str, float]:
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
    frame_size = tuple(data["frame_size"])
    occluded, visible = {}, {}
    frames: Dict[Tuple[int, str], List[float]] = {}  # (granularity, "occluded" | "clean") -> share x T
    n_clips = 0
    model.eval()
    with torch.no_grad():
        for images, clip_marks in clips():
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


#: name: (row, measure, passes(measured) -> bool, description, granularity read)
CLAIM_CHECKS = {
    "occluded_nodes_below_uniform": (
        "mg_rafa", occluded_node_attention,
        lambda e: "att_occluded_nodes_g1" in e and e["att_occluded_nodes_g1"] < 1.0,
        "mean G-1 node weight x K on occluded test nodes < 1 (uniform)", 1),
    "occluded_g2_nodes_below_uniform": (
        "mg_rafa", occluded_node_attention,
        lambda e: "att_occluded_nodes_g2" in e and e["att_occluded_nodes_g2"] < 1.0,
        "mean G-2 node weight x K on occluded test nodes < 1 (uniform)", 2),
}
