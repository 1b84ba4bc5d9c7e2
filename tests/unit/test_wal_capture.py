"""WAL commit capture from the in-memory copy of the frames (WALState.tail) and its file fallback.

A real SQLite WAL is written in a plain directory, then replayed write by write into a store's WAL
(header, then each frame as SQLite writes it: a 24-byte header and a page) -- the same calls the FUSE
layer makes. No mount is needed: this is the unit level under tests/fuse/test_wal.py.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from litefs.store import wal as walmod
from litefs.store.names import FileKind
from litefs.store.store import Store


def _make_wal(tmp: Path, statements: list[str]) -> tuple[Path, bytes]:
    """(base database file, WAL bytes of ``statements`` run on it, one transaction each)."""
    path = tmp / "gen.db"
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=wal")
    conn.execute("PRAGMA wal_autocheckpoint=0")
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB)")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    base = tmp / "base.db"
    base.write_bytes(path.read_bytes())
    for sql in statements:
        conn.execute(sql)
    wal = (tmp / "gen.db-wal").read_bytes()
    conn.close()
    return base, wal


def _frames(wal: bytes) -> Iterator[tuple[int, bytes, bytes]]:
    frame_size = 24 + int.from_bytes(wal[8:12], "big")
    off = 32
    while off + frame_size <= len(wal):
        yield off, wal[off : off + 24], wal[off + 24 : off + frame_size]
        off += frame_size


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    st = Store(str(tmp_path / "data"), strict_verify=True)  # every commit re-checks the position
    st.open()
    st.is_primary = True
    yield st
    st.close()


def _replay(store: Store, base: Path, wal: bytes, tamper=None) -> int:  # noqa: ANN001
    db = store.create_db("db")
    db.import_database(str(base), notify=False)
    start = db.pos.txid
    fd = db.open_file(FileKind.WAL, os.O_RDWR | os.O_CREAT)
    try:
        db.write_wal(fd, 0, wal[:32])
        for off, head, page in _frames(wal):
            db.write_wal(fd, off, head)
            if tamper is not None:
                tamper(db.wal, off)
            db.write_wal(fd, off + 24, page)
    finally:
        os.close(fd)
    store.ltx_writer.drain()
    return db.pos.txid - start


def test_every_transaction_is_captured_from_memory(store: Store, tmp_path: Path) -> None:
    stmts = [f"INSERT INTO t (v) VALUES (randomblob({100 + i}))" for i in range(50)]
    base, wal = _make_wal(tmp_path, stmts)
    assert _replay(store, base, wal) == 50
    db = store.db("db")
    assert db.wal.tail == bytearray()  # nothing uncommitted left over
    files = db.ltx_files()
    assert [f[0] for f in files][-50:] == list(range(db.pos.txid - 49, db.pos.txid + 1))


def test_a_stale_copy_is_ignored_and_the_file_decides(store: Store, tmp_path: Path) -> None:
    base, wal = _make_wal(tmp_path, [f"INSERT INTO t (v) VALUES ({i})" for i in range(5)])

    def corrupt(state: walmod.WALState, off: int) -> None:
        if state.tail is not None and len(state.tail) >= 24:
            state.tail[0] ^= 0xFF  # as if the file had been changed behind the node's back

    assert _replay(store, base, wal, tamper=corrupt) == 5


def test_a_transaction_bigger_than_the_copy_limit_is_read_back(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(walmod, "TAIL_LIMIT", 3 * 4120)
    big = "INSERT INTO t (v) SELECT randomblob(3000) FROM (WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL "
    big += "SELECT i + 1 FROM s WHERE i < 20) SELECT i FROM s)"
    base, wal = _make_wal(tmp_path, [big, "INSERT INTO t (v) VALUES (1)"])
    seen = []
    assert _replay(store, base, wal, tamper=lambda state, off: seen.append(state.tail is None)) == 2
    assert True in seen  # the big transaction was read back from the file ...
    assert seen[-1] is False  # ... and the copy was back in use for the next one
