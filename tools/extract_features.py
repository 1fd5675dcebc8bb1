#!/usr/bin/env python
"""Images or tracklet folders -> a features file (embeddings, names, config hash).

    python tools/extract_features.py --config-file X.yml --weights model_final.pth \\
        --input gallery_dir_or_list.txt --output gallery.npz [KEY VALUE ...]

Same dense clips and clip averaging as the evaluator; resumable (re-run to finish an
interrupted extraction); unreadable items are reported by name and skipped.
See ``fastreid_ext/deploy/extractor.py``.
"""
import sys

from fastreid_ext.commands.errors import run_cli
from fastreid_ext.deploy.cli import extract_main

if __name__ == "__main__":
    sys.exit(run_cli(extract_main))
