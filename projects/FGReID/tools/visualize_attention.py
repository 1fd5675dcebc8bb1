"""Save FGReID's spatial attention maps (A_maps) over input frames as a PNG (paper Figure 7).

    python projects/FGReID/tools/visualize_attention.py \
        --config-file projects/FGReID/configs/MARS/fgreid.yml \
        --frames f1.jpg f2.jpg f3.jpg f4.jpg --out attention.png \
        --weights logs/fgreid/mars_fgreid/model_final.pth

Without ``--weights`` (``MODEL.WEIGHTS``) the maps of an untrained model are drawn. Each group of
``INPUT.VIDEO.SEQ_LEN`` (or ``--t``) frames is one clip.
"""
from __future__ import annotations

import argparse

import torch

import fastreid_ext  # noqa: F401  (compat shims, registrations)
from fastreid_ext.commands.options import add_weights_option, opts_with_weights
from fastreid_ext.config import build_config
from fastreid_ext.engine import build_inference_model
from fgreid.visualize import load_clip, save_attention_png


def main(argv=None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config-file", required=True)
    parser.add_argument("--frames", nargs="+", required=True, help="frame image files")
    parser.add_argument("--t", type=int, default=0, help="frames per clip (default: all)")
    parser.add_argument("--out", default="attention.png")
    parser.add_argument("--alpha", type=float, default=0.5)
    add_weights_option(parser)
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides KEY VALUE")
    args = parser.parse_args(argv)

    # the weights come from MODEL.WEIGHTS (no stage-1 CNN_MARS checkpoint); no losses needed
    opts = opts_with_weights(args) + ["MODEL.FGREID.MARS_WEIGHTS", "", "MODEL.LOSSES.NAME", "()"]
    cfg = build_config(args.config_file, opts)
    model, cfg = build_inference_model(cfg, allow_untrained=True)
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
