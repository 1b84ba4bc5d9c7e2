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

Spinning before parking. A client's next FUSE request usually follows our reply within tens of
microseconds (SQLite issues a rollback-journal commit as some 23 back-to-back requests). Parking on
the device costs a trio scheduler pass each time (re-arm the epoll registration, ``epoll_wait``,
reschedule the task), and the client pays a sleep and a wakeup in the kernel. So before parking,
:func:`_wait_readable` polls the device for up to :data:`SPIN_SECONDS`; a request that arrives in
that window is read at once. Measured on 2 vCPUs (2026-12-07): a `truncate`/NORMAL commit went from
3.1-3.5 ms to 2.2-2.5 ms and the node spent less CPU per commit, not more. Every
:data:`MAX_FAST_STREAK` requests taken this way the worker parks once anyway, so the node's other
tasks (HTTP, replication, lease) keep running under a steady stream of requests. With one CPU the
spin would only delay the client that must send the request, so it is off there. The node spins
only while it is primary: on a replica the requests are reads (often a reader polling ``-pos``),
and serving them in streaks delayed applying the primary's transactions (replication lag p50
7.1 ms instead of 5.5 ms in ``bench/replication_bench.py``).

If the device cannot be identified (no single ``/dev/fuse`` descriptor in this process) nothing is
replaced and pyfuse3 keeps its own wait.
"""

from __future__ import annotations

import logging
import os
import select
import time
from collections.abc import Callable

import pyfuse3
import trio

log = logging.getLogger("litefs.fuse")

_fd: int | None = None
_terminated = False
_waiting = False
_lot = trio.lowlevel.ParkingLot()
_poller = select.poll()
_fast_streak = 0

#: How long a worker polls the device for the next request before parking on it.
SPIN_SECONDS = 100e-6
#: Requests taken without parking before the worker parks once (lets other trio tasks run).
MAX_FAST_STREAK = 32


def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


_spin_ns = int(SPIN_SECONDS * 1e9) if _cpus() > 1 else 0


def _always() -> bool:
    return True


_spin_when: Callable[[], bool] = _always


def _request_arrives(deadline_ns: int) -> bool:
    """Poll the device until a request is readable (True) or ``deadline_ns`` passes (False)."""
    poll = _poller.poll
    now = time.perf_counter_ns
    while True:
        if poll(0):
            return True
        if now() > deadline_ns:
            return False


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
    global _waiting, _fast_streak
    while _waiting:
        await _lot.park()
    if _terminated or _fd is None:
        return False
    if _spin_ns and _fast_streak < MAX_FAST_STREAK and _spin_when():
        if _request_arrives(time.perf_counter_ns() + _spin_ns):
            _fast_streak += 1
            return not _terminated
    _fast_streak = 0
    _waiting = True
    try:
        await trio.lowlevel.wait_readable(_fd)
    except trio.ClosedResourceError:
        return False
    finally:
        _waiting = False
        _lot.unpark()
    return not _terminated


def install(spin_when: Callable[[], bool] | None = None) -> bool:
    """Use :func:`_wait_readable` for the mounted session (call after ``pyfuse3.init``).

    ``spin_when`` says whether to poll before parking right now (the node: while it is primary).
    """
    global _fd, _terminated, _waiting, _poller, _fast_streak, _spin_when
    fd = fuse_device_fd()
    if fd is None or not hasattr(pyfuse3, "_wait_fuse_readable"):
        log.debug("fuse: keeping pyfuse3's own device wait")
        return False
    _fd, _terminated, _waiting, _fast_streak = fd, False, False, 0
    _spin_when = spin_when if spin_when is not None else _always
    _poller = select.poll()
    _poller.register(fd, select.POLLIN)
    pyfuse3._wait_fuse_readable = _wait_readable  # type: ignore[attr-defined]
    return True


def terminate() -> None:
    """End the session loop (instead of ``pyfuse3.terminate``, which it calls)."""
    global _terminated
    _terminated = True
    _lot.unpark_all()
    pyfuse3.terminate()


__all__ = ["fuse_device_fd", "install", "terminate"]
