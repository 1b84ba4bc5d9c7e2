"""SQLite's lock bytes through the mount, safe to abandon when the node shuts down.

Same locking as :func:`litefs.fuse.locks.sqlite_lock`, but every worker-thread call is started with
``abandon_on_cancel=True``. Replication takes these locks from long-running tasks; when the node
stops, ``pyfuse3.terminate()`` ends the FUSE loop while such a thread may be waiting for an answer
from that very loop (an ``open`` or the ``close`` that sends FLUSH). Waiting for the thread would keep
trio from returning, so the mount would never be closed and the thread never answered: the process
hangs on SIGTERM. Abandoned threads are released when the mount goes away. Unlocking never waits
(see :func:`mount_lock`), so a cancelled holder, such as a ``/stream`` whose replica went away in
the middle of a snapshot, cannot leave SQLite's lock behind.
"""

from __future__ import annotations

import fcntl
import os
import struct
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import trio

from litefs.fuse.locks import lock_exclusive, lock_shared

_FLOCK = struct.Struct("hhqqixxxx")  # struct flock: l_type, l_whence, l_start, l_len, l_pid


async def run_in_thread(fn: Callable[..., Any], *args: Any) -> Any:
    """``trio.to_thread.run_sync`` that a cancellation abandons instead of waiting for."""
    return await trio.to_thread.run_sync(fn, *args, abandon_on_cancel=True)


@asynccontextmanager
async def mount_lock(path: str, *, exclusive: bool, timeout: float = 10.0) -> AsyncIterator[None]:
    """Hold SQLite's EXCLUSIVE (or SHARED) lock on a database in the mount for the block."""
    take = lock_exclusive if exclusive else lock_shared
    mu = threading.Lock()
    state: dict[str, Any] = {"abandoned": False, "fd": None}

    def acquire() -> int | None:
        fd = take(path, timeout)
        with mu:
            if state["abandoned"]:  # the caller is gone: do not keep the lock
                _release(fd)
                return None
            state["fd"] = fd
            return fd

    try:
        got = await run_in_thread(acquire)
    except trio.Cancelled:
        with mu:
            state["abandoned"] = True
            if state["fd"] is not None:
                _release(state["fd"])
        raise
    assert got is not None
    fd: int = got
    try:
        yield
    finally:
        # The kernel keeps the locks of this mount itself (pyfuse3 has no lock handlers), so
        # releasing them never waits for the daemon and is done right here, also when cancelled.
        # close() sends FLUSH/RELEASE to the daemon: a thread does it, and nobody waits for it.
        _release(fd)


def _release(fd: int) -> None:
    _unlock_all(fd)
    threading.Thread(target=os.close, args=(fd,), name="litefs-close", daemon=True).start()


def _unlock_all(fd: int) -> None:
    fcntl.fcntl(fd, fcntl.F_OFD_SETLK, _FLOCK.pack(fcntl.F_UNLCK, os.SEEK_SET, 0, 0, 0))


__all__ = ["mount_lock", "run_in_thread"]
