"""Start an ``fdatasync`` without waiting for it: Linux AIO's ``IOCB_CMD_FDSYNC``.

With two CPUs or more the node uses :mod:`litefs.store.syncproc` instead (a child process that
syncs on the idle CPU; AIO's kernel worker runs on the submitting CPU and preempts the event
loop); this backend serves single-CPU hosts and is the default of a bare :class:`Database`.

Under ``synchronous=FULL`` SQLite fsyncs the ``-wal`` file right after writing each commit frame.
Through the mount that commit then costs, one after the other: the commit frame's write, which
validates the transaction and builds its LTX file before it is answered, and the fsync request,
which waits for the device. The fsync does not depend on the LTX file, so the two can overlap:
the commit frame's write submits an asynchronous fdatasync of the WAL (the kernel runs it on a
worker) before capturing the commit, and SQLite's fsync request then only collects its result --
if nothing was written to the WAL in between; otherwise, or if the asynchronous one failed, the
request syncs as before. Every byte written before the request was written before the submission,
which is all fsync promises.

A Python thread doing the same measured slower (its wakeups and GIL hand-offs cost more than the
overlap saves); the kernel's AIO needs neither. Without AIO (another architecture, ``io_setup``
refused) :func:`submit` returns None and nothing changes. Used only from the event-loop thread.
"""

from __future__ import annotations

import ctypes
import logging
import os
import platform

from litefs.libc import libc_function

log = logging.getLogger("litefs.store")

_IOCB_CMD_FDSYNC = 3
#: (io_setup, io_submit, io_getevents) syscall numbers.
_SYSCALLS = {"x86_64": (206, 209, 208), "aarch64": (0, 2, 4)}
_MAX_EVENTS = 64


class _IOCB(ctypes.Structure):
    _fields_ = [
        ("aio_data", ctypes.c_uint64),
        ("aio_key", ctypes.c_uint32),
        ("aio_rw_flags", ctypes.c_int32),
        ("aio_lio_opcode", ctypes.c_uint16),
        ("aio_reqprio", ctypes.c_int16),
        ("aio_fildes", ctypes.c_uint32),
        ("aio_buf", ctypes.c_uint64),
        ("aio_nbytes", ctypes.c_uint64),
        ("aio_offset", ctypes.c_int64),
        ("aio_reserved2", ctypes.c_uint64),
        ("aio_flags", ctypes.c_uint32),
        ("aio_resfd", ctypes.c_uint32),
    ]


class _IOEvent(ctypes.Structure):
    _fields_ = [
        ("data", ctypes.c_uint64),
        ("obj", ctypes.c_uint64),
        ("res", ctypes.c_int64),
        ("res2", ctypes.c_int64),
    ]


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


class AsyncSync:
    """Asynchronous fdatasyncs: :meth:`submit` one, :meth:`wait` for its result."""

    def __init__(self) -> None:
        self._ctx = ctypes.c_ulong(0)
        self._ready = False
        self._disabled = False
        self._next = 1
        #: Submitted and not collected: token -> its iocb (kept alive until the kernel is done).
        self._inflight: dict[int, _IOCB] = {}
        #: Completed and not collected: token -> result (0 or -errno).
        self._results: dict[int, int] = {}
        self._unwanted: set[int] = set()
        #: fd -> errno of a forgotten fdatasync that failed (see take_failure).
        self._failed: dict[int, int] = {}
        self._events = (_IOEvent * _MAX_EVENTS)()
        self._zero = _Timespec(0, 0)
        self._syscall = None
        self._numbers: tuple[int, int, int] | None = None

    def start(self) -> None:
        """Nothing to start: the AIO context is set up at the first :meth:`submit`."""

    def close(self) -> None:
        """Nothing to stop (one context per process, shared by every store)."""

    def _setup(self) -> bool:
        if self._ready:
            return True
        if self._disabled:
            return False
        numbers = _SYSCALLS.get(platform.machine())
        syscall = libc_function("syscall", None, ctypes.c_long) if numbers is not None else None
        if syscall is None or numbers is None:
            self._disabled = True
            return False
        if syscall(numbers[0], _MAX_EVENTS, ctypes.byref(self._ctx)) != 0:
            log.info("asynchronous WAL sync unavailable (io_setup: %s)", os.strerror(ctypes.get_errno()))
            self._disabled = True
            return False
        self._syscall = syscall
        self._numbers = numbers
        self._ready = True
        return True

    def submit(self, fd: int) -> int | None:
        """Start ``fdatasync(fd)``; a token for :meth:`wait`, or None if it could not be started."""
        if not self._setup():
            return None
        if self._unwanted:
            self._collect(block=False)
        if len(self._inflight) >= _MAX_EVENTS // 2:
            return None
        assert self._syscall is not None and self._numbers is not None
        token = self._next
        self._next += 1
        iocb = _IOCB(aio_data=token, aio_lio_opcode=_IOCB_CMD_FDSYNC, aio_fildes=fd)
        ptr = ctypes.pointer(iocb)
        if self._syscall(self._numbers[1], self._ctx, 1, ctypes.byref(ptr)) != 1:
            err = ctypes.get_errno()
            if err in (22, 95):  # EINVAL, EOPNOTSUPP: the file system cannot; stop trying
                log.info("asynchronous WAL sync unavailable (io_submit: %s)", os.strerror(err))
                self._disabled = True
            return None
        self._inflight[token] = iocb
        return token

    def wait(self, token: int) -> int | None:
        """Wait for the fdatasync ``token``: 0 if it succeeded, ``-errno`` if it failed, None if
        its result cannot be had (unknown token, collected already)."""
        while token not in self._results:
            if token not in self._inflight or not self._collect(block=True):
                return None
        return self._results.pop(token)

    def take_failure(self, fd: int) -> int:
        """The errno of a forgotten fdatasync of ``fd`` that failed (0 if none), and clear it.

        A failed fdatasync reports a write-back error once per open file; a plain fsync after it
        would succeed. So the failure of one nobody waited for is kept for the next sync of ``fd``.
        """
        return self._failed.pop(fd, 0)

    def forget(self, token: int) -> None:
        """The result of ``token`` is not wanted (a write followed: the fsync syncs itself).

        Its iocb stays referenced until the kernel reports it done (collected by a later wait or
        submit).
        """
        if self._results.pop(token, None) is None and token in self._inflight:
            self._unwanted.add(token)

    def _collect(self, *, block: bool) -> bool:
        assert self._syscall is not None and self._numbers is not None
        timeout = None if block else ctypes.byref(self._zero)
        n = self._syscall(self._numbers[2], self._ctx, 1 if block else 0, _MAX_EVENTS, self._events, timeout)
        if n < 0:
            return ctypes.get_errno() == 4  # EINTR: try again
        for i in range(n):
            ev = self._events[i]
            iocb = self._inflight.pop(ev.data, None)
            if iocb is not None:
                if ev.data in self._unwanted:
                    self._unwanted.discard(ev.data)
                    if ev.res < 0:
                        self._failed[iocb.aio_fildes] = -ev.res
                else:
                    self._results[ev.data] = ev.res
        return True

    def pending(self) -> int:
        return len(self._inflight)


#: One per process: the event-loop thread's.
ASYNC_SYNC = AsyncSync()

__all__ = ["ASYNC_SYNC", "AsyncSync"]
