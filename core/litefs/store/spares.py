"""Empty files made ahead of time for the LTX files of rollback-journal commits.

A rollback-mode commit must leave its LTX file durable before SQLite's journal invalidation is
answered. Written the plain way that costs, on the event-loop thread: create a temp file, write,
fdatasync, rename, and fsync the directory so the new name survives a crash. Creating an inode is
the slow step on some file systems (ext4 without a journal scans recently freed inodes: 20-300 us
per create on the 2-vCPU test host, worst right after many files were deleted), and the directory
fsync is a second device flush per commit.

:class:`SparePool` moves both off the commit path. Its thread creates a few empty files named
``.spare-<hex>`` in the ``ltx/`` directory and fsyncs the directory, so their names are durable
before any commit uses them. A commit writes its LTX file into a spare, fdatasyncs it and renames it
to ``<min>-<max>.ltx`` without syncing the directory. If the node dies before that rename reaches
the disk, the complete, checksummed LTX file is still on disk under its spare name, and startup
recovery (``Database.recover``) renames it into place when it is the next TXID. Empty or damaged
spares, and spares holding anything else, are deleted at startup.
"""

from __future__ import annotations

import collections
import logging
import os
import threading
import time

from litefs.store.fsutil import fsync_dir, remove_quietly

log = logging.getLogger("litefs.store")

#: Name prefix of spare files in ``ltx/`` (never matches the LTX file name pattern).
SPARE_PREFIX = ".spare-"


def is_spare(fname: str) -> bool:
    return fname.startswith(SPARE_PREFIX)


class SparePool:
    """A thread that keeps up to ``target`` durable empty files ready in ``directory`` (refilled
    when half are used); see the module doc."""

    def __init__(self, directory: str, *, target: int = 8) -> None:
        self.directory = directory
        self.target = target
        self._cond = threading.Condition()
        self._ready: collections.deque[tuple[int, str]] = collections.deque()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._failed = False
        self._seq = 0
        #: Spares handed out (for tests and /debug/vars).
        self.taken = 0

    def take(self) -> tuple[int, str] | None:
        """A ready spare as (open read-write descriptor, path), or None (then write the plain way).

        The first call starts the thread and returns None, so nodes that never commit (replicas)
        never make spares.
        """
        with self._cond:
            if self._closed or self._failed:
                return None
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="ltx-spares", daemon=True)
                self._thread.start()
                return None
            spare = self._ready.popleft() if self._ready else None
            if spare is not None:
                self.taken += 1
            if len(self._ready) <= self.target // 2:
                self._cond.notify()  # refill in batches: one wakeup and directory fsync per batch
            return spare

    def close(self) -> None:
        """Stop the thread and delete the spares not used; a later :meth:`take` starts over."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
            thread, self._thread = self._thread, None
        if thread is not None:
            thread.join()
        with self._cond:
            while self._ready:
                fd, path = self._ready.popleft()
                os.close(fd)
                remove_quietly(path)
            self._closed = False

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._closed and len(self._ready) > self.target // 2:
                    self._cond.wait()
                if self._closed:
                    return
                missing = self.target - len(self._ready)
            try:
                made = self._make(missing)
            except OSError as exc:
                # Commits go on the plain way; nothing is lost.
                log.warning("ltx spares: cannot create spare files in %s: %s", self.directory, exc)
                with self._cond:
                    self._failed = True
                return
            with self._cond:
                if self._closed:
                    self._ready.extend(made)  # close() deletes them
                    return
                self._ready.extend(made)

    def _make(self, count: int) -> list[tuple[int, str]]:
        made: list[tuple[int, str]] = []
        os.makedirs(self.directory, exist_ok=True)
        try:
            for _ in range(count):
                self._seq += 1
                path = os.path.join(self.directory, f"{SPARE_PREFIX}{time.time_ns():x}-{self._seq:x}")
                fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
                made.append((fd, path))
            fsync_dir(self.directory)  # the names must be durable before a commit relies on them
        except BaseException:
            for fd, path in made:
                os.close(fd)
                remove_quietly(path)
            raise
        return made


__all__ = ["SPARE_PREFIX", "SparePool", "is_spare"]
