"""Writers of shared state: atomic replacement, file locks, normal permissions.

Every file other runs read (checkpoints, ``last_checkpoint``, ``results.json``, features files,
gallery indexes, ``splits_summary.json``, the synthetic generator's side files) is written with
:func:`atomic_write` (:func:`atomic_write_json` for JSON): a temporary file
in the same folder, flushed, fsynced, given the permissions of an ordinary new file
(``0o666 & ~umask``; ``tempfile.mkstemp`` alone would leave ``0o600``), then moved into place
with ``os.replace``. A reader sees the old file or the complete new one, never a torn one.

Read-modify-write cycles (``build_index --add``, a resumed extraction, a training run's output
folder) hold :func:`file_lock`: ``fcntl.flock`` on a sidecar ``<path>.lock`` file. The kernel
drops the lock when its process dies (even by ``kill -9``), so a crash never leaves a stale lock.
The lock is re-entrant inside one process (a nested ``file_lock`` on the same path is free).
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import tempfile
import threading
from typing import Any, Callable, Dict, Iterator, Tuple

__all__ = ["LockBusy", "atomic_write", "atomic_write_json", "file_lock", "lock_path", "new_file_mode"]


class LockBusy(RuntimeError):
    """A non-blocking :func:`file_lock` found the lock held by another process."""


def new_file_mode() -> int:
    """Permissions an ordinary ``open(path, "w")`` would give a new file: ``0o666 & ~umask``."""
    try:  # Linux >= 4.7 reports the umask without changing it
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return 0o666 & ~int(line.split()[1], 8)
    except OSError:  # pragma: no cover - non-Linux
        pass
    mask = os.umask(0o022)  # pragma: no cover - non-Linux
    os.umask(mask)  # pragma: no cover
    return 0o666 & ~mask  # pragma: no cover


def atomic_write(path: str, write: Callable[[Any], None], mode: str = "wb") -> None:
    """Call ``write(fileobj)`` on a temporary file beside ``path``, then rename it to ``path``.

    The new file has ordinary permissions (``0o666 & ~umask``), is fsynced before the rename,
    and the folder is fsynced after it, so after a crash ``path`` holds either its old content
    or all of the new one."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=folder)
    try:
        os.fchmod(fd, new_file_mode())
        with os.fdopen(fd, mode) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    _fsync_dir(folder)


def atomic_write_json(path: str, obj: Any, **dumps_kwargs: Any) -> None:
    """:func:`atomic_write` of ``json.dumps(obj, **dumps_kwargs)`` (text mode): the same bytes
    ``json.dump(obj, f, **dumps_kwargs)`` writes."""
    text = json.dumps(obj, **dumps_kwargs)  # encoded first: an object json cannot encode leaves no file
    atomic_write(path, lambda f: f.write(text), mode="w")


def _fsync_dir(folder: str) -> None:
    try:
        dfd = os.open(folder, os.O_RDONLY)
    except OSError:  # pragma: no cover - e.g. no permission to open the folder
        return
    try:
        os.fsync(dfd)
    except OSError:  # pragma: no cover - some filesystems refuse fsync on folders
        pass
    finally:
        os.close(dfd)


def lock_path(path: str) -> str:
    """The sidecar lock file of ``path`` (a file or a folder): ``<path>.lock``."""
    return os.path.abspath(path).rstrip(os.sep) + ".lock"


_held: Dict[str, Tuple[int, int, int]] = {}  # lock file -> (fd, depth, pid) held by this process
_held_guard = threading.Lock()


@contextlib.contextmanager
def file_lock(path: str, blocking: bool = True, what: str = "", shared: bool = False) -> Iterator[str]:
    """Hold an exclusive ``flock`` on ``<path>.lock`` (created with ordinary permissions);
    ``shared=True``: a shared (reader) lock, held by any number of readers but no writer.

    A shared lock on a read-only location (the lock file cannot be created) is skipped.
    ``blocking=False``: raise :class:`LockBusy` (naming ``what`` or ``path``) instead of waiting
    when another process holds it. Re-entrant within a process (a nested call keeps the mode of
    the outer one); a child forked while the parent holds the lock does not inherit it (its
    own ``flock`` goes through a new open file). Yields the lock file's path."""
    lock = lock_path(path)
    with _held_guard:
        if lock in _held and _held[lock][2] == os.getpid():
            fd, depth, pid = _held[lock]
            _held[lock] = (fd, depth + 1, pid)
            nested = True
        else:
            nested = False
    if nested:
        try:
            yield lock
        finally:
            with _held_guard:
                fd, depth, pid = _held[lock]
                _held[lock] = (fd, depth - 1, pid)
        return
    try:
        os.makedirs(os.path.dirname(lock), exist_ok=True)
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, new_file_mode())
    except OSError as e:
        if shared and e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            yield lock  # a reader on a read-only location: no writer can run there either
            return
        raise
    try:
        try:
            fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | (0 if blocking else fcntl.LOCK_NB))
        except OSError as e:
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise LockBusy(f"{what or path!r} is in use by another process (lock {lock!r} is held); "
                               f"wait for it to finish") from None
            raise
        with _held_guard:
            _held[lock] = (fd, 1, os.getpid())
        try:
            yield lock
        finally:
            with _held_guard:
                _held.pop(lock, None)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
