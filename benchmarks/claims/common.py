"""Paths, cached synthetic data, atomic JSON and one train + test run for the claims benchmark."""
from __future__ import annotations

import hashlib
import json
import os
import resource
from typing import Dict, Optional, Sequence

import torch

from ..common import LAYOUT_DIRS, train_and_test  # noqa: F401  (the benchmarks' harness)

#: data sets and the pre-trained backbone are cached here (``--cache`` / ``$FASTREID_EXT_CACHE``)
DEFAULT_CACHE = os.path.join(os.path.expanduser("~"), ".cache", "fastreid_ext", "claims")
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))



def cache_dir(path: str = "") -> str:
    return os.path.abspath(path or os.environ.get("FASTREID_EXT_CACHE") or DEFAULT_CACHE)


def key_of(obj) -> str:
    """Short stable hash of a JSON-able object (cache keys)."""
    return hashlib.sha1(json.dumps(obj, sort_keys=True, default=list).encode()).hexdigest()[:10]


def write_json_atomic(path: str, obj) -> None:
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=1, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def read_json(path: str):
    with open(path) as f:
        return json.load(f)


def cpu_seconds() -> float:
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def ensure_dataset(data: Dict, cache: str, seed: int = 0) -> str:
    """Generate (once) the synthetic set described by ``data`` and return its datasets root.

    The root is ``<cache>/data/<layout>-<hash of the arguments>``; the generator itself skips a
    folder that already holds the same finished dataset and refuses one made otherwise.
    """
    from fastreid_ext.data.synthetic import generate

    args = dict(data)
    layout = args.pop("layout")
    root = os.path.join(cache, "data", f"{layout}-{key_of([layout, args, seed])}")
    counts = generate(layout, os.path.join(root, LAYOUT_DIRS[layout]), seed=seed, **args)
    if not counts.get("skipped"):
        print(f"[claims] generated {layout} in {root} ({counts.get('seconds')} s)", flush=True)
    return root


def last_diagnostics(output_dir: str) -> Dict[str, float]:
    """The last ``diag/<key>`` values logged in ``output_dir/metrics.json`` (``{}`` if none)."""
    path = os.path.join(output_dir, "metrics.json")
    out: Dict[str, float] = {}
    if not os.path.isfile(path):
        return out
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            try:
                row = json.loads(line)
            except ValueError:
                continue
            out.update({k[len("diag/"):]: v for k, v in row.items() if k.startswith("diag/")})
    return out


def remove_checkpoints(output_dir: str) -> None:
    for name in os.listdir(output_dir):
        if name.endswith(".pth") or name == "last_checkpoint":
            os.remove(os.path.join(output_dir, name))


def check_backbone_loaded(model: torch.nn.Module, backbone_path: str) -> int:
    """Number of backbone tensors of ``model`` equal to the pre-trained file's. Raises if none
    (a row that silently trained from scratch would break the protocol) and if the model holds
    another complete copy of the backbone (every conv of the file under one prefix, e.g.
    FGReID's second ResNet ``backbone_mars.``) that did not get the weights: the row would
    start partly from scratch while the others start pre-trained."""
    ref = torch.load(backbone_path, map_location="cpu")
    convs = {n: v for n, v in ref.items() if n.endswith("conv1.weight") or n.endswith("conv2.weight")}
    own = model.state_dict()
    copies: Dict[str, Dict[str, bool]] = {}  # prefix -> {conv name: equal to the file's}
    for k, v in own.items():
        for name, value in convs.items():
            if (k == name or k.endswith("." + name)) and v.shape == value.shape:
                copies.setdefault(k[: len(k) - len(name)], {})[name] = torch.equal(v.cpu(), value)
    matched = sum(sum(c.values()) for c in copies.values())
    if matched == 0:
        raise RuntimeError(f"the model holds none of the pre-trained backbone's weights ({backbone_path}); "
                           "its backbone did not load MODEL.BACKBONE.PRETRAIN_PATH")
    cold = [p or "(top level)" for p, c in copies.items() if len(c) == len(convs) and not any(c.values())]
    if cold:
        raise RuntimeError(f"the model holds {len(cold)} complete backbone copy(ies) without the pre-trained "
                           f"weights ({', '.join(cold)}): load {backbone_path} into them too, or the row "
                           "does not start from the same weights as the others")
    return matched


def threads() -> int:
    return torch.get_num_threads()


def apply_threads(n: Optional[int]) -> None:
    if n:
        torch.set_num_threads(int(n))


def opts_list(pairs: Dict[str, object]) -> Sequence[str]:
    out = []
    for k, v in pairs.items():
        out += [k, v if isinstance(v, str) else json.dumps(v) if isinstance(v, (list, tuple)) else str(v)]
    return out
