#!/usr/bin/env python
"""Print the metrics table of a run: ``python tools/show_results.py OUTPUT_DIR/results.json``.

Same as ``fastreid-ext show`` (``fastreid_ext/commands/show.py``).
"""
import sys

from fastreid_ext.commands.errors import run_cli
from fastreid_ext.commands.show import KEYS, main, table  # noqa: F401  (tests load this file)

if __name__ == "__main__":
    sys.exit(run_cli(main))
