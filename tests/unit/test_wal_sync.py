"""SQLite's fsync of the WAL: collecting the early fdatasync, syncing the plain way, and failures.

Uses a unit-test double for the early-sync backend; the real backends are tested in
test_syncproc.py and test_aiosync.py, and through the mount in tests/fuse/test_wal_recovery.py.
"""

from __future__ import annotations

import errno
import os
from types import SimpleNamespace

import pytest

from litefs.store import wal
from litefs.store.database import CommitError


class _FakeEarlySync:
    """A chosen result for the early fdatasync."""

    def __init__(self, result: int | None, failed_fd: int | None = None) -> None:
        self.result = result
        self.failed_fd = failed_fd
        self.forgotten: list[int] = []

    def submit(self, fd: int) -> int | None:
        return 1

    def wait(self, token: int) -> int | None:
        return self.result

    def forget(self, token: int) -> None:
        self.forgotten.append(token)

    def take_failure(self, fd: int) -> int:
        if fd == self.failed_fd:
            self.failed_fd = None
            return errno.EIO
        return 0


def _wal_state(early: _FakeEarlySync, token: int | None):
    return SimpleNamespace(
        _commits_since_sync=1,
        expect_sync=True,
        _sync_token=token,
        db=SimpleNamespace(name="db", early_sync=early),
    )


@pytest.fixture
def plain_syncs(monkeypatch) -> list[tuple[str, int]]:
    calls: list[tuple[str, int]] = []
    monkeypatch.setattr(os, "fdatasync", lambda fd: calls.append(("fdatasync", fd)))
    monkeypatch.setattr(os, "fsync", lambda fd: calls.append(("fsync", fd)))
    return calls


@pytest.mark.parametrize(
    ("result", "datasync", "plain"),
    [
        (0, True, []),  # the early sync covered the request
        (None, True, [("fdatasync", 5)]),  # its result is unknown (a write followed, or none was started)
        (0, False, [("fsync", 5)]),  # a full fsync also wants the metadata
    ],
)
def test_the_plain_sync_runs_only_when_the_early_one_does_not_cover_the_request(
    plain_syncs, result, datasync, plain
) -> None:
    early = _FakeEarlySync(result)
    wal.WALState.sync(_wal_state(early, 7), datasync, 5)
    assert plain_syncs == plain
    assert early.forgotten == ([] if datasync else [7])


def test_a_failed_early_sync_stops_the_node_instead_of_retrying(plain_syncs) -> None:
    """After a failed fdatasync a plain one would succeed (the error is reported once per file), and
    the commit's LTX file already exists: the failure is fatal (CommitError: exit 99)."""
    with pytest.raises(CommitError, match="syncing the WAL failed"):
        wal.WALState.sync(_wal_state(_FakeEarlySync(-errno.EIO), 7), True, 5)
    assert plain_syncs == []


def test_a_failed_sync_nobody_waited_for_fails_the_next_sync_of_that_file(plain_syncs) -> None:
    early = _FakeEarlySync(None, failed_fd=5)
    wal.WALState.sync(_wal_state(early, None), True, 6)  # another file: unaffected
    with pytest.raises(CommitError):
        wal.WALState.sync(_wal_state(early, None), True, 5)
    wal.WALState.sync(_wal_state(early, None), True, 5)  # reported once
    assert plain_syncs == [("fdatasync", 6), ("fdatasync", 5)]


def test_a_failed_plain_sync_is_fatal_too(monkeypatch) -> None:
    def failing(fd: int) -> None:
        raise OSError(errno.ENOSPC, "no space")

    monkeypatch.setattr(os, "fdatasync", failing)
    with pytest.raises(CommitError, match="No space left on device"):
        wal.WALState.sync(_wal_state(_FakeEarlySync(None), None), True, 5)
