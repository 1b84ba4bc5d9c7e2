"""The 100-byte database header."""

from __future__ import annotations

import os
import sqlite3
import struct
from pathlib import Path

import pytest

from litefs.sqlite import SQLITE_HEADER_MAGIC, DatabaseHeader, SQLiteFormatError, lock_page

FIXTURE_DB = Path(os.environ["LITEFS_LTX_FIXTURES"]) / "litefs-store-open-and-write-snapshot" / "database"


def test_fixture_database_header() -> None:
    if not FIXTURE_DB.exists():
        pytest.skip(f"fixture {FIXTURE_DB} not present")
    h = DatabaseHeader.parse(FIXTURE_DB.read_bytes())
    assert (h.page_size, h.page_count, h.change_counter, h.version_valid_for) == (4096, 10, 10, 10)
    assert (h.write_version, h.read_version, h.is_wal) == (1, 1, False)


@pytest.mark.parametrize(("mode", "is_wal"), [("delete", False), ("wal", True)])
def test_real_database_header(tmp_path: Path, mode: str, is_wal: bool) -> None:
    path = tmp_path / "db"
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("pragma page_size=65536")
        conn.execute(f"pragma journal_mode={mode}")
        conn.execute("pragma user_version=7")
        conn.execute("create table t(x)")
        conn.execute("insert into t values (1)")
        conn.execute("pragma wal_checkpoint(truncate)")
    finally:
        conn.close()
    h = DatabaseHeader.parse(path.read_bytes()[:100])
    assert h.page_size == 65536 and h.is_wal is is_wal
    assert h.page_count == path.stat().st_size // 65536
    assert h.user_version == 7
    assert (
        h.sqlite_version
        == sqlite3.sqlite_version_info[0] * 1000000
        + sqlite3.sqlite_version_info[1] * 1000
        + (sqlite3.sqlite_version_info[2])
    )


def header(**fields: int) -> bytes:
    data = bytearray(SQLITE_HEADER_MAGIC + bytes(84))
    struct.pack_into(">H", data, 16, fields.get("page_size", 4096))
    data[18] = data[19] = fields.get("version", 1)
    struct.pack_into(">I", data, 28, fields.get("page_count", 3))
    return bytes(data)


def test_errors_name_the_problem() -> None:
    with pytest.raises(SQLiteFormatError, match="99 bytes"):
        DatabaseHeader.parse(header()[:99])
    with pytest.raises(SQLiteFormatError, match="magic"):
        DatabaseHeader.parse(b"SQLite format 4\x00" + header()[16:])
    with pytest.raises(SQLiteFormatError, match="page size 1000 .*offset 16"):
        DatabaseHeader.parse(header(page_size=1000))
    assert DatabaseHeader.parse(header(page_size=1, version=2)).page_size == 65536
    assert DatabaseHeader.parse(header(version=2)).is_wal


def test_lock_page() -> None:
    assert lock_page(4096) == 262145
    assert lock_page(65536) == 16385
