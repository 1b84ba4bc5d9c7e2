"""Append a large file without the page cache (``O_DIRECT``): a snapshot's files on a replica.

A replica receiving a 1 GB snapshot writes it twice: the LTX file as received and the database
file built from it. Through the page cache each byte is copied into a newly allocated cache page
first; ``perf`` put that copy at nearly half of the replica's CPU during a snapshot. Both are
written with ``O_DIRECT``: the data goes from an aligned buffer to the device, and the only copy
left is the one into that buffer. (The database file was first kept in the cache, as readers use
it next; its copy then stood at a fifth of both nodes' CPU, and readers warm the cache up as they
go.)

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
    """Appends to ``path`` (created empty) with ``O_DIRECT``, or buffered where that is refused."""

    def __init__(self, path: str, buffer_size: int = BUFFER_SIZE) -> None:
        self.path = path
        self.size = 0
        self._buf = mmap.mmap(-1, buffer_size)
        self._view = memoryview(self._buf)
        self._fill = 0
        # abandon() may come from another thread while write() runs (a discarded snapshot): the
        # descriptor must not be closed, and its number reused, under a pwrite.
        self._lock = threading.Lock()
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

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Append ``data``."""
        self.write_many((data,))

    def write_many(self, parts: Sequence[bytes | bytearray | memoryview]) -> None:
        """Append each of ``parts`` in turn (the pages of a run: one lock, a tight loop)."""
        with self._lock:
            if self._fd < 0:
                raise ValueError(f"{self.path}: written after close")
            view, size, fill = self._view, len(self._buf), self._fill
            for part in parts:
                n = len(part)
                if fill + n <= size:
                    view[fill : fill + n] = part
                    fill += n
                else:
                    self._fill = fill
                    self._write(memoryview(part))
                    fill = self._fill
            self._fill = fill

    @property
    def length(self) -> int:
        """Bytes appended so far (written or still buffered)."""
        return self.size + self._fill

    def _write(self, src: memoryview) -> None:
        while src:
            n = min(len(src), len(self._buf) - self._fill)
            self._view[self._fill : self._fill + n] = src[:n]
            self._fill += n
            src = src[n:]
            if self._fill == len(self._buf):
                self._flush(self._fill)

    def close(self) -> None:
        """Write what is buffered and close; the file then has exactly the bytes written."""
        with self._lock:
            if self._fd < 0:
                return
            self._close()

    def _close(self) -> None:
        try:
            if self._fill:
                end = self.size + self._fill
                padded = -(-self._fill // ALIGN) * ALIGN
                self._view[self._fill : padded] = bytes(padded - self._fill)
                self._flush(padded)
                os.ftruncate(self._fd, end)
                self.size = end
        finally:
            self._release()

    def abandon(self) -> None:
        """Close without writing what is buffered (the caller deletes the file); any thread."""
        with self._lock:
            self._release()

    def _release(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
            self._view.release()
            self._buf.close()

    def _flush(self, length: int) -> None:
        view = self._view[:length]
        offset = self.size
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
        self.size += min(length, self._fill)
        self._fill = 0

    def _reopen_buffered(self) -> None:
        os.close(self._fd)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CLOEXEC)
        self.direct = False


__all__ = ["DirectAppender"]
