"""Small file-system steps the store, the FUSE layer, replication and the LTX writer process share.

Standard library only: the LTX writer process (``ltxwriter_process.py``) loads this file by path
without importing the litefs package.
"""

from __future__ import annotations

import os

_CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC
#: Suffix of a file being written under its temporary name (LiteFS: ``<file>.tmp``; startup
#: recovery removes leftovers).
TMP_SUFFIX = ".tmp"


def fsync_dir(path: str) -> None:
    """Make the entries of directory ``path`` (creations, renames, removals) durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def remove_quietly(path: str) -> None:
    """Unlink ``path`` if it can be: for clean-up on a path that is failing anyway."""
    try:
        os.unlink(path)
    except OSError:
        pass


def create_truncated(path: str, mode: int = 0o644) -> int:
    """Open ``path`` for writing, empty, creating it and its directory if missing; return the fd.

    The directory is created only when the first attempt finds it missing, not checked every time.
    """
    try:
        return os.open(path, _CREATE_FLAGS, mode)
    except FileNotFoundError:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        return os.open(path, _CREATE_FLAGS, mode)


def write_file_atomically(path: str, data: bytes | memoryview, *, datasync: bool = False) -> None:
    """Write ``data`` to ``path`` through a temp file and a rename, so the file appears whole.

    With ``datasync`` the temp file's data is made durable (fdatasync) before the rename; making the
    rename itself durable (fsync of the directory) is the caller's business.
    """
    tmp = path + TMP_SUFFIX
    try:
        fd = create_truncated(tmp)  # the directory is created on demand, not checked per file
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            if datasync:
                os.fdatasync(fd)
        finally:
            os.close(fd)
        os.rename(tmp, path)
    except BaseException:
        remove_quietly(tmp)
        raise


__all__ = ["TMP_SUFFIX", "create_truncated", "fsync_dir", "remove_quietly", "write_file_atomically"]
