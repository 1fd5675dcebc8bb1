#!/usr/bin/env python
"""List the functions longer than the team's limit (80 lines).

    python tools/long_functions.py [PATH ...] [--max-lines 80]

A function's length is counted from its ``def`` line to its last line (docstring and comments
included, decorators not), as ``ast`` reports them. Without paths it reads the code the limit
applies to: ``fastreid_ext/``, ``projects/``, ``benchmarks/`` and ``tools/``, leaving out tests
(``tests/`` folders, ``test_*.py``) and the synthetic renderer (``fastreid_ext/data/synthetic/``,
whose drawing routines are long on purpose: one figure, one function). Prints one line per
function, longest first (``LINES path:line qualified.name``); exit status 1 when there is any.
"""
from __future__ import annotations

import argparse
import ast
import os
import sys
from typing import Iterator, List, NamedTuple, Sequence

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MAX_LINES = 80
ROOTS = ("fastreid_ext", "projects", "benchmarks", "tools")
#: folders (relative to the repository) the limit does not apply to
EXEMPT = (os.path.join("fastreid_ext", "data", "synthetic"),)


class LongFunction(NamedTuple):
    lines: int
    path: str
    line: int
    name: str

    def __str__(self) -> str:
        return f"{self.lines:4d} {self.path}:{self.line} {self.name}"


def _functions(tree: ast.AST, prefix: str = "") -> Iterator[tuple]:
    """``(qualified name, node)`` of every function and method, nested ones included."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield prefix + node.name, node
            yield from _functions(node, prefix + node.name + ".")
        elif isinstance(node, ast.ClassDef):
            yield from _functions(node, prefix + node.name + ".")
        else:
            yield from _functions(node, prefix)


def long_functions_in(path: str, max_lines: int = MAX_LINES, shown_as: str = "") -> List[LongFunction]:
    """The functions of one Python file longer than ``max_lines``."""
    with open(path, encoding="utf-8") as f:
        try:
            tree = ast.parse(f.read(), filename=path)
        except SyntaxError as e:
            raise SyntaxError(f"{path}: cannot parse line {e.lineno}: {e.msg}") from None
    out = []
    for name, node in _functions(tree):
        n = node.end_lineno - node.lineno + 1
        if n > max_lines:
            out.append(LongFunction(n, shown_as or path, node.lineno, name))
    return out


def _is_exempt(rel: str) -> bool:
    parts = rel.split(os.sep)
    return ("tests" in parts[:-1] or parts[-1].startswith("test_")
            or any(rel == e or rel.startswith(e + os.sep) for e in EXEMPT))


def python_files(paths: Sequence[str], repo: str = REPO) -> Iterator[str]:
    """The ``.py`` files under the folders ``paths`` (relative to ``repo``), tests and exempt
    folders left out; files in ``paths`` themselves."""
    for top in paths:
        full = os.path.join(repo, top)
        if os.path.isfile(full):  # a file named explicitly is read even where a folder is exempt
            yield os.path.relpath(full, repo)
            continue
        for folder, dirs, files in os.walk(full):
            dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d != "__pycache__")
            for name in sorted(files):
                rel = os.path.relpath(os.path.join(folder, name), repo)
                if name.endswith(".py") and not _is_exempt(rel):
                    yield rel


def find_long_functions(paths: Sequence[str] = ROOTS, max_lines: int = MAX_LINES,
                        repo: str = REPO) -> List[LongFunction]:
    found = [f for rel in python_files(paths, repo)
             for f in long_functions_in(os.path.join(repo, rel), max_lines, shown_as=rel)]
    return sorted(found, key=lambda f: (-f.lines, f.path, f.line))


def main(argv: Sequence[str] = ()) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    p.add_argument("paths", nargs="*", default=list(ROOTS), help="files or folders, relative to the repository")
    p.add_argument("--max-lines", type=int, default=MAX_LINES)
    args = p.parse_args(list(argv) or None)
    missing = [x for x in args.paths if not os.path.exists(os.path.join(REPO, x))]
    if missing:
        print(f"error: no such file or folder under {REPO}: {', '.join(missing)}", file=sys.stderr)
        return 2
    found = find_long_functions(args.paths, args.max_lines)
    for f in found:
        print(f)
    print(f"{len(found)} function(s) over {args.max_lines} lines")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
