"""Verify a pretrained-weights file before a long run (``fastreid-ext check-weights``).

    fastreid-ext check-weights ~/weights/resnet50-19c8e357.pth --config-file Video-Baseline/mars.yml

1. Its SHA-256 is computed and compared with ``--sha256`` (the full digest or a prefix), or,
   when the file name follows torch.hub's ``<name>-<8 hex digits>.pth`` convention (every
   torchvision and IBN-Net release does), with the digest prefix in the name.
2. It is loaded (a state dict, or a checkpoint holding one under ``state_dict`` / ``model``).
3. With ``--config-file``: the release the config's backbone expects is named
   (:func:`~fastreid_ext.modeling.video_utils.host_pretrained_url`) and every convolution of the
   config's backbone must find a tensor of its name and shape in the file (what the host's
   ``load_state_dict(strict=False)`` would otherwise skip with a log line only).

Exit status 0 when every check passes, 1 when one fails, 2 for a missing / unreadable file.
"""
from __future__ import annotations

import argparse
import os
import re
from typing import Dict, List, Optional, Sequence

__all__ = ["backbone_coverage", "main", "name_hash_prefix"]

_HUB_NAME = re.compile(r"-([0-9a-f]{8,64})\.(pth|pt|pkl)$")


def name_hash_prefix(path: str) -> Optional[str]:
    """The SHA-256 prefix a torch.hub-style file name carries (``resnet50-19c8e357.pth`` ->
    ``19c8e357``), or ``None``."""
    m = _HUB_NAME.search(os.path.basename(path))
    return m.group(1) if m else None


def _state_dict(path: str) -> Dict[str, object]:
    import torch

    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated, not a torch file, pickled objects
        raise ValueError(f"weights file {path!r} cannot be loaded by torch.load: {type(e).__name__}: "
                         f"{str(e).splitlines()[0] if str(e) else ''}") from None
    for key in ("state_dict", "model"):
        if isinstance(data, dict) and isinstance(data.get(key), dict):
            data = data[key]
    if not isinstance(data, dict) or not any(hasattr(v, "shape") for v in data.values()):
        raise ValueError(f"weights file {path!r} holds no state dict of tensors")
    return {k[7:] if k.startswith("module.") else k: v for k, v in data.items()}


def backbone_coverage(cfg, state: Dict[str, object]) -> List[str]:
    """The convolutions of ``cfg``'s backbone (non-local blocks aside: the ImageNet releases have
    none) without a tensor of their name and shape in ``state``."""
    from fastreid.modeling.backbones import build_backbone

    cfg = cfg.clone()
    cfg.defrost()
    cfg.MODEL.BACKBONE.PRETRAIN = False
    own = build_backbone(cfg).state_dict()
    return [f"{k} {tuple(v.shape)}" for k, v in own.items()
            if v.dim() == 4 and not k.startswith("NL_")
            and (k not in state or tuple(getattr(state[k], "shape", ())) != tuple(v.shape))]


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="Checks: SHA-256 (--sha256 or the name's torch.hub hash prefix), "
                                       "loadable state dict, and with --config-file every backbone "
                                       "convolution present with its shape.")
    p.add_argument("weights", metavar="FILE", help="the weights file (.pth)")
    p.add_argument("--sha256", default=None, metavar="HEX", help="expected SHA-256 (or a prefix of it)")
    p.add_argument("--config-file", default="", metavar="FILE",
                   help="the config the weights are for (a path or a shipped config name)")
    p.add_argument("opts", nargs="*", metavar="KEY VALUE", help="config overrides (after FILE and the options)")
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parser().parse_intermixed_args(argv)
    if not os.path.isfile(args.weights):
        raise FileNotFoundError(f"weights file {args.weights!r} does not exist")
    failures = []
    from fastreid_ext.deploy.features_file import file_sha256

    digest = file_sha256(args.weights)
    expected = (args.sha256 or name_hash_prefix(args.weights) or "").lower()
    print(f"{args.weights}: SHA-256 {digest}")
    if expected:
        ok = digest.startswith(expected)
        print(f"  hash: {'OK' if ok else 'MISMATCH'} (expected {expected}"
              f"{'' if args.sha256 else ', from the file name'})")
        failures += [] if ok else ["hash"]
    else:
        print("  hash: not checked (no --sha256 and no hash in the file name)")
    state = _state_dict(args.weights)
    print(f"  loads: {len(state)} tensors")
    if args.config_file:
        import fastreid_ext  # noqa: F401
        from fastreid_ext.config import build_config
        from fastreid_ext.modeling.video_utils import host_pretrained_url

        cfg = build_config(args.config_file, args.opts)
        url = host_pretrained_url(cfg)
        if url:
            name = url.split("/")[-1]
            same = os.path.basename(args.weights) == name
            print(f"  config expects {name} ({url}){'' if same else '; this file has another name'}")
        missing = backbone_coverage(cfg, state)
        print(f"  backbone: {'OK, every convolution found' if not missing else 'MISSING ' + str(len(missing))}"
              + (f": {missing[:4]}{' ...' if len(missing) > 4 else ''}" if missing else ""))
        failures += ["backbone"] if missing else []
    print("OK" if not failures else f"FAILED: {', '.join(failures)}")
    return 1 if failures else 0
