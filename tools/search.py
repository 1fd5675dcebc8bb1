#!/usr/bin/env python
"""Top-k gallery names and distances for queries, as a table or JSON (optionally rank-list PNGs).

    python tools/search.py --index gallery_index/ --query-features query.npz -k 10 --format json
    python tools/search.py --index gallery_index/ --query img.jpg --config-file X.yml --weights W.pth
    python tools/search.py --index gallery_index/ --query-tracklet track_dir/ --config-file X.yml \\
        --weights W.pth --rank-png out/

GPU when the installed faiss has GPUs (several GPUs: sharded), CPU otherwise.
See ``fastreid_ext/deploy/query.py``.
"""
import sys

from fastreid_ext.commands.errors import run_cli
from fastreid_ext.deploy.cli import search_main

if __name__ == "__main__":
    sys.exit(run_cli(search_main))
