#!/usr/bin/env python
"""The module import graph of ``fastreid_ext``: cycles and imports against the layer order.

    python tools/import_graph.py            # layer drawing, cycles, upward imports; exit 1 on any
    python tools/import_graph.py --edges    # also every module -> module edge

The graph is read from the source with :mod:`ast` (nothing is imported): every ``import`` /
``from ... import`` statement that names a module of the package, wherever it stands (module
level, inside a function, under ``if TYPE_CHECKING``), is an edge from the importing module to
the imported one (``from pkg import name``: the submodule ``pkg.name`` when it exists, else
``pkg``). Not counted: the parent packages an import runs implicitly (``import a.b`` also runs
``a/__init__``), and ``importlib.import_module`` calls (``evaluation/__init__``'s lazy names).

Layers (:data:`LAYERS`, lowest first): a module may import modules of its own component and of
any lower layer. Components of one layer are independent (neither imports the other). Within a
component any import is allowed as long as it closes no cycle.
"""
from __future__ import annotations

import argparse
import ast
import os
import os.path as osp
import sys
from collections import defaultdict
from typing import Dict, Iterable, List, Optional, Set, Tuple

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
PACKAGE = "fastreid_ext"

#: The layer order, lowest first; a layer is a tuple of independent components (the first
#: dotted name below the package: a sub-package or a top-level module).
#:
#: - ``utils`` (small helpers, the COCO keypoint layout) and ``compat`` (host shims): leaves;
#: - ``data`` (files -> items -> batches), ``evaluation`` (features + labels -> metrics) and
#:   ``modeling`` (batches -> features, losses): independent of each other; they read a config
#:   object but never import ``config``;
#: - ``config``: the host's defaults + the plugin's keys, and the loader of the projects (which
#:   register into ``modeling`` / ``data``): it may check values against what those define;
#: - ``""``, the package's own ``__init__``: applies ``compat``, registers ``data`` / ``modeling``;
#: - ``engine`` (training, checkpoints, the eval model), then ``deploy`` (extraction, indexes,
#:   ONNX), then ``commands`` (the ``fastreid-ext`` command line).
LAYERS: Tuple[Tuple[str, ...], ...] = (
    ("utils", "compat"),
    ("data", "evaluation", "modeling"),
    ("config",),
    ("",),
    ("engine",),
    ("deploy",),
    ("commands",),
)

Graph = Dict[str, Set[str]]


def module_files(root: str, package: str = PACKAGE) -> Dict[str, str]:
    """``{dotted module name: file}`` for every ``.py`` file under ``root/package``."""
    out = {}
    for dirpath, dirnames, files in os.walk(osp.join(root, package)):
        dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
        rel = osp.relpath(dirpath, root).split(os.sep)
        for f in sorted(files):
            if f.endswith(".py"):
                parts = rel if f == "__init__.py" else rel + [f[:-3]]
                out[".".join(parts)] = osp.join(dirpath, f)
    return out


def _base_of(module: str, is_package: bool, level: int, target: Optional[str]) -> str:
    """The absolute name a relative ``from`` import (``level`` dots) of ``module`` refers to."""
    parts = module.split(".") if is_package else module.split(".")[:-1]
    if level > 1:
        parts = parts[: len(parts) - (level - 1)]
    return ".".join(parts + ([target] if target else []))


def _resolve(name: str, modules: Iterable[str]) -> Optional[str]:
    """The longest prefix of ``name`` that is a module of the package, or ``None``."""
    parts = name.split(".")
    for n in range(len(parts), 0, -1):
        candidate = ".".join(parts[:n])
        if candidate in modules:
            return candidate
    return None


def imports_of(module: str, path: str, modules: Set[str]) -> Set[str]:
    """The package modules that ``module`` (source ``path``) imports, anywhere in its body."""
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read(), path)
    is_package = osp.basename(path) == "__init__.py"
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = (_base_of(module, is_package, node.level, node.module) if node.level
                    else node.module or "")
            # ``from pkg import sub``: the submodule when there is one, else ``pkg`` itself
            names = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base
                     for a in node.names]
        else:
            continue
        for name in names:
            target = _resolve(name, modules)
            if target is not None and target != module:
                found.add(target)
    return found


def build_graph(root: str = REPO, package: str = PACKAGE) -> Graph:
    """``{module: {imported modules}}`` over the package's modules."""
    files = module_files(root, package)
    names = set(files)
    return {m: imports_of(m, p, names) for m, p in files.items()}


def find_cycles(graph: Graph) -> List[List[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    stack: List[str] = []
    on_stack: Set[str] = set()
    out: List[List[str]] = []

    def visit(v: str) -> None:  # recursion depth <= the number of modules
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(out)


def component(module: str, package: str = PACKAGE) -> str:
    """The first dotted name below the package (``""`` for the package's ``__init__``)."""
    rest = module[len(package) + 1:] if module != package else ""
    return rest.split(".")[0]


def layer_index(layers=LAYERS) -> Dict[str, int]:
    """``{component: its layer's position}``."""
    return {c: i for i, layer in enumerate(layers) for c in layer}


def upward_imports(graph: Graph, layers=LAYERS, package: str = PACKAGE) -> List[Tuple[str, str]]:
    """``(importer, imported)`` pairs against the layer order: an import of a higher layer, or
    of another component of the same layer. A component missing from ``layers`` raises."""
    rank = layer_index(layers)
    bad = []
    for src in sorted(graph):
        for dst in sorted(graph[src]):
            a, b = component(src, package), component(dst, package)
            for c in (a, b):
                if c not in rank:
                    raise ValueError(f"tools/import_graph.py: component {c!r} ({src} -> {dst}) is in "
                                     f"no layer of LAYERS; add it where its imports put it")
            if a != b and rank[b] >= rank[a]:
                bad.append((src, dst))
    return bad


def component_edges(graph: Graph, package: str = PACKAGE) -> Dict[Tuple[str, str], int]:
    """``{(importer component, imported component): number of module edges}``, others only."""
    out: Dict[Tuple[str, str], int] = defaultdict(int)
    for src, dsts in graph.items():
        for dst in dsts:
            a, b = component(src, package), component(dst, package)
            if a != b:
                out[(a, b)] += 1
    return dict(out)


def _label(c: str) -> str:
    return c or "__init__"


def report(graph: Graph, layers=LAYERS, edges: bool = False) -> Tuple[str, int]:
    """The printed report and the number of problems (cycles + upward imports)."""
    cycles, upward = find_cycles(graph), upward_imports(graph, layers)
    per = component_edges(graph)
    n_edges = sum(len(v) for v in graph.values())
    lines = [f"{PACKAGE}: {len(graph)} modules, {n_edges} imports inside the package",
             "layers, highest first (-> imports of lower components, with module-edge counts):"]
    for layer in reversed(layers):
        for c in layer:
            outs = sorted((b, n) for (a, b), n in per.items() if a == c)
            lines.append(f"  {_label(c):<11} -> " + (", ".join(f"{_label(b)} ({n})" for b, n in outs) or "-"))
    lines.append(f"cycles: {len(cycles)}")
    lines += ["  " + " <-> ".join(c) for c in cycles]
    lines.append(f"upward imports: {len(upward)}")
    lines += [f"  {a} -> {b}" for a, b in upward]
    if edges:
        lines.append("edges:")
        lines += [f"  {a} -> {b}" for a in sorted(graph) for b in sorted(graph[a])]
    return "\n".join(lines), len(cycles) + len(upward)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--root", default=REPO, help="the folder holding the package")
    parser.add_argument("--edges", action="store_true", help="also print every module edge")
    args = parser.parse_args(argv)
    text, problems = report(build_graph(args.root), edges=args.edges)
    print(text)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
