"""One row of a claim trained longer, on more identities or larger frames, then drawn and
measured by the project's attention tool: the runs behind the MG-RAFA README's "Attention
learning rate" and "Scores from the temporal residual" tables.

``python -m benchmarks.claims.long_run --claim mgrafa --row mg_rafa --ids 300 --epochs 50
--out <dir> [--frame-size 128 64] [KEY VALUE ...]`` trains the row with the claim's budget
settings (pre-trained shared backbone, seed 0) except ``SOLVER.MAX_EPOCH`` and the overrides,
with ``tools/train_net.py``; then runs ``projects/MGRAFA/tools/visualize_attention.py --tracklets
all --marks <data>/frame_marks.json --stats`` on ``<out>/model_final.pth`` (pictures in
``<out>/vis``; frame shares, node weights, log-weight variance and theta's gamma printed).
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
from typing import List, Optional

from .claims import get_claim
from .common import LAYOUT_DIRS, cache_dir, ensure_dataset
from .pretrain import backbone_path
from .runner import REPO, budget_opts, config_path


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--claim", required=True)
    p.add_argument("--row", required=True)
    p.add_argument("--ids", type=int, required=True, help="identities of the generated data set")
    p.add_argument("--epochs", type=int, required=True)
    p.add_argument("--frame-size", type=int, nargs=2, default=None, metavar=("H", "W"),
                   help="generated frame size and input size (default: the claim's)")
    p.add_argument("--out", required=True)
    p.add_argument("--cache", default="")
    p.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE overrides, applied last")
    args = p.parse_args(argv)
    claim = get_claim(args.claim)
    row = claim.row(args.row)
    data = dict(claim.data, ids=args.ids)
    size_opts: List[str] = []
    if args.frame_size:
        h, w = args.frame_size
        data["frame_size"] = (h, w)
        size_opts = ["INPUT.SIZE_TRAIN", f"[{h}, {w}]", "INPUT.SIZE_TEST", f"[{h}, {w}]",
                     "INPUT.PADDING.SIZE", str(max(4, h // 16))]
    cache = cache_dir(args.cache)
    root = ensure_dataset(data, cache)
    backbone = backbone_path(cache)
    if not os.path.isfile(backbone):
        raise SystemExit(f"no pre-trained backbone at {backbone}: run `python -m benchmarks.claims.pretrain` first")
    opts = [str(o) for o in list(row.opts) + budget_opts(claim, row, 0, root, backbone, args.out)]
    opts += ["SOLVER.MAX_EPOCH", str(args.epochs)] + size_opts + list(args.opts)
    cfg_file = config_path(row)
    subprocess.run([sys.executable, "tools/train_net.py", "--config-file", cfg_file] + opts, check=True, cwd=REPO)
    marks = os.path.join(root, LAYOUT_DIRS[claim.data["layout"]], "frame_marks.json")
    subprocess.run([sys.executable, "projects/MGRAFA/tools/visualize_attention.py", "--config-file", cfg_file,
                    "--tracklets", "all", "--marks", marks, "--stats", "--out", os.path.join(args.out, "vis"),
                    "--pictures", "8"] + opts + ["MODEL.WEIGHTS", os.path.join(args.out, "model_final.pth")],
                   check=True, cwd=REPO)
    print(f"data {root} ({data})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
