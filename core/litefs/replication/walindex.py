"""Keep open SQLite readers of a WAL-mode replica in step with applied LTX files (LiteFS §4.8).

A replica writes applied pages straight into its database file, so its WAL stays empty. A reader
connection in WAL mode holds SHARED on the database file for as long as it is open and, before each
read transaction, trusts the WAL-index header in ``-shm``: if that header did not change it keeps its
page cache. So for a WAL-mode database the apply

* cannot take SQLite's EXCLUSIVE lock on the database file (every open reader holds SHARED forever);
  it takes SHARED there and the WAL locks WRITE, CKPT, RECOVER and READ0-4 (bytes 120..127 of ``-shm``)
  exclusively instead -- that waits for running read transactions and keeps new ones out;
* rewrites the first WAL-index block of ``-shm`` (change counter + 1, mxFrame 0, nPage = the new page
  count) and truncates the file to that block, so every reader drops its cache on its next transaction.

``-shm`` is memory-mapped by the readers through the mount: the caller must drop the kernel's cached
pages of that inode before the rewrite (so mmap write-back of stale pages cannot overwrite it) and
again after it (so the mappings fault the new bytes in), all while these locks are held.
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from litefs.fuse.locks import WAL_LOCK_COUNT, WAL_LOCK_FIRST, acquire, lock_shared, try_lock, unlock
from litefs.replication.mountlock import hold_locks
from litefs.sqlite.errors import SQLiteFormatError
from litefs.sqlite.header import DatabaseHeader
from litefs.sqlite.shm import (
    SHM_BLOCK_SIZE,
    WAL_INDEX_HEADER_REGION,
    build_wal_index_header,
    parse_wal_index_header,
)
from litefs.sqlite.wal import WAL_HEADER_SIZE, WALHeader
from litefs.store import Database, FileKind

log = logging.getLogger("litefs.replication")


def is_wal_database(path: str) -> bool:
    """True if the database file at ``path`` is in WAL mode (header write/read versions 2/2).

    A missing, empty or unparsable file is not in WAL mode.
    """
    try:
        with open(path, "rb") as f:
            raw = f.read(100)
    except FileNotFoundError:
        return False
    try:
        return DatabaseHeader.parse(raw).is_wal
    except SQLiteFormatError:
        return False


def lock_wal_readers(db_path: str, timeout: float) -> tuple[int, int]:
    """Take SHARED on the database ``db_path`` (in the mount) and the WAL locks of its ``-shm``.

    Blocking (run it in a worker thread). Returns the two file descriptors holding the locks.
    Raises LockTimeoutError when readers keep a read transaction open for longer than ``timeout``,
    FileNotFoundError when ``-shm`` is gone.
    """
    deadline = time.monotonic() + timeout
    db_fd = lock_shared(db_path, timeout)
    try:
        shm_fd = os.open(db_path + "-shm", os.O_RDWR | os.O_CLOEXEC)
        try:
            what = f"the WAL locks of {os.path.basename(db_path)}-shm"
            acquire(shm_fd, fcntl.F_WRLCK, WAL_LOCK_FIRST, WAL_LOCK_COUNT, deadline, what)
        except BaseException:
            os.close(shm_fd)
            raise
    except BaseException:
        unlock(db_fd)
        raise
    return db_fd, shm_fd


def _release(fds: tuple[int, int]) -> None:
    # Unlocking never waits for the daemon (the kernel keeps this mount's locks); close() sends
    # FLUSH to it, so a thread does that and nobody waits (see mountlock.py).
    for fd in fds:
        try_lock(fd, fcntl.F_UNLCK, 0, 0)
    for fd in fds:
        threading.Thread(target=os.close, args=(fd,), name="litefs-close", daemon=True).start()


@asynccontextmanager
async def wal_apply_lock(db_path: str, *, timeout: float = 10.0) -> AsyncIterator[None]:
    """Hold the locks of :func:`lock_wal_readers` for the block; safe to cancel at any point."""
    async with hold_locks(lambda: lock_wal_readers(db_path, timeout), _release):
        yield


def _wal_header(db: Database) -> WALHeader | None:
    try:
        with open(db.backing_path(FileKind.WAL), "rb") as f:
            raw = f.read(WAL_HEADER_SIZE)
    except FileNotFoundError:
        return None
    if len(raw) < WAL_HEADER_SIZE:
        return None
    try:
        return WALHeader.parse(raw)
    except SQLiteFormatError:
        return None


def rewrite_shm(db: Database) -> bool:
    """Rewrite the first WAL-index block of ``db``'s backing ``-shm`` for an empty WAL.

    The change counter is the old one plus one (readers then drop their page cache), the page count and
    size are ``db``'s, salts and frame checksum come from the WAL header if there is a valid one. The
    file is truncated to one block. Returns False (and does nothing) when there is no ``-shm`` file.
    Call with the WAL locks held (:func:`wal_apply_lock`).
    """
    path = db.backing_path(FileKind.SHM)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        old = os.pread(fd, WAL_INDEX_HEADER_REGION, 0)
        change, big_endian = 0, False
        if len(old) == WAL_INDEX_HEADER_REGION:
            prev = parse_wal_index_header(old)
            change, big_endian = prev.change_counter, prev.big_endian_checksum
        wal = _wal_header(db)
        if wal is not None:
            salts, frame_checksum, big_endian = wal.salts, wal.checksum, wal.big_endian
        else:
            salts, frame_checksum = (0, 0), (0, 0)
        region = build_wal_index_header(
            change_counter=change + 1,
            page_size=db.page_size,
            page_count=db.page_count,
            frame_checksum=frame_checksum,
            salts=salts,
            big_endian_checksum=big_endian,
        )
        # The whole block: the hash table after the header describes no frame any more.
        os.pwrite(fd, region + bytes(SHM_BLOCK_SIZE - len(region)), 0)
        os.ftruncate(fd, SHM_BLOCK_SIZE)
    finally:
        os.close(fd)
    return True


def wal_has_frames(db: Database) -> bool:
    """True if the backing ``-wal`` holds more than its header (a replica's WAL should not)."""
    try:
        return os.path.getsize(db.backing_path(FileKind.WAL)) > WAL_HEADER_SIZE
    except FileNotFoundError:
        return False


__all__ = [
    "WAL_LOCK_COUNT",
    "WAL_LOCK_FIRST",
    "is_wal_database",
    "lock_wal_readers",
    "rewrite_shm",
    "wal_apply_lock",
    "wal_has_frames",
]
