"""Save FGReID's spatial attention maps (A_maps) over input frames as a PNG (paper Figure 7).

    python projects/FGReID/tools/visualize_attention.py \
        --config-file projects/FGReID/configs/MARS/fgreid.yml \
        --frames f1.jpg f2.jpg f3.jpg f4.jpg --out attention.png \
        MODEL.WEIGHTS logs/fgreid/mars_fgreid/model_final.pth

Without ``MODEL.WEIGHTS`` the maps of an untrained model are drawn. Each group of
``INPUT.VIDEO.SEQ_LEN`` (or ``--t``) frames is one clip.
"""
from __future__ import annotations

import argparse

import fastreid_ext
import fgreid
import torch
from fastreid.modeling import build_model
from fastreid.utils.checkpoint import Checkpointer

from fgreid.visualize import load_clip, save_attention_png


def main(argv=None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config-file", required=True)
    parser.add_argument("--frames", nargs="+", required=True, help="frame image files")
    parser.add_argument("--t", type=int, default=0, help="frames per clip (default: all)")
    parser.add_argument("--out", default="attention.png")
    parser.add_argument("--alpha", type=float, default=0.5)
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides KEY VALUE")
    args = parser.parse_args(argv)

    cfg = fastreid_ext.get_cfg()
    fgreid.add_fgreid_config(cfg)
    cfg.merge_from_file(args.config_file)
    cfg.merge_from_list(args.opts)
    cfg.MODEL.BACKBONE.PRETRAIN = False  # weights come from MODEL.WEIGHTS
    if not cfg.MODEL.WEIGHTS:  # untrained maps: no stage-1 checkpoint needed either
        cfg.MODEL.FGREID.MARS_WEIGHTS = ""
    cfg.MODEL.LOSSES.NAME = ()
    if cfg.MODEL.WEIGHTS:  # size the (unused) classifier like the checkpoint's
        state = torch.load(cfg.MODEL.WEIGHTS, map_location="cpu", weights_only=True)
        cfg.MODEL.HEADS.NUM_CLASSES = int(state.get("model", state)["classifier.weight"].shape[0])
    cfg.MODEL.HEADS.NUM_CLASSES = max(1, cfg.MODEL.HEADS.NUM_CLASSES)
    cfg.freeze()
    model = build_model(cfg)
    if cfg.MODEL.WEIGHTS:
        Checkpointer(model).load(cfg.MODEL.WEIGHTS)
    t = args.t or len(args.frames)
    if len(args.frames) % t:
        raise ValueError(f"{len(args.frames)} frames is not a multiple of --t {t}")
    clips = torch.cat([load_clip(args.frames[i:i + t], cfg.INPUT.SIZE_TEST)
                       for i in range(0, len(args.frames), t)])  # (B, T, 3, H, W)
    a_maps = model.attention_maps(clips.to(model.device))
    path = save_attention_png(args.out, clips, a_maps, args.alpha)
    print(f"wrote {path}")
    return path


if __name__ == "__main__":
    main()
