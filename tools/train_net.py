#!/usr/bin/env python
"""Train or evaluate any registered ReID model: fast-reid's command line.

    python tools/train_net.py --config-file configs/Video-Baseline/synthetic_cpu.yml
    python tools/train_net.py --config-file X.yml --eval-only --weights path/model_final.pth
    python tools/train_net.py --config-file X.yml --resume            # continue the last run
    python tools/train_net.py --config-file X.yml --overwrite         # move the folder's run aside, start anew
    python tools/train_net.py --config-file X.yml --num-gpus 2        # 2 processes (GPUs, or gloo on CPU)

Same as ``fastreid-ext train`` (``fastreid_ext/commands/train.py``). Configuration errors print
one line and exit with status 2 (``--debug``: the traceback).
"""
import sys

from fastreid_ext.commands.errors import run_cli
from fastreid_ext.commands.train import Trainer, cli, main, setup  # noqa: F401  (tests load this file)

if __name__ == "__main__":
    sys.exit(run_cli(cli))
