"""The host compat shims: needed here, idempotent, and absent when the stack does not need them."""
import os
import subprocess
import sys
import textwrap

from fastreid_ext import compat


def test_host_packages_import_after_plugin():
    import fastreid.data  # noqa: F401
    import fastreid.engine  # noqa: F401
    import fastreid.evaluation  # noqa: F401


def test_apply_is_idempotent():
    before = compat.applied()
    assert compat.apply() == []          # already applied on import
    assert compat.apply() == []
    assert compat.applied() == before
    assert compat.needed() == []         # nothing left to shim in this process


def _run(code: str) -> str:
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                         env={**os.environ, "PYTHONWARNINGS": "ignore"}, timeout=300)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_shims_installed_on_this_stack_in_a_fresh_process():
    # On Python >= 3.10 and torch >= 2 both shims are needed, so both get installed.
    out = _run("""
        import collections, importlib.util
        needs_mapping = not hasattr(collections, "Mapping")
        needs_six = importlib.util.find_spec("torch._six") is None
        import fastreid_ext
        print(sorted(fastreid_ext.compat.applied()), needs_mapping, needs_six)
    """)
    applied, needs_mapping, needs_six = out.rsplit(" ", 2)[0], out.split()[-2], out.split()[-1]
    expect = sorted([n for n, need in (("collections.Mapping", needs_mapping == "True"),
                                       ("torch._six", needs_six == "True")) if need])
    assert applied == str(expect)


def test_shims_absent_when_host_stack_already_works():
    # Simulate a newer stack that provides both names: no shim must be installed.
    out = _run("""
        import collections, collections.abc, sys, types
        collections.Mapping = collections.abc.Mapping
        six = types.ModuleType("torch._six"); six.string_classes = (str, bytes)
        sys.modules["torch._six"] = six
        import fastreid_ext, fastreid.data
        print(fastreid_ext.compat.applied(), hasattr(sys.modules["torch._six"], "__fastreid_ext_shim__"))
    """)
    assert out == "[] False"


def test_installed_host_is_not_edited():
    import fastreid

    build_py = os.path.join(os.path.dirname(fastreid.__file__), "data", "build.py")
    with open(build_py) as f:
        src = f.read()
    # the shim works around these lines; it must never rewrite them
    assert "from torch._six import string_classes" in src
    assert "from collections import Mapping" in src
