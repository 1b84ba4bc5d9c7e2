"""WAL-index header: byte-exact against SQLite's own, and accepted by a live SQLite connection."""

from __future__ import annotations

import os
import sqlite3
import struct
from pathlib import Path

import pytest

from litefs.sqlite import (
    SHM_BLOCK_SIZE,
    WAL_INDEX_HEADER_REGION,
    DatabaseHeader,
    SQLiteFormatError,
    build_wal_index_header,
    parse_wal_index_header,
)


def open_wal(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    assert conn.execute("pragma journal_mode=wal").fetchone()[0] == "wal"
    conn.execute("pragma wal_autocheckpoint=0")
    return conn


def rebuild(shm: bytes, **changes: object) -> bytes:
    """Our header built from the fields of an existing one, with some changed."""
    h = parse_wal_index_header(shm)
    fields = {
        "change_counter": h.change_counter,
        "page_size": h.page_size,
        "page_count": h.page_count,
        "frame_checksum": h.frame_checksum,
        "salts": h.salts,
        "big_endian_checksum": h.big_endian_checksum,
    }
    fields.update(changes)
    return build_wal_index_header(**fields)  # type: ignore[arg-type]


def test_header_is_byte_exact_with_sqlite_after_truncating_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "db"
    conn = open_wal(path)
    try:
        conn.execute("create table t(x)")
        conn.execute("insert into t values (1)")
        conn.execute("pragma wal_checkpoint(truncate)")
        real = Path(f"{path}-shm").read_bytes()[:WAL_INDEX_HEADER_REGION]
    finally:
        conn.close()
    parsed = parse_wal_index_header(real)
    assert parsed.valid and parsed.max_frame == 0
    ours = rebuild(real)
    # SQLite's truncating checkpoint leaves readMark[1] at 0; LiteFS (and we) mark it unused.
    assert ours[:96] == real[:96]
    assert parse_wal_index_header(ours).read_marks == (0, 0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF)


def test_salts_match_wal_header(tmp_path: Path) -> None:
    path = tmp_path / "db"
    conn = open_wal(path)
    try:
        conn.execute("create table t(x)")
        wal = Path(f"{path}-wal").read_bytes()
        h = parse_wal_index_header(Path(f"{path}-shm").read_bytes())
    finally:
        conn.close()
    assert h.salts == struct.unpack_from(">II", wal, 16)
    assert h.max_frame > 0 and h.valid


def test_build_and_parse_round_trip() -> None:
    data = build_wal_index_header(
        change_counter=0xFFFFFFFF + 5,
        page_size=65536,
        page_count=123,
        frame_checksum=(1, 2),
        salts=(0xDEADBEEF, 7),
        big_endian_checksum=True,
    )
    assert len(data) == WAL_INDEX_HEADER_REGION == 136
    assert data[:48] == data[48:96]
    assert struct.unpack_from("=H", data, 14) == (1,)  # 65536 stored as 1
    assert data[32:40] == bytes.fromhex("deadbeef00000007")  # salts in WAL-header byte order
    h = parse_wal_index_header(data)
    assert h.valid and h.version == 3007000 and h.is_init == 1
    assert (h.change_counter, h.page_size, h.page_count, h.max_frame) == (4, 65536, 123, 0)
    assert (h.frame_checksum, h.salts, h.big_endian_checksum) == ((1, 2), (0xDEADBEEF, 7), True)
    assert (h.n_backfill, h.n_backfill_attempted) == (0, 0)


def test_parse_reports_damage() -> None:
    data = bytearray(
        build_wal_index_header(
            change_counter=1,
            page_size=4096,
            page_count=1,
            frame_checksum=(0, 0),
            salts=(0, 0),
            big_endian_checksum=False,
        )
    )
    data[8] ^= 1
    h = parse_wal_index_header(bytes(data))
    assert not h.valid and not h.copies_match and not h.checksum_valid
    with pytest.raises(SQLiteFormatError, match="135 bytes"):
        parse_wal_index_header(bytes(data[:135]))
    with pytest.raises(SQLiteFormatError, match="page size 1000"):
        build_wal_index_header(
            change_counter=1,
            page_size=1000,
            page_count=1,
            frame_checksum=(0, 0),
            salts=(0, 0),
            big_endian_checksum=False,
        )


def test_rewritten_header_makes_open_connection_see_new_pages(tmp_path: Path) -> None:
    """What LiteFS does on a replica: pages go into the database file, then the shm header is rewritten.

    The test's connection stays open (so SQLite keeps the shm and its page cache); the database file is
    replaced behind its back by a grown version, and only our header tells SQLite about it.
    """
    path = tmp_path / "db"
    conn = open_wal(path)
    try:
        conn.execute("create table t(id integer primary key, v text)")
        conn.execute("insert into t(v) values ('a'), ('b')")
        conn.execute("pragma wal_checkpoint(truncate)")
        assert conn.execute("select count(*) from t").fetchone() == (2,)  # pages now cached

        # Build the next version of the database elsewhere, with SQLite, then checkpoint it fully.
        other = tmp_path / "other"
        other.mkdir()
        next_db = other / "db"
        next_db.write_bytes(path.read_bytes())
        writer = open_wal(next_db)
        writer.execute(
            "with recursive s(n) as (select 1 union all select n + 1 from s where n < 300)"
            " insert into t(v) select hex(randomblob(100)) from s"
        )
        writer.execute("pragma wal_checkpoint(truncate)")
        writer.close()
        new_bytes = next_db.read_bytes()
        new_header = DatabaseHeader.parse(new_bytes)
        assert new_header.is_wal and new_header.page_count > 2

        # Behind SQLite's back: new database bytes, then our WAL-index header.
        with path.open("r+b") as f:
            f.write(new_bytes)
        shm = Path(f"{path}-shm")
        old = shm.read_bytes()
        header = rebuild(
            old,
            change_counter=parse_wal_index_header(old).change_counter + 1,
            page_count=new_header.page_count,
        )
        with shm.open("r+b") as f:
            f.write(header)
            f.truncate(SHM_BLOCK_SIZE)
        assert os.path.getsize(shm) == SHM_BLOCK_SIZE

        assert conn.execute("select count(*) from t").fetchone() == (302,)
        assert conn.execute("pragma integrity_check").fetchone() == ("ok",)
        reader = sqlite3.connect(path)
        try:
            assert reader.execute("select count(*), max(id) from t").fetchone() == (302, 302)
        finally:
            reader.close()
        # SQLite keeps writing on top of it: the WAL restarts from the state we described.
        conn.execute("insert into t(v) values ('after')")
        assert conn.execute("select count(*) from t").fetchone() == (303,)
        conn.execute("pragma wal_checkpoint(truncate)")
        assert conn.execute("pragma integrity_check").fetchone() == ("ok",)
    finally:
        conn.close()
