"""Small file-system steps the store, the FUSE layer and replication share."""

from __future__ import annotations

import os

_CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC


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


__all__ = ["create_truncated", "fsync_dir", "remove_quietly"]
