#!/usr/bin/env python
"""Export the embedding model of a trained config to ONNX: images (B, T, 3, H, W), 0..255 ->
clip embeddings (B, D); B and T dynamic where the model's graph allows it. Checked against PyTorch with onnxruntime when it is
installed (pip install onnx onnxruntime onnxscript).

    python tools/export_onnx.py --config-file X.yml --weights model_final.pth --output model.onnx

See ``fastreid_ext/deploy/onnx_export.py``.
"""
import argparse
import logging


def main(argv=None):
    import fastreid_ext  # noqa: F401  (compat shims + registrations)
    from fastreid_ext.deploy.onnx_export import export_from_files

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config-file", required=True, metavar="FILE")
    p.add_argument("--weights", required=True, metavar="FILE")
    p.add_argument("--output", required=True, metavar="FILE", help="the .onnx file")
    p.add_argument("--seq-len", type=int, default=None, help="example clip length (default TEST.VIDEO.SEQ_LEN)")
    p.add_argument("--batch", type=int, default=2, help="example batch size")
    p.add_argument("--opset", type=int, default=None, help="ONNX opset (default: the exporter's)")
    p.add_argument("--no-check", action="store_true", help="skip the onnxruntime comparison")
    p.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE config overrides")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s %(name)s] %(levelname)s %(message)s")
    res = export_from_files(args.config_file, args.weights, args.output, args.opts, args.seq_len,
                            args.batch, args.opset, check=not args.no_check)
    check = "not checked" if res.max_abs_diff is None else f"max |onnx - torch| = {res.max_abs_diff:.3g}"
    dyn = ", ".join(("batch", "frames")[a] for a in res.dynamic_axes) or "none (static shapes)"
    print(f"{res.path}: {res.exporter} exporter, example {res.input_shape}, dynamic axes: {dyn}, {check}")
    return res


if __name__ == "__main__":
    import sys

    from fastreid_ext.deploy.cli import run_cli

    sys.exit(run_cli(main))
