"""Asynchronous fdatasync (Linux AIO) used to overlap SQLite's WAL fsync with commit capture."""

from __future__ import annotations

import errno
import os

from litefs.store.aiosync import AsyncSync


def test_submitted_sync_completes_and_reports_success(tmp_path) -> None:
    sync = AsyncSync()
    fd = os.open(tmp_path / "wal", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        os.write(fd, b"x" * 4096)
        token = sync.submit(fd)
        if token is None:  # no AIO on this kernel/file system: callers then sync the plain way
            return
        assert sync.wait(token) == 0
        assert sync.wait(token) is None  # collected once
        assert sync.pending() == 0
    finally:
        os.close(fd)


def test_a_forgotten_sync_is_reaped_and_later_ones_still_work(tmp_path) -> None:
    sync = AsyncSync()
    fd = os.open(tmp_path / "wal", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        first = sync.submit(fd)
        if first is None:
            return
        sync.forget(first)
        os.write(fd, b"y")
        second = sync.submit(fd)
        assert second is not None and sync.wait(second) == 0
        assert sync.wait(first) is None  # forgotten: never reported
        assert sync.take_failure(fd) == 0
    finally:
        os.close(fd)


def test_the_descriptor_may_close_while_the_sync_runs(tmp_path) -> None:
    sync = AsyncSync()
    fd = os.open(tmp_path / "wal", os.O_RDWR | os.O_CREAT, 0o644)
    os.write(fd, b"z" * 8192)
    token = sync.submit(fd)
    os.close(fd)  # the kernel holds its own reference to the file
    if token is not None:
        assert sync.wait(token) == 0


def test_a_bad_descriptor_is_refused(tmp_path) -> None:
    sync = AsyncSync()
    fd = os.open(tmp_path / "wal", os.O_RDWR | os.O_CREAT, 0o644)
    os.close(fd)
    token = sync.submit(fd)
    assert token is None or sync.wait(token) == -errno.EBADF
