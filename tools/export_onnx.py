#!/usr/bin/env python
"""Export the embedding model of a trained config to ONNX: images (B, T, 3, H, W), 0..255 ->
clip embeddings (B, D); B and T dynamic where the model's graph allows it. Checked against
PyTorch with onnxruntime when it is installed (``pip install .[onnx]``).

    python tools/export_onnx.py --config-file X.yml --weights model_final.pth --output model.onnx

Same as ``fastreid-ext export``; see ``fastreid_ext/deploy/onnx_export.py``.
"""
import sys

from fastreid_ext.commands.errors import run_cli
from fastreid_ext.deploy.cli import export_main

main = export_main

if __name__ == "__main__":
    sys.exit(run_cli(export_main))
