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
from typing import Any, TypeVar

import trio

from litefs.fuse.locks import lock_exclusive, lock_shared

T = TypeVar("T")

_FLOCK = struct.Struct("hhqqixxxx")  # struct flock: l_type, l_whence, l_start, l_len, l_pid


async def run_in_thread(fn: Callable[..., Any], *args: Any) -> Any:
    """``trio.to_thread.run_sync`` that a cancellation abandons instead of waiting for."""
    return await trio.to_thread.run_sync(fn, *args, abandon_on_cancel=True)


@asynccontextmanager
async def hold_locks(acquire: Callable[[], T], release: Callable[[T], None]) -> AsyncIterator[T]:
    """Take locks with ``acquire()`` in an abandonable worker thread and hold them for the block.

    If the caller is cancelled while the thread still waits, whatever the thread gets afterwards
    is released at once instead of being kept by nobody. ``release`` must not wait for the FUSE
    loop (it runs on the trio thread, also while cancelled).
    """
    mu = threading.Lock()
    state: dict[str, Any] = {"abandoned": False, "held": None}

    def take() -> T | None:
        held = acquire()
        with mu:
            if state["abandoned"]:  # the caller is gone: do not keep the locks
                release(held)
                return None
            state["held"] = held
            return held

    try:
        got = await run_in_thread(take)
    except trio.Cancelled:
        with mu:
            state["abandoned"] = True
            if state["held"] is not None:
                release(state["held"])
        raise
    assert got is not None
    try:
        yield got
    finally:
        release(got)


@asynccontextmanager
async def mount_lock(path: str, *, exclusive: bool, timeout: float = 10.0) -> AsyncIterator[None]:
    """Hold SQLite's EXCLUSIVE (or SHARED) lock on a database in the mount for the block.

    The kernel keeps the locks of this mount itself (pyfuse3 has no lock handlers), so releasing
    them never waits for the daemon; close() sends FLUSH/RELEASE to it, so a thread does that and
    nobody waits for it.
    """
    take = lock_exclusive if exclusive else lock_shared
    async with hold_locks(lambda: take(path, timeout), _release):
        yield


def release_lock_fd(fd: int) -> None:
    """Release what :func:`litefs.fuse.locks.lock_shared` / ``lock_exclusive`` took, without waiting."""
    _release(fd)


def _release(fd: int) -> None:
    _unlock_all(fd)
    threading.Thread(target=os.close, args=(fd,), name="litefs-close", daemon=True).start()


def _unlock_all(fd: int) -> None:
    fcntl.fcntl(fd, fcntl.F_OFD_SETLK, _FLOCK.pack(fcntl.F_UNLCK, os.SEEK_SET, 0, 0, 0))


__all__ = ["hold_locks", "mount_lock", "release_lock_fd", "run_in_thread"]
