#!/usr/bin/env python
"""Build a persistent gallery index (faiss flat / IVF / HNSW) from features files, or extend one.

    python tools/build_index.py --features gallery.npz --index gallery_index/ --kind flat
    python tools/build_index.py --features big.npz --index idx/ --kind ivf --nlist 4096 --nprobe 64
    python tools/build_index.py --features more.npz --index gallery_index/ --add

See ``fastreid_ext/deploy/gallery_index.py``.
"""
import sys

from fastreid_ext.deploy.cli import build_index_main, run_cli

if __name__ == "__main__":
    sys.exit(run_cli(build_index_main))
