"""fastreid_ext: video and fine-grained ReID on top of the host ``fastreid`` toolbox.

Importing this package installs the unavoidable host compat shims (:mod:`fastreid_ext.compat`)
and registers the plugin's datasets, meta-architectures, heads and losses into the host's
registries. Projects (``projects/*``) register theirs when imported.
"""
from importlib.util import find_spec as _find_spec

if _find_spec("faiss") is None:  # the host imports it (fastreid/utils/compute_dist.py:10)
    raise ImportError("fastreid_ext needs FAISS, which the host fastreid imports: install the [cpu] extra "
                      "(faiss-cpu) or the [gpu] extra (faiss-gpu), e.g. pip install 'fastreid-ext[cpu]'")

if _find_spec("fastreid") is None:  # the host: its metadata pins torch==1.13.1, so pip cannot pull it in
    raise ImportError("fastreid_ext needs the host toolbox fastreid 1.4.0, installed without its pinned "
                      "dependencies: pip install --no-deps fastreid==1.4.0")

from . import compat  # noqa: E402

compat.apply()

from .config import add_ext_config, get_cfg  # noqa: E402

__all__ = ["add_ext_config", "get_cfg", "compat"]
__version__ = "0.2.0"


def _register_all() -> None:
    # Importing the sub-packages runs their registry decorators.
    from . import (
        data,  # noqa: F401
        modeling,  # noqa: F401
    )


_register_all()
