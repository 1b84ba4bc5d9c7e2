"""Append a large file without the page cache (``O_DIRECT``): a snapshot's database file on a replica.

Through the page cache each byte written is copied into a newly allocated cache page first;
``perf`` put that copy at nearly half of the replica's CPU during a snapshot (when the replica
still wrote the snapshot's LTX file as well, see :mod:`litefs.store.snaprecord`). With ``O_DIRECT``
the data goes from an aligned buffer to the device, and the only copy left is the one into that
buffer. (The database file was first kept in the cache, as readers use it next; its copy then stood
at a fifth of both nodes' CPU, and readers warm the cache up as they go.)

``O_DIRECT`` wants the buffer address, the length and the file offset aligned to the device's block
size, so bytes are gathered in a page-aligned buffer and written in whole buffers; the last, partial
block is written padded and the file then cut to its real size. Where the file system refuses
``O_DIRECT`` (tmpfs on older kernels, some FUSE or network file systems) the file is written the
ordinary way. Durability is the caller's ``fsync``, as before.
"""

from __future__ import annotations

import errno
import mmap
import os
import threading
from collections.abc import Sequence

#: Alignment of buffer, lengths and offsets: the page size covers every block size in use.
ALIGN = mmap.PAGESIZE
#: Bytes gathered per write.
BUFFER_SIZE = 4 << 20


class DirectAppender:
    """Appends to ``path`` (created empty) with ``O_DIRECT``, or buffered where that is refused.

    Bytes are gathered in one of two aligned buffers; a full buffer is written by a background
    thread while the caller fills the other, so the device's write time overlaps the caller's work
    (``O_DIRECT`` writes wait for the device: done inline they stalled the thread that decodes a
    snapshot for about half its time). A write error surfaces at the next call, or at :meth:`close`.
    """

    def __init__(self, path: str, buffer_size: int = BUFFER_SIZE) -> None:
        self.path = path
        self.size = 0
        """Bytes handed to the device writes (the buffered rest is in :attr:`length`)."""
        self._bufs = [mmap.mmap(-1, buffer_size), mmap.mmap(-1, buffer_size)]
        self._views = [memoryview(b) for b in self._bufs]
        self._buffer_size = buffer_size
        self._view = self._views[0]
        self._fill = 0
        # abandon() may come from another thread while write() runs (a discarded snapshot): the
        # descriptor must not be closed, and its number reused, under a pwrite.
        self._lock = threading.Lock()
        self._idle = threading.Condition()
        self._job: tuple[memoryview, int] | None = None
        self._busy = False
        self._error: BaseException | None = None
        self._closing = False
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC
        o_direct = getattr(os, "O_DIRECT", 0)
        #: False when the file is written through the page cache after all.
        self.direct = bool(o_direct)
        try:
            self._fd = os.open(path, flags | o_direct, 0o644)
        except OSError as exc:
            if exc.errno != errno.EINVAL:
                raise
            self._fd = os.open(path, flags, 0o644)
            self.direct = False
        self._thread = threading.Thread(target=self._writer, name="litefs-direct-write", daemon=True)
        self._thread.start()

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Append ``data``."""
        self.write_many((data,))

    def write_many(self, parts: Sequence[bytes | bytearray | memoryview]) -> None:
        """Append each of ``parts`` in turn (the pages of a run: one lock, a tight loop)."""
        with self._lock:
            if self._fd < 0:
                raise ValueError(f"{self.path}: written after close")
            view, size, fill = self._view, self._buffer_size, self._fill
            for part in parts:
                n = len(part)
                if fill + n <= size:
                    view[fill : fill + n] = part
                    fill += n
                else:
                    self._fill = fill
                    self._write(memoryview(part))
                    view, fill = self._view, self._fill
            self._fill = fill

    @property
    def length(self) -> int:
        """Bytes appended so far (written or still buffered)."""
        return self.size + self._fill

    def _write(self, src: memoryview) -> None:
        while src:
            n = min(len(src), self._buffer_size - self._fill)
            self._view[self._fill : self._fill + n] = src[:n]
            self._fill += n
            src = src[n:]
            if self._fill == self._buffer_size:
                self._submit(self._fill)

    def _submit(self, length: int) -> None:
        """Hand the current buffer's first ``length`` bytes to the writer thread; switch buffers."""
        self._wait_idle()
        with self._idle:
            self._job = (self._view[:length], self.size)
            self._busy = True
            self._idle.notify_all()
        self.size += min(length, self._fill)
        self._fill = 0
        self._view = self._views[1] if self._view is self._views[0] else self._views[0]

    def _wait_idle(self) -> None:
        """Wait for the write in flight; raise its error, if it had one."""
        with self._idle:
            while self._busy:
                self._idle.wait()
            if self._error is not None:
                raise self._error

    def _writer(self) -> None:
        while True:
            with self._idle:
                while self._job is None and not self._closing:
                    self._idle.wait()
                if self._job is None:
                    return
                view, offset = self._job
                self._job = None
            try:
                self._pwrite_all(view, offset)
            except BaseException as exc:  # reported to the caller by _wait_idle
                with self._idle:
                    self._error = exc
            finally:
                view.release()
                with self._idle:
                    self._busy = False
                    self._idle.notify_all()

    def _pwrite_all(self, view: memoryview, offset: int) -> None:
        while view:
            try:
                n = os.pwrite(self._fd, view, offset)
            except OSError as exc:
                if exc.errno != errno.EINVAL or not self.direct:
                    raise
                self._reopen_buffered()  # the file system took the open but not the write
                continue
            view = view[n:]
            offset += n

    def close(self) -> None:
        """Write what is buffered and close; the file then has exactly the bytes written."""
        with self._lock:
            if self._fd < 0:
                return
            self._close()

    def _close(self) -> None:
        try:
            self._wait_idle()
            if self._fill:
                end = self.size + self._fill
                padded = -(-self._fill // ALIGN) * ALIGN
                self._view[self._fill : padded] = bytes(padded - self._fill)
                self._pwrite_all(self._view[:padded], self.size)
                os.ftruncate(self._fd, end)
                self.size = end
                self._fill = 0
        finally:
            self._release()

    def abandon(self) -> None:
        """Close without writing what is buffered (the caller deletes the file); any thread."""
        with self._lock:
            self._release()

    def _release(self) -> None:
        if self._fd < 0:
            return
        with self._idle:  # the write in flight finishes first: its descriptor and buffer stay valid
            while self._busy:
                self._idle.wait()
            self._closing = True
            self._idle.notify_all()
        self._thread.join()
        os.close(self._fd)
        self._fd = -1
        self._view = memoryview(b"")
        for view in self._views:
            view.release()
        for buf in self._bufs:
            buf.close()

    def _reopen_buffered(self) -> None:
        os.close(self._fd)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CLOEXEC)
        self.direct = False


__all__ = ["DirectAppender"]
