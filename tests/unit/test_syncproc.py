"""The WAL syncer child process (litefs.store.syncproc): real process, real files."""

from __future__ import annotations

import errno
import os
import signal
from collections.abc import Iterator

import pytest

from litefs.store import syncproc
from litefs.store.aiosync import ASYNC_SYNC
from litefs.store.syncproc import ProcessSync


@pytest.fixture
def sync() -> Iterator[ProcessSync]:
    s = ProcessSync()
    s.start()
    assert s.pid is not None
    try:
        yield s
    finally:
        s.close()


@pytest.fixture
def wal_fd(tmp_path) -> Iterator[int]:
    fd = os.open(tmp_path / "wal", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        yield fd
    finally:
        os.close(fd)


def _kill(sync: ProcessSync) -> None:
    assert sync.pid is not None
    os.kill(sync.pid, signal.SIGKILL)
    assert sync._proc is not None
    sync._proc.wait()


def test_a_submitted_sync_completes_and_is_collected_once(sync: ProcessSync, wal_fd: int) -> None:
    os.write(wal_fd, b"x" * 4096)
    token = sync.submit(wal_fd)
    assert token is not None
    assert sync.wait(token) == 0
    assert sync.wait(token) is None
    assert sync.pending() == 0


def test_a_forgotten_sync_is_reaped_and_later_ones_still_work(sync: ProcessSync, wal_fd: int) -> None:
    first = sync.submit(wal_fd)
    assert first is not None
    sync.forget(first)
    second = sync.submit(wal_fd)
    assert second is not None and sync.wait(second) == 0
    assert sync.wait(first) is None  # forgotten: never reported
    assert sync.take_failure(wal_fd) == 0


def test_the_descriptor_may_close_right_after_submitting(sync: ProcessSync, tmp_path) -> None:
    fd = os.open(tmp_path / "wal", os.O_RDWR | os.O_CREAT, 0o644)
    os.write(fd, b"z" * 8192)
    token = sync.submit(fd)
    os.close(fd)  # the child got its own reference to the open file
    assert token is not None and sync.wait(token) == 0


def test_a_bad_descriptor_is_refused_and_the_process_stays(sync: ProcessSync, tmp_path, wal_fd: int) -> None:
    fd = os.open(tmp_path / "other", os.O_RDWR | os.O_CREAT, 0o644)
    os.close(fd)
    assert sync.submit(fd) is None
    token = sync.submit(wal_fd)
    assert token is not None and sync.wait(token) == 0


def test_a_sync_in_flight_when_the_process_dies_counts_as_failed(sync: ProcessSync, wal_fd: int) -> None:
    """Its outcome is unknown, and the child may have taken the file's write-back error with it."""
    assert sync.pid is not None
    os.kill(sync.pid, signal.SIGSTOP)  # hold the request
    token = sync.submit(wal_fd)
    assert token is not None
    _kill(sync)
    assert sync.wait(token) == -errno.EIO
    assert sync.submit(wal_fd) is None  # from now on SQLite's fsyncs run the plain way


def test_a_forgotten_sync_in_flight_when_the_process_dies_fails_the_next_sync(
    sync: ProcessSync, wal_fd: int
) -> None:
    assert sync.pid is not None
    os.kill(sync.pid, signal.SIGSTOP)
    token = sync.submit(wal_fd)
    assert token is not None
    sync.forget(token)
    _kill(sync)
    assert sync.submit(wal_fd) is None  # notices the loss while reaping the forgotten one
    assert sync.take_failure(wal_fd) == errno.EIO
    assert sync.take_failure(wal_fd) == 0  # reported once


def test_the_process_dying_between_syncs_only_ends_early_syncs(sync: ProcessSync, wal_fd: int) -> None:
    _kill(sync)
    assert sync.submit(wal_fd) is None
    assert sync.take_failure(wal_fd) == 0


def test_too_many_syncs_in_flight_fall_back_to_the_plain_way(sync: ProcessSync, wal_fd: int) -> None:
    assert sync.pid is not None
    os.kill(sync.pid, signal.SIGSTOP)
    try:
        tokens = [sync.submit(wal_fd) for _ in range(syncproc.MAX_IN_FLIGHT)]
        assert None not in tokens
        assert sync.submit(wal_fd) is None
    finally:
        os.kill(sync.pid, signal.SIGCONT)
    assert [sync.wait(t) for t in tokens if t is not None] == [0] * syncproc.MAX_IN_FLIGHT


def test_the_backend_is_chosen_by_cpu_count(monkeypatch) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0})
    assert syncproc.new_early_sync() is ASYNC_SYNC
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1})
    assert isinstance(syncproc.new_early_sync(), ProcessSync)
