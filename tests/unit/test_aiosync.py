"""Asynchronous fdatasync (Linux AIO) used to overlap SQLite's WAL fsync with commit capture."""

from __future__ import annotations

import errno
import os

import pytest

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


class _FakeAsyncSync:
    """A unit-test double for the kernel's side: a chosen result for the early fdatasync."""

    def __init__(self, result: int | None, failed_fd: int | None = None) -> None:
        self.result = result
        self.failed_fd = failed_fd
        self.forgotten: list[int] = []

    def wait(self, token: int) -> int | None:
        return self.result

    def forget(self, token: int) -> None:
        self.forgotten.append(token)

    def take_failure(self, fd: int) -> int:
        if fd == self.failed_fd:
            self.failed_fd = None
            return errno.EIO
        return 0


def _wal_state(token: int | None):
    from types import SimpleNamespace

    return SimpleNamespace(
        _commits_since_sync=1, expect_sync=True, _sync_token=token, db=SimpleNamespace(name="db")
    )


@pytest.mark.parametrize(
    ("result", "datasync", "expected"),
    [(0, True, True), (None, True, False), (0, False, False)],  # covered / unknown / full fsync wanted
)
def test_sql_fsync_is_skipped_only_when_the_early_sync_covered_it(
    monkeypatch, result, datasync, expected
) -> None:
    from litefs.store import wal

    monkeypatch.setattr(wal, "ASYNC_SYNC", _FakeAsyncSync(result))
    assert wal.WALState.sync_requested(_wal_state(7), datasync, 5) is expected


def test_a_failed_early_sync_is_an_error_not_a_silent_retry(monkeypatch) -> None:
    """After a failed fdatasync a plain one would succeed (the error is reported once per file)."""
    from litefs.store import wal

    monkeypatch.setattr(wal, "ASYNC_SYNC", _FakeAsyncSync(-errno.EIO))
    with pytest.raises(OSError) as exc:
        wal.WALState.sync_requested(_wal_state(7), True, 5)
    assert exc.value.errno == errno.EIO


def test_a_failed_sync_nobody_waited_for_fails_the_next_fsync_of_that_file(monkeypatch) -> None:
    from litefs.store import wal

    monkeypatch.setattr(wal, "ASYNC_SYNC", _FakeAsyncSync(None, failed_fd=5))
    assert wal.WALState.sync_requested(_wal_state(None), True, 6) is False  # another file: unaffected
    with pytest.raises(OSError) as exc:
        wal.WALState.sync_requested(_wal_state(None), True, 5)
    assert exc.value.errno == errno.EIO
    assert wal.WALState.sync_requested(_wal_state(None), True, 5) is False  # reported once
