"""Background writing of the LTX files of WAL commits.

In WAL mode the LTX file of a transaction is not needed for durability on the commit path: SQLite's
WAL holds the same transaction, and startup recovery rebuilds any LTX file that is missing from the
checksum-valid WAL (see :mod:`litefs.store.wal`). What the commit path needs is the encoded file, so
that the position can move and replicas can be sent the transaction. Creating and renaming a file
costs the event-loop thread 100-150 us on a quiet ext4 and up to milliseconds when other processes
keep the file system journal busy -- more than the rest of a small WAL commit. So the commit path
hands the encoded bytes to :class:`LTXWriter`, whose thread writes them (temp file + rename, in
submission order, a few milliseconds' worth at a time) while the loop serves the next request.

Until its file exists, a submitted LTX file is served from memory (:meth:`LTXWriter.pending`), so
the replication stream never misses it. Anything that needs the files on disk first calls
:meth:`LTXWriter.drain`: the checkpoint guard (before WAL pages reach the database file), role-change
recovery, imports, drops and shutdown. A failed write is logged at once, reported through
:attr:`LTXWriter.on_error` (the node treats it like a failed commit: exit 99) and raised by the next
:meth:`submit` or :meth:`drain`. Unlike a failed rollback-mode commit, the transaction was already
acknowledged to SQLite; it is safe in the WAL and recovery writes its LTX file at the next start.
"""

from __future__ import annotations

import collections
import logging
import os
import threading
from collections.abc import Callable

from litefs.store.fsutil import create_truncated, remove_quietly

log = logging.getLogger("litefs.store")

_TMP_SUFFIX = ".tmp"
#: The writer gathers files for up to this long (or until BATCH_FILES are queued) before writing
#: them in one go: one wakeup of its thread per batch instead of one per commit. Measured on 2 vCPUs
#: (WAL, synchronous=NORMAL): 320-340 us per transaction instead of 370-380.
BATCH_SECONDS = 0.005
BATCH_FILES = 32


class LTXWriteError(OSError):
    """A background LTX write failed (the node must stop; recovery rebuilds the file from the WAL)."""


def write_file_atomically(path: str, data: bytes | memoryview, *, datasync: bool = False) -> None:
    """Write ``data`` to ``path`` through a temp file and a rename, so the file appears whole.

    With ``datasync`` the temp file's data is made durable (fdatasync) before the rename; making the
    rename itself durable (fsync of the directory) is the caller's business.
    """
    tmp = path + _TMP_SUFFIX
    try:
        fd = create_truncated(tmp)  # ltx/ is created on demand, not checked per commit
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


class LTXWriter:
    """One thread that writes submitted LTX files in order; see the module docstring."""

    def __init__(self, name: str = "ltx-writer") -> None:
        self._name = name
        self._cond = threading.Condition()
        self._queue: collections.deque[tuple[str, bytes]] = collections.deque()
        self._pending: dict[str, bytes] = {}
        self._busy = False
        self._error: BaseException | None = None
        self._closed = False
        self._thread: threading.Thread | None = None
        self._idle_wait = False
        self._draining = 0
        #: Files written so far (for tests and /debug/vars).
        self.written = 0
        #: Called from the writer thread with the exception when a write fails.
        self.on_error: Callable[[BaseException], None] | None = None

    # -- called from the event loop --------------------------------------------------------------

    def submit(self, path: str, data: bytes) -> None:
        """Queue ``data`` to become ``path``; raises :class:`LTXWriteError` if an earlier write failed."""
        with self._cond:
            self._raise_error()
            if self._closed:
                raise LTXWriteError(f"ltx writer closed: cannot write {path}")
            self._pending[path] = data
            self._queue.append((path, data))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                self._thread.start()
            if self._idle_wait or len(self._queue) >= BATCH_FILES:
                self._cond.notify_all()

    def pending(self, path: str) -> bytes | None:
        """The content of ``path`` if it is submitted but not on disk yet."""
        with self._cond:
            return self._pending.get(path)

    @property
    def pending_count(self) -> int:
        """Files submitted and not on disk yet."""
        with self._cond:
            return len(self._pending)

    @property
    def idle(self) -> bool:
        """True when every submitted file is on disk."""
        with self._cond:
            return not self._queue and not self._busy

    def drain(self) -> None:
        """Block until every submitted file is on disk; raise :class:`LTXWriteError` if one failed."""
        with self._cond:
            self._draining += 1
            self._cond.notify_all()
            try:
                while (self._queue or self._busy) and self._error is None:
                    self._cond.wait()
            finally:
                self._draining -= 1
            self._raise_error()

    def close(self) -> None:
        """Write what is queued, then stop the thread (errors are logged, not raised)."""
        try:
            self.drain()
        except LTXWriteError:
            pass
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def _raise_error(self) -> None:
        if self._error is not None:
            raise LTXWriteError(f"writing an LTX file failed earlier: {self._error}") from self._error

    # -- the thread ------------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closed:
                    self._idle_wait = True
                    self._cond.wait()
                    self._idle_wait = False
                if not self._queue:
                    return  # closed and empty
                if len(self._queue) < BATCH_FILES and not self._closed and not self._draining:
                    self._cond.wait(BATCH_SECONDS)  # submit() and drain() wake it early
                batch = list(self._queue)
                self._queue.clear()
                self._busy = True
            try:
                for path, data in batch:
                    write_file_atomically(path, data)
                    with self._cond:
                        self._pending.pop(path, None)
                        self.written += 1
            except BaseException as exc:  # noqa: BLE001 - reported to the commit path
                log.error("ltx writer: cannot write %s: %s", path, exc)
                with self._cond:
                    self._error = exc
                    self._busy = False
                    self._queue.clear()
                    self._pending.clear()
                    self._cond.notify_all()
                if self.on_error is not None:
                    try:
                        self.on_error(exc)
                    except Exception:  # the loop may be gone (shutdown): the error stays recorded
                        log.debug("ltx writer: error callback failed", exc_info=True)
                return
            with self._cond:
                self._busy = False
                if not self._queue:
                    self._cond.notify_all()


__all__ = ["LTXWriteError", "LTXWriter", "write_file_atomically"]
