"""User errors end a command with one line on stderr and exit status 2, not a traceback.

A user error is bad input the user can fix: a missing or unreadable file, an unknown config
key or value, a checkpoint that does not fit, a folder in use by another run. ``--debug``
anywhere on the command line shows the traceback instead.
"""
from __future__ import annotations

import inspect
import re
import sys
from typing import Callable, Optional, Sequence

__all__ = ["USER_ERRORS", "run_cli"]


def _user_errors() -> tuple:
    from fastreid_ext.utils.safe_io import LockBusy

    return (ValueError, FileNotFoundError, FileExistsError, KeyError, ImportError, PermissionError, LockBusy)


USER_ERRORS = _user_errors


def run_cli(main: Callable, argv: Optional[Sequence[str]] = None) -> int:
    """Run ``main(argv)`` (``main()`` when it takes no argument; ``argv`` defaults to ``sys.argv[1:]``, without ``--debug``); a user
    error prints ``error: <message>`` on stderr and returns 2, unless ``--debug`` was given.
    Otherwise the exit status is ``main``'s return value when it is an ``int``, else 0."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    argv = [a for a in argv if a != "--debug"]
    try:
        rc = main(argv) if inspect.signature(main).parameters else main()
    except USER_ERRORS() as e:
        if debug:
            raise
        msg = e.args[0] if isinstance(e, KeyError) and e.args else e
        text = re.sub(r"\s*\n\s*", " ", str(msg)).strip()  # one line, the whole message
        print(f"error: {text or type(e).__name__}", file=sys.stderr)
        return 2
    return rc if isinstance(rc, int) and not isinstance(rc, bool) else 0
