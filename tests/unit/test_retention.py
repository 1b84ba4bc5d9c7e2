"""LTX retention: which files go, the newest always stays, errors are logged per database."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest
import trio

from litefs.config import Config, DataConfig
from litefs.ltx import format_filename
from litefs.store import Database
from litefs.store.retention import enforce_all, enforce_each, enforce_retention, run_retention

NOW = 1_700_000_000.0


def make_db(tmp_path: Path, name: str = "db", ages: dict[tuple[int, int], float] | None = None) -> Database:
    """A database directory whose ``ltx/`` holds empty files named for (min, max) TXIDs, ``age`` s old."""
    db = Database(name, str(tmp_path / name))
    os.makedirs(db.ltx_dir)
    for (lo, hi), age in (ages or {}).items():
        path = db.ltx_path(lo, hi)
        Path(path).touch()
        os.utime(path, (NOW - age, NOW - age))
    return db


def names(db: Database) -> list[str]:
    return sorted(os.listdir(db.ltx_dir))


def test_removes_expired_files_keeps_newer(tmp_path: Path) -> None:
    db = make_db(tmp_path, ages={(1, 1): 30, (2, 2): 20, (3, 3): 5, (4, 4): 1})
    assert enforce_retention(db, retention=10, now=NOW) == 2
    assert names(db) == [format_filename(3, 3), format_filename(4, 4)]


def test_newest_is_kept_even_when_expired(tmp_path: Path) -> None:
    db = make_db(tmp_path, ages={(t, t): 100 for t in range(1, 11)})
    assert enforce_retention(db, retention=1, now=NOW) == 9
    assert names(db) == ["000000000000000a-000000000000000a.ltx"]
    # A second round finds nothing more to do.
    assert enforce_retention(db, retention=1, now=NOW) == 0
    assert names(db) == ["000000000000000a-000000000000000a.ltx"]


def test_newest_is_the_highest_txid_after_a_snapshot(tmp_path: Path) -> None:
    # A replica's snapshot file 1-4 followed by incremental files 5 and 6.
    db = make_db(tmp_path, ages={(1, 4): 100, (5, 5): 100, (6, 6): 100})
    assert enforce_retention(db, retention=1, now=NOW) == 2
    assert names(db) == [format_filename(6, 6)]


def test_file_exactly_at_the_cutoff_stays(tmp_path: Path) -> None:
    db = make_db(tmp_path, ages={(1, 1): 10, (2, 2): 10.5, (3, 3): 0})
    assert enforce_retention(db, retention=10, now=NOW) == 1
    assert names(db) == [format_filename(1, 1), format_filename(3, 3)]


@pytest.mark.parametrize("retention", [0.0, -1.0])
def test_zero_retention_disables(tmp_path: Path, retention: float) -> None:
    db = make_db(tmp_path, ages={(1, 1): 1e6, (2, 2): 1e6})
    assert enforce_retention(db, retention=retention, now=NOW) == 0
    assert len(names(db)) == 2


def test_other_files_are_left_alone(tmp_path: Path) -> None:
    db = make_db(tmp_path, ages={(1, 1): 100, (2, 2): 100})
    for other in ["notes.txt", format_filename(3, 3) + ".tmp", "0000000000000000-0000000000000001.ltx"]:
        p = os.path.join(db.ltx_dir, other)
        Path(p).touch()
        os.utime(p, (NOW - 100, NOW - 100))
    assert enforce_retention(db, retention=1, now=NOW) == 1
    assert format_filename(1, 1) not in names(db)
    assert len(names(db)) == 4


def test_missing_or_empty_ltx_dir(tmp_path: Path) -> None:
    assert enforce_retention(Database("gone", str(tmp_path / "gone")), retention=1, now=NOW) == 0
    assert enforce_retention(make_db(tmp_path), retention=1, now=NOW) == 0
    db = make_db(tmp_path, "one", ages={(1, 1): 100})
    assert enforce_retention(db, retention=1, now=NOW) == 0
    assert names(db) == [format_filename(1, 1)]


def test_file_vanishing_meanwhile_is_not_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = make_db(tmp_path, ages={(1, 1): 100, (2, 2): 100, (3, 3): 100})
    listed = db.ltx_files()
    os.unlink(db.ltx_path(1, 1))  # removed by someone else after the listing
    monkeypatch.setattr(db, "ltx_files", lambda: listed)
    assert enforce_retention(db, retention=1, now=NOW) == 1
    assert names(db) == [format_filename(3, 3)]


def test_per_db_errors_are_logged_and_others_still_pruned(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    bad = make_db(tmp_path, "bad", ages={(1, 1): 100, (2, 2): 100})
    good = make_db(tmp_path, "good", ages={(1, 1): 100, (2, 2): 100})
    real_unlink = os.unlink

    def unlink(path: str) -> None:
        if path.startswith(bad.ltx_dir):
            raise PermissionError(13, "Permission denied", path)
        real_unlink(path)

    monkeypatch.setattr(os, "unlink", unlink)
    with caplog.at_level(logging.ERROR, logger="litefs.retention"):
        assert enforce_all([bad, good], retention=1, now=NOW) == 1
    assert names(good) == [format_filename(2, 2)]
    assert len(names(bad)) == 2
    (record,) = caplog.records
    assert record.getMessage().startswith("bad: retention failed")
    assert bad.ltx_path(1, 1) in record.getMessage()


class _Store:
    def __init__(self, dbs: list[Database]) -> None:
        self._dbs = dbs

    def dbs(self) -> list[Database]:
        return list(self._dbs)


def _config(retention: float, interval: float) -> Config:
    return Config(data=DataConfig(dir="/unused", retention=retention, retention_monitor_interval=interval))


async def test_run_retention_prunes_periodically(tmp_path: Path) -> None:
    db = make_db(tmp_path, ages={(1, 1): 100, (2, 2): 100})
    store = _Store([db])
    async with trio.open_nursery() as nursery:
        nursery.start_soon(run_retention, store, _config(1.0, 0.01))
        with trio.fail_after(5):
            while len(names(db)) != 1:
                await trio.sleep(0.01)
        # Files added later (a new database too) are picked up by the following rounds.
        late = make_db(tmp_path, "late", ages={(1, 1): 100, (2, 2): 100})
        store._dbs.append(late)
        with trio.fail_after(5):
            while len(names(late)) != 1:
                await trio.sleep(0.01)
        nursery.cancel_scope.cancel()
    assert names(db) == [format_filename(2, 2)]


@pytest.mark.parametrize(("retention", "interval"), [(0.0, 0.01), (1.0, 0.0)])
async def test_run_retention_disabled_returns(tmp_path: Path, retention: float, interval: float) -> None:
    db = make_db(tmp_path, ages={(1, 1): 100, (2, 2): 100})
    with trio.fail_after(1):
        await run_retention(_Store([db]), _config(retention, interval))  # type: ignore[arg-type]
    assert len(names(db)) == 2


def test_enforce_each_reports_removals_per_database(tmp_path: Path) -> None:
    a = make_db(tmp_path, "a", ages={(1, 1): 100, (2, 2): 100, (3, 3): 100})
    b = make_db(tmp_path, "b", ages={(1, 1): 100})  # only the newest: nothing to remove
    c = make_db(tmp_path, "c", ages={(1, 1): 100, (2, 2): 0})
    assert enforce_each([a, b, c], retention=10, now=NOW) == {"a": 2, "c": 1}


async def test_run_retention_tells_the_listener_on_the_trio_thread(tmp_path: Path) -> None:
    import threading

    db = make_db(tmp_path, ages={(1, 1): 100, (2, 2): 100, (3, 3): 100})
    calls: list[tuple[str, int, bool]] = []

    def on_reaped(name: str, files: int) -> None:
        calls.append((name, files, threading.current_thread() is threading.main_thread()))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(run_retention, _Store([db]), _config(1.0, 0.01), on_reaped)
        with trio.fail_after(5):
            while not calls:
                await trio.sleep(0.01)
        await trio.sleep(0.05)  # later rounds remove nothing and report nothing
        nursery.cancel_scope.cancel()
    assert calls == [("db", 2, True)]
