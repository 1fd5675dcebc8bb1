"""CLI: ``python -m fastreid_ext.data.synthetic --layout mars --out DIR --ids 120 --seed 0``."""
from __future__ import annotations

import argparse
import json
import sys
import time
from typing import List, Optional

from . import LAYOUTS, default_workers, generate


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m fastreid_ext.data.synthetic", description=__doc__)
    p.add_argument("--layout", required=True, choices=LAYOUTS)
    p.add_argument("--out", required=True, help="the dataset folder itself (market1501: <root>/Market-1501-v15.09.15)")
    p.add_argument("--ids", type=int, required=True, help="total identities (split half/half where fixed)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cameras", type=int, default=None)
    p.add_argument("--frame-size", type=int, nargs=2, default=(128, 64), metavar=("H", "W"))
    p.add_argument("--min-len", type=int, default=None)
    p.add_argument("--max-len", type=int, default=None)
    p.add_argument("--groups", type=int, default=None, help="uniform groups (default 6)")
    p.add_argument("--occlusion", type=float, default=0.15)
    p.add_argument("--distractors", type=float, default=0.2)
    p.add_argument("--junk", type=float, default=0.1)
    p.add_argument("--appearance", default="per_identity", choices=("per_identity", "per_group"),
                   help="per_group: same clothes and body shape within a uniform group, only gait differs")
    p.add_argument("--corrupt", type=float, default=0.0, help="fraction of frames corrupted in test tracklets")
    p.add_argument("--part-occlusion", type=float, default=0.0, help="fraction of frames partially occluded")
    p.add_argument("--misalign", type=float, default=0.0, help="per-frame position/scale jitter (frame fraction)")
    p.add_argument("--scale-var", type=float, default=0.0, help="per-tracklet scale variation exp(U(-s, s))")
    p.add_argument("--pose-var", type=float, default=0.0, help="per-tracklet yaw offset U(-pi, pi) * value")
    p.add_argument("--occluder-clothes", type=float, default=0.0,
                   help="fraction of the partial occluders drawn as a passer-by's clothes")
    p.add_argument("--workers", type=int, default=default_workers())
    p.add_argument("--force", action="store_true", help="regenerate even if DIR already holds a dataset")
    return p


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    t0 = time.perf_counter()
    counts = generate(args.layout, args.out, args.ids, seed=args.seed, cameras=args.cameras,
                      frame_size=tuple(args.frame_size), min_len=args.min_len, max_len=args.max_len,
                      groups=args.groups, occlusion=args.occlusion, distractors=args.distractors, junk=args.junk,
                      appearance=args.appearance, corrupt=args.corrupt, part_occlusion=args.part_occlusion,
                      misalign=args.misalign, scale_var=args.scale_var, pose_var=args.pose_var,
                      occluder_clothes=args.occluder_clothes,
                      workers=args.workers, force=args.force)
    state = "already complete, skipped (use --force to regenerate)" if counts.get("skipped") else "written"
    print(f"synthetic {args.layout} -> {args.out}: {state} in {time.perf_counter() - t0:.1f} s "
          f"({args.workers} worker(s))")
    for key, value in counts.items():
        print(f"  {key:>22}: {json.dumps(value) if isinstance(value, dict) else value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
