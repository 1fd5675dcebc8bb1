"""The engine's import path of :mod:`fastreid_ext.utils.safe_io` (atomic writes, file locks)."""
from fastreid_ext.utils.safe_io import (  # noqa: F401
    LockBusy,
    atomic_write,
    atomic_write_json,
    file_lock,
    lock_path,
    new_file_mode,
)

__all__ = ["LockBusy", "atomic_write", "atomic_write_json", "file_lock", "lock_path", "new_file_mode"]
