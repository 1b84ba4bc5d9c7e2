"""lock_wal_checkpoints: SQLite's WAL read locks hold checkpoints and WAL restarts back (plain files
here, where OFD locks meet SQLite's locks as they do through the mount; the mount case is
tests/cluster/test_snapshots.py)."""

from __future__ import annotations

import fcntl
import os
import sqlite3
import struct

import pytest

from litefs.fuse.locks import WAL_READ0_BYTE, LockTimeoutError, lock_wal_checkpoints, unlock


def wal_db(path: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, timeout=0.1)
    conn.execute("PRAGMA journal_mode=wal")
    conn.execute("PRAGMA wal_autocheckpoint=0")
    conn.execute("CREATE TABLE t (x)")
    conn.execute("INSERT INTO t VALUES (1)")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return conn


def test_no_checkpoint_or_restart_while_held(tmp_path) -> None:
    path = str(tmp_path / "db")
    conn = wal_db(path)
    fd = lock_wal_checkpoints(path, timeout=1.0)
    assert fd is not None
    try:
        for i in range(5):
            conn.execute("INSERT INTO t VALUES (?)", [i])
        busy, log, done = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        assert log > 0 and done == 0  # not a frame copied
        assert conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0] == 1  # busy
        # Readers and writers are not held up.
        other = sqlite3.connect(path, isolation_level=None, timeout=0.1)
        assert other.execute("SELECT count(*) FROM t").fetchone() == (6,)
        other.execute("INSERT INTO t VALUES (7)")
        other.close()
    finally:
        unlock(fd)
    assert conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone() == (0, 0, 0)
    assert os.path.getsize(path + "-wal") == 0
    assert conn.execute("SELECT count(*) FROM t").fetchone() == (7,)


def test_no_shm_means_nothing_to_hold(tmp_path) -> None:
    path = str(tmp_path / "db")
    wal_db(path).close()  # the last connection removes -wal and -shm
    assert not os.path.exists(path + "-shm")
    assert lock_wal_checkpoints(path, timeout=0.1) is None
    assert not os.path.exists(path + "-shm")


def test_a_running_checkpoint_is_waited_for_then_a_timeout_names_the_lock(tmp_path) -> None:
    path = str(tmp_path / "db")
    conn = wal_db(path)
    # What a checkpointer copying frames holds: READ0 exclusively.
    other = os.open(path + "-shm", os.O_RDWR)
    flock = struct.pack("hhqqixxxx", fcntl.F_WRLCK, os.SEEK_SET, WAL_READ0_BYTE, 1, 0)
    fcntl.fcntl(other, fcntl.F_OFD_SETLK, flock)
    try:
        with pytest.raises(LockTimeoutError, match=f"{WAL_READ0_BYTE:#x}"):
            lock_wal_checkpoints(path, timeout=0.05)
    finally:
        os.close(other)
    fd = lock_wal_checkpoints(path, timeout=0.05)
    assert fd is not None
    unlock(fd)
    conn.close()
