"""Start SQLite's WAL ``fdatasync`` early, in a child process that runs on another CPU.

Under ``synchronous=FULL`` SQLite fsyncs the ``-wal`` file right after each commit frame. The commit
frame's write captures the transaction (validation, LTX encoding: ~100 us of Python) before it is
answered, and only then does SQLite send the fsync request. Starting the ``fdatasync`` when the
commit frame arrives overlaps the device's work with the capture (see :mod:`litefs.store.wal`).

Two ways to start it, one interface (``submit``/``wait``/``forget``/``take_failure``):

* :class:`ProcessSync` (this module) hands the WAL's descriptor over a Unix socket to a small child
  process (:mod:`litefs.store.syncproc_process`), which wakes on an idle CPU -- the SQLite client's,
  which is waiting for our answer -- syncs, and replies. The event loop pays one ``sendmsg``
  (~10 us) and a ``recv`` that usually finds the reply there already.
* :class:`litefs.store.aiosync.AsyncSync` submits Linux AIO's ``IOCB_CMD_FDSYNC``. The kernel runs it
  on a worker bound to the *submitting* CPU, which preempts the event loop for the length of the
  sync; measured on 2 vCPUs (WAL ``FULL``, median per commit): submission 44 us and capture 212 us
  with AIO, against ~10 us and ~100 us with the process. With a single CPU there is no idle CPU to
  win, and AIO costs less than two process switches: :func:`new_early_sync` picks by CPU count.

The child is started with the store, before the FUSE mount exists (a process started later would
close inherited descriptors on our own mount while the event loop waits for it). If it cannot be
started or dies, ``submit`` returns None and SQLite's fsync request syncs the plain way.
"""

from __future__ import annotations

import array
import errno
import logging
import os
import socket
import subprocess
from typing import Protocol

from litefs.store import syncproc_process
from litefs.store.aiosync import ASYNC_SYNC
from litefs.store.helperproc import start_helper

log = logging.getLogger("litefs.store")

_CHILD = syncproc_process.__file__
_REQUEST = syncproc_process.REQUEST
_REPLY = syncproc_process.REPLY
#: At most this many syncs in flight (more means the child cannot keep up: sync the plain way).
MAX_IN_FLIGHT = 32


class EarlySync(Protocol):
    """What :mod:`litefs.store.wal` (submit ... take_failure) and the store (start, close) need from
    an early-fdatasync backend."""

    def start(self) -> None: ...

    def close(self) -> None: ...

    def submit(self, fd: int) -> int | None: ...

    def wait(self, token: int) -> int | None: ...

    def forget(self, token: int) -> None: ...

    def take_failure(self, fd: int) -> int: ...


class ProcessSync:
    """Early fdatasyncs run by a child process; see the module docstring. Event-loop thread only."""

    def __init__(self) -> None:
        self._proc: subprocess.Popen[bytes] | None = None
        self._sock: socket.socket | None = None
        self._next = 1
        #: Sent and not answered: token -> the descriptor (the node's number for it).
        self._inflight: dict[int, int] = {}
        #: Answered and not collected: token -> 0 or -errno.
        self._results: dict[int, int] = {}
        self._unwanted: set[int] = set()
        #: fd -> errno of a forgotten fdatasync that failed (see take_failure).
        self._failed: dict[int, int] = {}

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def start(self) -> None:
        """Start the child process (before the FUSE mount exists; see the module docstring)."""
        if self._proc is not None:
            return
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            self._proc = start_helper(_CHILD, str(theirs.fileno()), pass_fds=(theirs.fileno(),))
        except OSError as exc:
            log.info("WAL syncer process not started (%s): SQLite's fsyncs run the plain way", exc)
            ours.close()
            return
        finally:
            theirs.close()
        self._sock = ours

    def close(self) -> None:
        """Stop the child: it exits when its socket closes."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        if self._proc is not None:
            self._proc.wait()
            self._proc = None
        self._inflight.clear()

    def submit(self, fd: int) -> int | None:
        """Start ``fdatasync(fd)``; a token for :meth:`wait`, or None if it could not be started."""
        sock = self._sock
        if sock is None:
            return None
        if self._unwanted:
            self._collect(block=False)
        if len(self._inflight) >= MAX_IN_FLIGHT:
            return None
        token = self._next
        self._next += 1
        try:
            sock.sendmsg(
                [_REQUEST.pack(token)],
                [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [fd]))],
            )
        except OSError as exc:
            if exc.errno != errno.EBADF:  # a bad descriptor is the caller's; its own fsync says so
                self._lost(f"cannot send to it: {exc}")
            return None
        self._inflight[token] = fd
        return token

    def wait(self, token: int) -> int | None:
        """Wait for the fdatasync ``token``: 0 if it succeeded, ``-errno`` if it failed (-EIO if
        the child died meanwhile), None if its result cannot be had (unknown token, collected
        already)."""
        while token not in self._results:
            if token not in self._inflight:
                return None
            if not self._collect(block=True) and token not in self._results:
                return None
        return self._results.pop(token)

    def forget(self, token: int) -> None:
        """The result of ``token`` is not wanted (a failure is still kept for take_failure)."""
        if self._results.pop(token, None) is None and token in self._inflight:
            self._unwanted.add(token)

    def take_failure(self, fd: int) -> int:
        """The errno of a forgotten fdatasync of ``fd`` that failed (0 if none), and clear it."""
        return self._failed.pop(fd, 0)

    def pending(self) -> int:
        return len(self._inflight)

    def _collect(self, *, block: bool) -> bool:
        """Take the replies that are there (at least one if ``block``); False if the child is gone."""
        sock = self._sock
        if sock is None:
            return False
        flags = 0 if block else socket.MSG_DONTWAIT
        while True:
            try:
                msg = sock.recv(_REPLY.size, flags)
            except BlockingIOError:
                return True
            except InterruptedError:
                continue
            except OSError as exc:
                self._lost(str(exc))
                return False
            if len(msg) != _REPLY.size:
                self._lost("it exited" if not msg else f"a malformed reply ({len(msg)} bytes)")
                return False
            token, err = _REPLY.unpack(msg)
            fd = self._inflight.pop(token, None)
            if fd is not None:
                if token in self._unwanted:
                    self._unwanted.discard(token)
                    if err:
                        self._failed[fd] = err
                else:
                    self._results[token] = -err
            if not self._inflight:
                return True
            flags = socket.MSG_DONTWAIT  # then whatever else has arrived, without waiting

    def _lost(self, why: str) -> None:
        log.warning("WAL syncer process lost (%s): SQLite's fsyncs run the plain way", why)
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        # A sync in flight may have failed in the child, which then took the file's write-back
        # error with it (reported once per open file): a plain fsync now could succeed wrongly.
        # So its outcome counts as a failure.
        for token, fd in self._inflight.items():
            if token in self._unwanted:
                self._failed[fd] = errno.EIO
            else:
                self._results[token] = -errno.EIO
        self._inflight.clear()
        self._unwanted.clear()


def new_early_sync() -> EarlySync:
    """The child process when this node may use two CPUs or more, else Linux AIO."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    return ProcessSync() if cpus >= 2 else ASYNC_SYNC


__all__ = ["MAX_IN_FLIGHT", "EarlySync", "ProcessSync", "new_early_sync"]
