"""FLOPs of the MG-RAFA meta-architecture variants of Table 2 / Table 3 (the MG-RAFA paper).

Counts with ``torch.utils.flop_counter.FlopCounterMode`` one eval forward of batch 1, T frames
(default 8) of 256x128 through ResNet-50 (last stride 1) + head, and prints a table:

- ``GFLOPs (2/MAC)``: FlopCounterMode's count (a multiply-add = 2 FLOPs);
- ``GMACs``: half of it, the convention the paper's "#GFLOPs" column follows (its Baseline,
  32.694 G for 8 frames of ResNet-50 at 256x128, is the multiply-add count);
- ``added GMACs``: variant minus Baseline, beside Table 2 / Table 3's "+x G".

FlopCounterMode counts convolutions and matrix products (conv, mm, bmm, addmm, ...) only:
BN, ReLU, pooling and softmax are not counted.

    python projects/MGRAFA/tools/count_flops.py [--frames 8] [--reduction 8] [--table3] [--device meta|cpu]
"""
from __future__ import annotations

import argparse

import torch
from torch.utils.flop_counter import FlopCounterMode

import fastreid_ext  # noqa: F401  (compat shims, registrations)
from fastreid_ext.config import build_config
from fastreid_ext.modeling.losses import build_losses
from fastreid_ext.modeling.video_utils import build_backbone_offline, feature_map_shape
from mgrafa.head import MGRAFAHead
from mgrafa.meta_arch import MGRAFANet

# (row, paper's added GFLOPs, MODEL.MGRAFA overrides)
TABLE2 = [
    ("Baseline", 0.0, dict(ATTENTION="avg", NUM_GROUPS=1, GRANULARITY="single")),
    ("MG-AFA (N=4)", 0.095, dict(ATTENTION="afa", NUM_GROUPS=4, GRANULARITY="multi")),
    ("SG-RAFA (S=1)", 2.301, dict(ATTENTION="rafa", NUM_GROUPS=1, GRANULARITY="single")),
    ("SG-RAFA (S=2)", None, dict(ATTENTION="rafa", NUM_GROUPS=2, GRANULARITY="single")),
    ("SG-RAFA (S=4)", 0.615, dict(ATTENTION="rafa", NUM_GROUPS=4, GRANULARITY="single")),
    ("MG-RAFA (N=1)", 2.301, dict(ATTENTION="rafa", NUM_GROUPS=1, GRANULARITY="multi")),
    ("MG-RAFA (N=2)", 0.742, dict(ATTENTION="rafa", NUM_GROUPS=2, GRANULARITY="multi")),
    ("MG-RAFA (N=4)", 0.212, dict(ATTENTION="rafa", NUM_GROUPS=4, GRANULARITY="multi")),
    ("SE (MG, N=4)", None, dict(ATTENTION="se", NUM_GROUPS=4, GRANULARITY="multi")),
    ("CBAM (MG, N=4)", None, dict(ATTENTION="cbam", NUM_GROUPS=4, GRANULARITY="multi")),
]
# Table 3 (SG-RAFA, S=1): S-RFN strategies
TABLE3 = [
    ("S-P (8x1x8)", 2.034, dict(REFERENCE="spatial_pool", REF_SPATIAL_SIZE=[8, 1])),
    ("S-P (8x2x8)", 2.345, dict(REFERENCE="spatial_pool", REF_SPATIAL_SIZE=[8, 2])),
    ("S-P (4x4x8)", 2.345, dict(REFERENCE="spatial_pool", REF_SPATIAL_SIZE=[4, 4])),
    ("S-P (8x4x8)", 2.967, dict(REFERENCE="spatial_pool", REF_SPATIAL_SIZE=[8, 4])),
    ("T-P (16x8x2)", 2.916, dict(REFERENCE="temporal_pool", REF_TEMPORAL_SIZE=2)),
    ("T-P (16x8x4)", 4.159, dict(REFERENCE="temporal_pool", REF_TEMPORAL_SIZE=4)),
    ("ST (16x8x8)", 6.697, dict(REFERENCE="all")),
    ("Ours (16x8x1)", 2.301, dict(REFERENCE="temporal_avg")),
]


def base_cfg(frames: int, reduction: int, size=(256, 128), depth: str = "50x"):
    cfg = build_config(freeze=False)
    cfg.MODEL.META_ARCHITECTURE = "MGRAFANet"
    cfg.MODEL.HEADS.NAME = "MGRAFAHead"
    cfg.MODEL.BACKBONE.DEPTH = depth
    cfg.MODEL.BACKBONE.LAST_STRIDE = 1
    cfg.MODEL.BACKBONE.PRETRAIN = False
    cfg.MODEL.HEADS.NUM_CLASSES = 625
    cfg.MODEL.LOSSES.NAME = ("CrossEntropyLoss", "TripletLoss")
    cfg.INPUT.SIZE_TRAIN = list(size)
    cfg.INPUT.SIZE_TEST = list(size)
    cfg.INPUT.VIDEO.SEQ_LEN = frames
    cfg.MODEL.MGRAFA.REDUCTION = reduction
    cfg.MODEL.DEVICE = "cpu"
    return cfg


def count_flops(model: torch.nn.Module, images: torch.Tensor) -> int:
    """FlopCounterMode total of one eval forward (2 FLOPs per multiply-add)."""
    model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model({"images": images})
    return counter.get_total_flops()


def measure(rows, frames: int, reduction: int, extra=None, device: str = "meta"):
    """``[(row, paper_added, total_flops)]`` for every variant; the backbone is shared.

    ``device="meta"`` (default): shapes only, no arithmetic (FlopCounterMode counts from shapes,
    so the count is the same as on ``cpu``)."""
    cfg = base_cfg(frames, reduction)
    results = []
    with torch.device(device):
        backbone = build_backbone_offline(cfg)
        feat_shape = feature_map_shape(backbone, cfg.INPUT.SIZE_TRAIN)
        images = torch.rand(1, frames, 3, *cfg.INPUT.SIZE_TRAIN) * 255
        for name, paper, overrides in rows:
            c = cfg.clone()
            c.defrost()
            for k, v in {**(extra or {}), **overrides}.items():
                c.MODEL.MGRAFA[k] = v
            head = MGRAFAHead(c, feat_shape=feat_shape)
            model = MGRAFANet(backbone=backbone, heads=head,
                              losses=build_losses(c, feat_dim=feat_shape[0], num_classes=625),
                              pixel_mean=c.MODEL.PIXEL_MEAN, pixel_std=c.MODEL.PIXEL_STD)
            results.append((name, paper, count_flops(model, images)))
    return results


def print_table(title: str, results, base_flops: int, sg1_flops: int = None) -> None:
    print(f"\n{title}")
    print("| Model | GFLOPs (2/MAC) | GMACs | added GMACs (ours) | added G (paper) | % of SG-RAFA(S=1) added |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, paper, flops in results:
        added = (flops - base_flops) / 2e9
        pct = f"{100 * (flops - base_flops) / (sg1_flops - base_flops):.1f}" if sg1_flops and flops != base_flops else "-"
        paper_s = "-" if paper is None else (f"{paper:+.3f}" if paper else "32.694 (total)")
        print(f"| {name} | {flops / 1e9:.3f} | {flops / 2e9:.3f} | {added:+.3f} | {paper_s} | {pct} |")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--reduction", type=int, default=8, help="MODEL.MGRAFA.REDUCTION (s)")
    parser.add_argument("--table3", action="store_true", help="also the S-RFN strategies of Table 3")
    parser.add_argument("--device", default="meta", help="meta (shapes only, instant) or cpu")
    args = parser.parse_args(argv)
    torch.set_grad_enabled(False)
    t2 = measure(TABLE2, args.frames, args.reduction, device=args.device)
    base = t2[0][2]
    sg1 = dict((n, f) for n, _, f in t2)["SG-RAFA (S=1)"]
    print(f"T={args.frames}, 256x128, ResNet-50 last stride 1, batch 1, s={args.reduction}")
    print_table("Table 2 variants", t2, base, sg1)
    if args.table3:
        t3 = measure(TABLE3, args.frames, args.reduction,
                     extra=dict(ATTENTION="rafa", NUM_GROUPS=1, GRANULARITY="single"), device=args.device)
        print_table("Table 3 S-RFN strategies (SG-RAFA, S=1)", t3, base, sg1)


if __name__ == "__main__":
    main()
