"""Options every tool that loads a trained model shares: one spelling, ``--weights FILE``.

``--weights FILE`` is the same as the override ``MODEL.WEIGHTS FILE``, which stays accepted
among a tool's trailing ``KEY VALUE`` pairs."""
from __future__ import annotations

import argparse
from typing import List

__all__ = ["add_weights_option", "opts_with_weights"]


def add_weights_option(parser: argparse.ArgumentParser, required: bool = False) -> None:
    parser.add_argument("--weights", default="", required=required, metavar="FILE",
                        help="the trained weights (.pth); same as the override MODEL.WEIGHTS FILE")


def opts_with_weights(args: argparse.Namespace) -> List[str]:
    """``args.opts`` followed by ``MODEL.WEIGHTS <args.weights>`` when ``--weights`` was given."""
    opts = list(getattr(args, "opts", None) or [])
    if getattr(args, "weights", ""):
        opts += ["MODEL.WEIGHTS", args.weights]
    return opts
