"""Taking SQLite's lock bytes through the mount, so the daemon can change a database under its readers.

pyfuse3 has no lock handlers, so the kernel keeps POSIX locks on the mount locally: the daemon cannot
see SQLite's locks, but it can take them like any other process -- from a worker thread (the FUSE
loop must stay free to serve the open()), with open-file-description locks (``F_OFD_SETLK``) so that
closing one of the daemon's descriptors never drops a lock held through another.

Rollback-journal locking (https://www.sqlite.org/lockingv3.html): PENDING byte 0x40000000, RESERVED
byte +1, SHARED range +2 .. +511. Exclusive = write locks on RESERVED, PENDING and the SHARED range;
a reader holds a read lock on the SHARED range.
"""

from __future__ import annotations

import fcntl
import os
import struct
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import trio

PENDING_BYTE = 0x40000000
RESERVED_BYTE = PENDING_BYTE + 1
SHARED_FIRST = PENDING_BYTE + 2
SHARED_SIZE = 510

_FLOCK = struct.Struct("hhqqixxxx")  # l_type, l_whence, l_start, l_len, l_pid (Linux x86_64/arm64)


class LockTimeoutError(TimeoutError):
    """SQLite clients kept a conflicting lock for longer than the timeout."""


def try_lock(fd: int, lock_type: int, start: int, length: int) -> bool:
    """One non-blocking OFD lock request; False when another owner holds a conflicting lock."""
    try:
        fcntl.fcntl(fd, fcntl.F_OFD_SETLK, _FLOCK.pack(lock_type, os.SEEK_SET, start, length, 0))
    except OSError as exc:
        if exc.errno in (11, 13):  # EAGAIN, EACCES
            return False
        raise
    return True


def acquire(fd: int, lock_type: int, start: int, length: int, deadline: float, what: str = "") -> None:
    """Retry :func:`try_lock` with a growing pause until it succeeds or ``deadline`` (monotonic)
    passes: then LockTimeoutError, naming ``what`` (default: the byte range)."""
    delay = 0.0005
    while not try_lock(fd, lock_type, start, length):
        if time.monotonic() >= deadline:
            raise LockTimeoutError(f"timed out waiting for {what or f'lock bytes {start:#x}+{length}'}")
        time.sleep(delay)
        delay = min(delay * 2, 0.05)


def lock_exclusive(path: str, timeout: float) -> int:
    """Open ``path`` (a database in the mount) and take SQLite's EXCLUSIVE lock; return the fd."""
    fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    try:
        deadline = time.monotonic() + timeout
        acquire(fd, fcntl.F_WRLCK, RESERVED_BYTE, 1, deadline)
        acquire(fd, fcntl.F_WRLCK, PENDING_BYTE, 1, deadline)
        acquire(fd, fcntl.F_WRLCK, SHARED_FIRST, SHARED_SIZE, deadline)
    except BaseException:
        os.close(fd)
        raise
    return fd


def lock_shared(path: str, timeout: float) -> int:
    """Open ``path`` and take SQLite's SHARED lock (as a reader does); return the fd."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        deadline = time.monotonic() + timeout
        acquire(fd, fcntl.F_RDLCK, PENDING_BYTE, 1, deadline)
        acquire(fd, fcntl.F_RDLCK, SHARED_FIRST, SHARED_SIZE, deadline)
        try_lock(fd, fcntl.F_UNLCK, PENDING_BYTE, 1)
    except BaseException:
        os.close(fd)
        raise
    return fd


def unlock(fd: int) -> None:
    """Release every lock taken through ``fd`` and close it."""
    try:
        try_lock(fd, fcntl.F_UNLCK, 0, 0)
    finally:
        os.close(fd)


#: First of SQLite's WAL lock bytes in ``-shm`` (unix VFS: 120 + lock index).
WAL_LOCK_FIRST = 120
#: WRITE, CKPT, RECOVER, READ0..READ4.
WAL_LOCK_COUNT = 8
#: READ0 (lock index 3); READ1 is the byte after it.
WAL_READ0_BYTE = WAL_LOCK_FIRST + 3


def lock_wal_checkpoints(db_path: str, timeout: float) -> int | None:
    """Keep SQLite from checkpointing or restarting the WAL of ``db_path`` (a database in the mount).

    Takes read locks on READ0 and READ1 of its ``-shm``, as a reader would, without mapping the file
    or touching its content: copying frames into the database file needs READ0 exclusively, and a WAL
    restart needs READ1 to READ4 exclusively, so until :func:`unlock` neither happens (a checkpoint
    already copying is waited for). Readers and writers go on; SQLite readers never need those two
    slots exclusively when others are free. Returns the descriptor holding the locks, or None when
    there is no ``-shm`` (no connection has the database open in WAL mode). Blocking: worker thread.
    """
    try:
        fd = os.open(db_path + "-shm", os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        deadline = time.monotonic() + timeout
        acquire(fd, fcntl.F_RDLCK, WAL_READ0_BYTE, 2, deadline)
    except BaseException:
        os.close(fd)
        raise
    return fd


@asynccontextmanager
async def sqlite_lock(path: str, *, exclusive: bool, timeout: float = 10.0) -> AsyncIterator[None]:
    """Hold SQLite's EXCLUSIVE (or SHARED) lock on a mounted database for the body of the block.

    Must be called from the node's trio thread while the FUSE loop runs: the open() and the lock
    requests go through the mount from a worker thread.
    """
    fn = lock_exclusive if exclusive else lock_shared
    fd = await trio.to_thread.run_sync(fn, path, timeout)
    try:
        yield
    finally:
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(unlock, fd)
