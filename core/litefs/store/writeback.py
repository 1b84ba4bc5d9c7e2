"""Ask the kernel to start writing a file's dirty pages while the file is still being written.

A snapshot writes a whole database (and its LTX file) at disk speed; left alone, the kernel keeps
most of it dirty in memory until the final ``fsync``, which then waits for all of it. Starting the
writeback every few MiB (Linux ``sync_file_range(SYNC_FILE_RANGE_WRITE)``, which does not wait)
overlaps the disk writes with receiving, so the final ``fsync`` finds little left to do.
"""

from __future__ import annotations

import ctypes

from litefs.libc import libc_function

#: Bytes written between two writeback requests.
WRITEBACK_EVERY = 16 << 20

_SYNC_FILE_RANGE_WRITE = 2


_sync_file_range = libc_function(
    "sync_file_range", [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
)


class WritebackPacer:
    """Tell it how far a file has been written (:meth:`wrote`); it starts the writeback in steps."""

    def __init__(self, fd: int, every: int = WRITEBACK_EVERY) -> None:
        self.fd = fd
        self.every = every
        self._started = 0

    def wrote(self, end: int) -> None:
        """The file is written up to offset ``end`` (a snapshot writes it front to back)."""
        if end - self._started < self.every or _sync_file_range is None:
            return
        # A failure here only means the final fsync has more to do (and reports any real I/O error).
        _sync_file_range(self.fd, self._started, end - self._started, _SYNC_FILE_RANGE_WRITE)
        self._started = end
