"""Background writing of the LTX files of WAL commits.

In WAL mode the LTX file of a transaction is not needed for durability on the commit path: SQLite's
WAL holds the same transaction, and startup recovery rebuilds any LTX file that is missing from the
checksum-valid WAL (see :mod:`litefs.store.wal`). What the commit path needs is the encoded file, so
that the position can move and replicas can be sent the transaction. Creating and renaming a file
costs 100-150 us of system time on a quiet ext4 and much more when the file system is busy -- more
than the rest of a small WAL commit. So the commit path hands the encoded bytes to
:class:`LTXWriter`, which pipes them to a child process (:mod:`litefs.store.ltxwriter_process`)
that writes them (temp file + rename, in submission order, a few milliseconds' worth at a time)
while the loop serves the next request.

Why a process and not a thread: a writer thread releases and retakes the GIL around each of its
four system calls per file, and every retake waits for the event-loop thread and wakes it later.
Measured on 2 vCPUs (WAL, synchronous=NORMAL): 450-530 us per transaction with a thread, 240-310
us when the files cost the loop nothing but one pipe write each.

Until its file exists, a submitted LTX file is served from memory (:meth:`LTXWriter.pending`), so
the replication stream never misses it. Anything that needs the files on disk first calls
:meth:`LTXWriter.drain`: the checkpoint guard (before WAL pages reach the database file), role-change
recovery, imports, drops and shutdown. A failed write (or a writer process that dies) is logged at
once, reported through :attr:`LTXWriter.on_error` (the node treats it like a failed commit: exit
99) and raised by the next :meth:`submit` or :meth:`drain`. Unlike a failed rollback-mode commit,
the transaction was already acknowledged to SQLite; it is safe in the WAL and recovery writes its
LTX file at the next start. If the node itself is killed, the child still writes every file it was
sent before it exits.
"""

from __future__ import annotations

import collections
import fcntl
import logging
import os
import struct
import subprocess
import threading
from collections.abc import Callable

from litefs.store import ltxwriter_process
from litefs.store.helperproc import start_helper

log = logging.getLogger("litefs.store")

_CHILD = ltxwriter_process.__file__
_FRAME = ltxwriter_process.FRAME
_ACK = ltxwriter_process.ACK
_F_SETPIPE_SZ = 1031
#: Room for a few hundred small LTX files in the pipe, so a busy writer rarely stalls the loop.
_PIPE_SIZE = 1 << 20


class LTXWriteError(OSError):
    """A background LTX write failed (the node must stop; recovery rebuilds the file from the WAL)."""


class LTXWriter:
    """Writes submitted LTX files in order through a child process; see the module docstring."""

    def __init__(self, name: str = "ltx-writer") -> None:
        self._name = name
        self._cond = threading.Condition()
        self._send_lock = threading.Lock()
        self._pending: dict[str, bytes] = {}
        self._order: collections.deque[str] = collections.deque()
        self._submitted = 0
        self._acked = 0
        self._error: BaseException | None = None
        self._closed = False
        self._proc: subprocess.Popen[bytes] | None = None
        self._input = -1
        self._reader: threading.Thread | None = None
        #: Descriptors the writer process keeps open for as long as it runs (the data directory's
        #: lock, so a restarted node waits for a killed node's writer to finish).
        self.inherit_fds: tuple[int, ...] = ()
        #: Called from a background thread with the exception when a write fails.
        self.on_error: Callable[[BaseException], None] | None = None

    @property
    def written(self) -> int:
        """Files written so far (for tests and /debug/vars)."""
        with self._cond:
            return self._acked

    @property
    def pid(self) -> int | None:
        """The writer process's PID, once it runs."""
        return self._proc.pid if self._proc is not None else None

    # -- called from the event loop --------------------------------------------------------------

    def submit(self, path: str, data: bytes) -> None:
        """Queue ``data`` to become ``path``; raises :class:`LTXWriteError` if an earlier write failed."""
        with self._cond:
            self._raise_error()
            if self._closed:
                raise LTXWriteError(f"ltx writer closed: cannot write {path}")
            self._pending[path] = data
            self._order.append(path)
            self._submitted += 1
        encoded = path.encode()
        self._send(_FRAME.pack(len(encoded), len(data)) + encoded, data)

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
            return self._acked == self._submitted

    def drain(self) -> None:
        """Block until every submitted file is on disk; raise :class:`LTXWriteError` if one failed."""
        with self._cond:
            self._raise_error()
            if self._acked == self._submitted:
                return
            target = self._submitted
        self._send(_FRAME.pack(0, 0))  # a flush frame: write now instead of gathering a batch
        with self._cond:
            while self._acked < target and self._error is None:
                self._cond.wait()
            self._raise_error()

    def close(self) -> None:
        """Write what is queued, then stop the process (errors are logged, not raised)."""
        try:
            self.drain()
        except LTXWriteError:
            pass
        with self._cond:
            self._closed = True
        with self._send_lock:
            if self._input >= 0:
                os.close(self._input)  # end of input: the process exits
                self._input = -1
        if self._reader is not None:
            self._reader.join()
            self._reader = None
        if self._proc is not None:
            self._proc.wait()
            self._proc = None

    def _raise_error(self) -> None:
        if self._error is not None:
            raise LTXWriteError(f"writing an LTX file failed earlier: {self._error}") from self._error

    def _send(self, *parts: bytes) -> None:
        with self._send_lock:
            try:
                if self._proc is None:
                    self._start()
                views = [memoryview(part) for part in parts]
                while views:  # one writev per submit; a full pipe takes the rest later
                    written = os.writev(self._input, views)
                    while views and written >= len(views[0]):
                        written -= len(views.pop(0))
                    if written:
                        views[0] = views[0][written:]
            except OSError as exc:  # the process is gone (its reader thread reports why)
                with self._cond:
                    while self._error is None and self._reader is not None and self._reader.is_alive():
                        self._cond.wait(1.0)
                    if self._error is None:
                        self._fail(LTXWriteError(f"{self._name}: cannot send to the writer process: {exc}"))
                    self._raise_error()

    def start(self) -> None:
        """Start the writer process now (otherwise the first :meth:`submit` does).

        Call it before the FUSE mount exists (see :mod:`litefs.store.helperproc`).
        """
        with self._send_lock:
            if self._proc is None:
                self._start()

    def _start(self) -> None:
        in_read, in_write = os.pipe2(os.O_CLOEXEC)
        ack_read, ack_write = os.pipe2(os.O_CLOEXEC)
        try:
            # Errors come back on the ack pipe.
            self._proc = start_helper(
                _CHILD, str(ack_write), pass_fds=(ack_write, *self.inherit_fds), stdin=in_read
            )
        except BaseException:
            os.close(in_write)
            os.close(ack_read)
            raise
        finally:
            os.close(in_read)
            os.close(ack_write)
        self._input = in_write
        try:
            fcntl.fcntl(self._input, _F_SETPIPE_SZ, _PIPE_SIZE)
        except OSError:
            pass  # a smaller pipe only means the loop waits for the writer sooner
        self._reader = threading.Thread(
            target=self._read_acks, args=(ack_read,), name=self._name, daemon=True
        )
        self._reader.start()

    # -- the acknowledgement thread -------------------------------------------------------------

    def _read_acks(self, fd: int) -> None:
        buf = b""
        try:
            while True:
                chunk = os.read(fd, 4096)
                if not chunk:
                    break
                buf += chunk
                while len(buf) >= _ACK.size:
                    (count,) = _ACK.unpack_from(buf)
                    if count >= 0:
                        buf = buf[_ACK.size :]
                        self._acknowledge(count)
                        continue
                    if len(buf) < _ACK.size + 4:
                        break
                    (length,) = struct.unpack_from("<I", buf, _ACK.size)
                    if len(buf) < _ACK.size + 4 + length:
                        break
                    message = buf[_ACK.size + 4 : _ACK.size + 4 + length].decode(errors="replace")
                    self._fail(LTXWriteError(message))
                    return
        finally:
            os.close(fd)
            with self._cond:
                if self._error is None and not self._closed:
                    code = self._proc.poll() if self._proc is not None else None
                    self._fail(LTXWriteError(f"{self._name}: the writer process exited (status {code})"))
                self._cond.notify_all()

    def _acknowledge(self, count: int) -> None:
        with self._cond:
            for _ in range(count - self._acked):
                self._pending.pop(self._order.popleft(), None)
            self._acked = count
            self._cond.notify_all()

    def _fail(self, exc: LTXWriteError) -> None:
        log.error("ltx writer: %s", exc)
        with self._cond:
            if self._error is not None:
                return
            self._error = exc
            self._pending.clear()
            self._order.clear()
            self._cond.notify_all()
        if self.on_error is not None:
            try:
                self.on_error(exc)
            except Exception:  # the loop may be gone (shutdown): the error stays recorded
                log.debug("ltx writer: error callback failed", exc_info=True)


__all__ = ["LTXWriteError", "LTXWriter"]
