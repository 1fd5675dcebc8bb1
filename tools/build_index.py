#!/usr/bin/env python
"""Build a persistent gallery index (any faiss index; flat / ivf / hnsw shorthands) from
features files, or extend one; ``--shard I/N`` builds one shard of a gallery searched as one.

    python tools/build_index.py --features gallery.npz --index gallery_index/ --kind flat
    python tools/build_index.py --features big.npz --index idx/ --kind ivf --nlist 4096 --nprobe 64
    python tools/build_index.py --features big.npz --index idx/ --kind "IVF4096,PQ32x4fs,Refine(SQ8)" --k-factor 8
    python tools/build_index.py --features more.npz --index gallery_index/ --add
    python tools/build_index.py --features big.npz --index gal/shard-0-of-4 --shard 0/4   # one per process

See ``fastreid_ext/deploy/gallery_index.py``.
"""
import sys

from fastreid_ext.commands.errors import run_cli
from fastreid_ext.deploy.cli import build_index_main

if __name__ == "__main__":
    sys.exit(run_cli(build_index_main))
