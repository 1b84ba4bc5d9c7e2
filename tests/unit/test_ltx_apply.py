"""apply_ltx and write_snapshot: LTX files to database files and back."""

from __future__ import annotations

import io
import os
import shutil
import sqlite3
from pathlib import Path

import pytest

from litefs.ltx import (
    CHECKSUM_FLAG,
    ChecksumTracker,
    Decoder,
    Encoder,
    Header,
    LTXError,
    apply_ltx,
    database_checksum,
    decode_file,
    write_snapshot,
)
from litefs.ltx.apply import read_sqlite_geometry, sqlite_geometry

FIXTURES = Path(
    os.environ.get("LITEFS_LTX_FIXTURES", Path(__file__).resolve().parents[3] / "shared" / "ltx-fixtures")
)
STORE = FIXTURES / "litefs-store-open-and-write-snapshot"
needs_fixtures = pytest.mark.skipif(not FIXTURES.is_dir(), reason=f"LTX fixtures not found at {FIXTURES}")


def make_db(path: Path, rows: int = 200, page_size: int = 4096) -> None:
    con = sqlite3.connect(path)
    try:
        con.execute(f"PRAGMA page_size={page_size}")
        con.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
        con.executemany("INSERT INTO t (v) VALUES (?)", [(f"row {i} " * 20,) for i in range(rows)])
        con.commit()
    finally:
        con.close()


@needs_fixtures
def test_apply_fixture_to_its_database(tmp_path: Path) -> None:
    db = tmp_path / "database"
    shutil.copy(STORE / "database", db)
    before = db.read_bytes()
    tracker = ChecksumTracker.from_file(db, 4096, 10)
    # The database already holds the transaction's result (LiteFS re-applies the newest LTX on open).
    tracker_pre = tracker.copy()
    h, t = apply_ltx(STORE / "000000000000000d-000000000000000d.ltx", db)
    assert db.read_bytes() == before
    assert database_checksum(db, 4096, h.commit) == t.post_apply_checksum == 0xFE3831A381C602B9
    with pytest.raises(LTXError, match="pre-apply checksum mismatch"):
        apply_ltx(STORE / "000000000000000d-000000000000000d.ltx", db, tracker=tracker_pre)


@needs_fixtures
def test_snapshot_of_fixture_database() -> None:
    out = io.BytesIO()
    h, t = write_snapshot(STORE / "database", out, txid=0xD, compress=True, node_id=5, timestamp=1234)
    assert (h.min_txid, h.max_txid, h.commit, h.page_size, h.node_id, h.timestamp) == (
        1,
        0xD,
        10,
        4096,
        5,
        1234,
    )
    assert t.post_apply_checksum == 0xFE3831A381C602B9
    out.seek(0)
    dec = Decoder(out)
    assert [p for p, _ in dec.pages()] == list(range(1, 11))
    assert dec.trailer == t
    assert sqlite_geometry((STORE / "database").read_bytes()[:100], 40960) == (4096, 10)


@pytest.mark.parametrize("compress", [False, True])
@pytest.mark.parametrize("page_size", [512, 4096, 65536])
def test_snapshot_apply_round_trip_with_sqlite(tmp_path: Path, compress: bool, page_size: int) -> None:
    src = tmp_path / "src.db"
    make_db(src, page_size=page_size)
    snap = tmp_path / "snap.ltx"
    with open(snap, "wb") as f:
        h, t = write_snapshot(src, f, txid=3, compress=compress)
    assert read_sqlite_geometry(src) == (page_size, h.commit)
    dst = tmp_path / "dst.db"
    dst.write_bytes(b"stale bytes that must disappear" * 10000)
    tracker = ChecksumTracker(page_size)
    apply_ltx(snap, dst, tracker=tracker, fsync=True)
    assert dst.read_bytes() == src.read_bytes()
    assert tracker.checksum == t.post_apply_checksum
    con = sqlite3.connect(dst)
    try:
        assert con.execute("SELECT count(*) FROM t").fetchone() == (200,)
    finally:
        con.close()


def _ltx(header: Header, pages: dict[int, bytes], post: int | None = None) -> bytes:
    buf = io.BytesIO()
    enc = Encoder(buf, header)
    for p in sorted(pages):
        enc.encode_page(p, pages[p])
    enc.finish(post)
    return buf.getvalue()


def test_incremental_apply_with_tracker_shrinks_and_checks(tmp_path: Path) -> None:
    db = tmp_path / "db"
    snap = _ltx(Header(page_size=512, commit=3, max_txid=1), {1: b"a" * 512, 2: b"b" * 512, 3: b"c" * 512})
    tracker = ChecksumTracker(512)
    _, t1 = apply_ltx(io.BytesIO(snap), db, tracker=tracker)
    want = database_checksum(io.BytesIO(b"z" * 512 + b"b" * 512), 512, 2)
    inc = _ltx(
        Header(page_size=512, commit=2, min_txid=2, max_txid=2, pre_apply_checksum=t1.post_apply_checksum),
        {1: b"z" * 512},
        want,
    )
    apply_ltx(io.BytesIO(inc), db, tracker=tracker)
    assert db.read_bytes() == b"z" * 512 + b"b" * 512
    assert tracker.checksum == want
    # A file whose post-apply checksum lies is caught after applying.
    liar = _ltx(
        Header(page_size=512, commit=2, min_txid=3, max_txid=3, pre_apply_checksum=want),
        {2: b"y" * 512},
        CHECKSUM_FLAG | 1,
    )
    with pytest.raises(LTXError, match="post-apply checksum mismatch"):
        apply_ltx(io.BytesIO(liar), db, tracker=tracker)


def test_corrupt_file_is_not_applied(tmp_path: Path) -> None:
    db = tmp_path / "db"
    db.write_bytes(b"q" * 1024)
    raw = bytearray(_ltx(Header(page_size=512, commit=2, max_txid=1), {1: b"a" * 512, 2: b"b" * 512}))
    raw[200] ^= 1
    with pytest.raises(LTXError, match="checksum mismatch"):
        apply_ltx(io.BytesIO(bytes(raw)), db)
    assert db.read_bytes() == b"q" * 1024


def test_apply_to_open_file_and_deletion(tmp_path: Path) -> None:
    buf = io.BytesIO(b"x" * 2048)
    raw = _ltx(
        Header(page_size=512, commit=0, min_txid=2, max_txid=2, pre_apply_checksum=CHECKSUM_FLAG | 3),
        {},
        CHECKSUM_FLAG,
    )
    h, t = apply_ltx(Decoder(io.BytesIO(raw)), buf)
    assert buf.getvalue() == b"" and h.commit == 0 and t.post_apply_checksum == CHECKSUM_FLAG


def test_write_snapshot_rejects_non_sqlite(tmp_path: Path) -> None:
    bad = tmp_path / "bad.db"
    bad.write_bytes(b"not a database" * 100)
    with pytest.raises(LTXError, match="not a SQLite database"):
        write_snapshot(bad, io.BytesIO(), txid=1, compress=False)
    hdr = bytearray(b"SQLite format 3\0" + bytes(84))
    hdr[16:18] = (3000).to_bytes(2, "big")
    with pytest.raises(LTXError, match="page size 3000"):
        sqlite_geometry(bytes(hdr), 100)
    hdr[16:18] = (1).to_bytes(2, "big")  # 1 means 65536
    assert sqlite_geometry(bytes(hdr), 3 * 65536) == (65536, 3)


def test_decode_file_returns_everything(tmp_path: Path) -> None:
    path = tmp_path / "x.ltx"
    path.write_bytes(_ltx(Header(page_size=512, commit=1, max_txid=1), {1: b"1" * 512}))
    h, pages, t = decode_file(path)
    assert h.commit == 1 and pages == [(1, b"1" * 512)] and t.post_apply_checksum == 0xEB1A999231044DDD


@pytest.mark.slow
def test_sparse_database_across_lock_page_snapshot_and_apply(tmp_path: Path) -> None:
    """A >1 GiB sparse database: snapshot skips the lock page, apply leaves it alone, checksums agree."""
    size = 65536
    lock = 16385
    commit = lock + 2
    src = tmp_path / "src.db"
    hdr = bytearray(b"SQLite format 3\0" + bytes(84))
    hdr[16:18] = (1).to_bytes(2, "big")
    hdr[28:32] = commit.to_bytes(4, "big")
    with open(src, "wb") as f:
        f.truncate(commit * size)
        f.write(hdr)
        for pgno, fill in ((lock - 1, b"b"), (lock, b"L"), (lock + 1, b"c"), (commit, b"d")):
            f.seek((pgno - 1) * size)
            f.write(fill * size)
    snap = io.BytesIO()
    h, t = write_snapshot(src, snap, txid=9, compress=True)
    assert h.commit == commit and len(snap.getvalue()) < 10 << 20
    snap.seek(0)
    tracker = ChecksumTracker(size)
    dst = tmp_path / "dst.db"
    try:
        apply_ltx(snap, dst, tracker=tracker)
        assert tracker.checksum == t.post_apply_checksum == database_checksum(src, size, commit)
        assert database_checksum(dst, size, commit) == t.post_apply_checksum
        with open(dst, "rb") as f:
            f.seek((lock - 1) * size)
            assert f.read(size) == bytes(size)  # the lock page was never written
            assert f.read(size) == b"c" * size
    finally:
        dst.unlink(missing_ok=True)  # 1 GiB of real blocks: do not leave it to pytest's tmp retention
