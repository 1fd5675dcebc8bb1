"""``fastreid-ext <command> [args]``: one entry point for the tools (``pyproject.toml``
``[project.scripts]``). ``fastreid-ext <command> --help`` shows each command's options;
``--debug`` shows the traceback of a configuration error instead of one line."""
from __future__ import annotations

import sys
from typing import Callable, Dict, Optional, Sequence, Tuple

__all__ = ["COMMANDS", "main"]


def _train(argv):
    from .train import cli

    return cli(argv)


def _eval(argv):
    from .train import eval_cli

    return eval_cli(argv)


def _deploy(name):
    def run(argv):
        from fastreid_ext.deploy import cli

        return getattr(cli, name)(argv)
    return run


def _show(argv):
    from .show import main as show

    return show(argv)


def _check_weights(argv):
    from .check_weights import main as check

    return check(argv)


def _configs(argv):
    import argparse

    from fastreid_ext.config.lookup import list_configs

    argparse.ArgumentParser(description="List the shipped configs, by the names --config-file accepts.") \
        .parse_args(argv)
    print("\n".join(list_configs()))


#: command -> (function(argv), one-line help)
COMMANDS: Dict[str, Tuple[Callable, str]] = {
    "train": (_train, "train a model from a config (tools/train_net.py)"),
    "eval": (_eval, "evaluate trained weights on the config's test sets (train_net.py --eval-only)"),
    "extract": (_deploy("extract_main"), "images / tracklets -> features file (tools/extract_features.py)"),
    "index": (_deploy("build_index_main"), "features files -> gallery index (tools/build_index.py)"),
    "search": (_deploy("search_main"), "top-k gallery items of queries (tools/search.py)"),
    "export": (_deploy("export_main"), "embedding model -> ONNX, checked with onnxruntime (tools/export_onnx.py)"),
    "show": (_show, "print a run's results.json as a table (tools/show_results.py)"),
    "check-weights": (_check_weights, "verify a pretrained-weights file (SHA-256, loads, fits a config)"),
    "configs": (_configs, "list the shipped configs by name"),
}


def _usage() -> str:
    width = max(map(len, COMMANDS))
    lines = [f"  {name:<{width}}  {text}" for name, (_, text) in COMMANDS.items()]
    return ("usage: fastreid-ext <command> [--help] [--debug] [args]\n\n"
            "Video and fine-grained person ReID on fast-reid. Commands:\n" + "\n".join(lines) +
            "\n\nConfigs are paths or shipped names (fastreid-ext configs). Errors print one line and "
            "exit 2;\n--debug shows the traceback.")


def main(argv: Optional[Sequence[str]] = None) -> int:
    from .errors import run_cli

    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0
    if argv[0] in ("-V", "--version"):
        from importlib.metadata import version

        print(f"fastreid-ext {version('fastreid-ext')}")
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"error: unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    sys.argv[0] = f"fastreid-ext {name}"  # argparse's prog in usage lines
    return run_cli(COMMANDS[name][0], rest)


if __name__ == "__main__":
    sys.exit(main())
