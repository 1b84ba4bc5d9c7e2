"""A cheaper wait for the FUSE device than pyfuse3's own, installed once the mount exists.

Before reading each request, every pyfuse3 worker takes a ``trio.Lock`` (so that only one task waits
on the device at a time) and then waits for the device to become readable. Taking even a free
``trio.Lock`` yields to the scheduler once: one full pass of trio's run loop, with an ``epoll_wait``,
for every FUSE request. A WAL transaction costs two requests and a rollback-journal transaction
about 28, so that pass is a visible part of every commit.

:func:`install` replaces pyfuse3's module-level ``_wait_fuse_readable`` (which its Cython session loop
looks up by name on every request) with :func:`_wait_readable`: a plain flag instead of the lock, so a
free device costs no extra scheduler pass; a second worker (see :mod:`litefs.fuse.workers`) parks on
a ``ParkingLot`` while another one waits. :func:`terminate` replaces ``pyfuse3.terminate``: pyfuse3
checks its session's exit flag before waiting, which Python cannot read, so the flag is kept here.

If the device cannot be identified (no single ``/dev/fuse`` descriptor in this process) nothing is
replaced and pyfuse3 keeps its own wait.
"""

from __future__ import annotations

import logging
import os

import pyfuse3
import trio

log = logging.getLogger("litefs.fuse")

_fd: int | None = None
_terminated = False
_waiting = False
_lot = trio.lowlevel.ParkingLot()


def fuse_device_fd() -> int | None:
    """The descriptor of this process's one open ``/dev/fuse``, or None if there is not exactly one."""
    found = []
    try:
        names = os.listdir("/proc/self/fd")
    except OSError:
        return None
    for name in names:
        try:
            if os.readlink(f"/proc/self/fd/{name}") == "/dev/fuse":
                found.append(int(name))
        except OSError:
            continue  # closed meanwhile (the listing's own descriptor)
    return found[0] if len(found) == 1 else None


async def _wait_readable() -> bool:
    """True once the device is readable; False when the session is ending (pyfuse3's contract)."""
    global _waiting
    while _waiting:
        await _lot.park()
    if _terminated or _fd is None:
        return False
    _waiting = True
    try:
        await trio.lowlevel.wait_readable(_fd)
    except trio.ClosedResourceError:
        return False
    finally:
        _waiting = False
        _lot.unpark()
    return not _terminated


def install() -> bool:
    """Use :func:`_wait_readable` for the mounted session (call after ``pyfuse3.init``)."""
    global _fd, _terminated, _waiting
    fd = fuse_device_fd()
    if fd is None or not hasattr(pyfuse3, "_wait_fuse_readable"):
        log.debug("fuse: keeping pyfuse3's own device wait")
        return False
    _fd, _terminated, _waiting = fd, False, False
    pyfuse3._wait_fuse_readable = _wait_readable  # type: ignore[attr-defined]
    return True


def terminate() -> None:
    """End the session loop (instead of ``pyfuse3.terminate``, which it calls)."""
    global _terminated
    _terminated = True
    _lot.unpark_all()
    pyfuse3.terminate()


__all__ = ["fuse_device_fd", "install", "terminate"]
