"""Rollback journal: header, reader and hot-journal playback.

The oracle is SQLite itself: a copy of a hot journal and its database, opened by the sqlite3 module,
is rolled back by SQLite; `rollback_journal` must leave the same bytes -- including for journals we
damage on purpose.
"""

from __future__ import annotations

import io
import shutil
import sqlite3
import struct
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from litefs.sqlite import (
    JOURNAL_MAGIC,
    JournalHeader,
    JournalReader,
    SQLiteFormatError,
    is_journal_header_valid,
    journal_checksum,
    rollback_journal,
)

PAGE = 4096
FILL = (
    "with recursive s(n) as (select 1 union all select n + 1 from s where n < ?)"
    " insert into t(v) select randomblob(1000) from s"
)


def hot_journal(
    tmp_path: Path, *, synchronous: str = "FULL", mode: str = "DELETE"
) -> tuple[bytes, Path, Path]:
    """Make a real hot journal: copy the database and journal while a spilling transaction is open.

    Returns (database bytes before the transaction, copied database, copied journal).
    """
    src = tmp_path / "src.db"
    conn = sqlite3.connect(src, isolation_level=None)
    try:
        assert conn.execute(f"pragma journal_mode={mode}").fetchone()[0] == mode.lower()
        conn.execute("create table t(id integer primary key, v blob)")
        conn.execute(FILL, (300,))
        if mode == "PERSIST":
            # A big earlier transaction leaves stale records in the persistent journal.
            conn.execute("update t set v = randomblob(1000)")
        before = src.read_bytes()
        conn.execute("pragma cache_size=10")  # forces spills, hence database writes and several segments
        conn.execute(f"pragma synchronous={synchronous}")
        conn.execute("begin")
        conn.execute("update t set v = randomblob(1000) where id % 3 = 0")
        conn.execute(FILL, (100,))  # growth: playback must truncate
        db_copy, journal_copy = tmp_path / "hot.db", tmp_path / "hot.db-journal"
        shutil.copyfile(src, db_copy)
        shutil.copyfile(f"{src}-journal", journal_copy)
        conn.execute("rollback")
    finally:
        conn.close()
    assert db_copy.read_bytes() != before
    return before, db_copy, journal_copy


def sqlite_rollback(tmp_path: Path, db: Path, journal: bytes) -> bytes:
    """What SQLite does with this journal: open a copy, read, return the database bytes."""
    oracle = tmp_path / "oracle"
    oracle.mkdir(exist_ok=True)
    path = oracle / "o.db"
    shutil.copyfile(db, path)
    Path(f"{path}-journal").write_bytes(journal)
    conn = sqlite3.connect(path)
    try:
        conn.execute("select count(*) from sqlite_master").fetchone()
    finally:
        conn.close()
    out = path.read_bytes()
    for p in oracle.iterdir():
        p.unlink()
    return out


def our_rollback(db: Path, journal: bytes) -> tuple[bool, bytes]:
    data = io.BytesIO(db.read_bytes())
    restored = rollback_journal(io.BytesIO(journal), data)
    return restored, data.getvalue()


@pytest.mark.parametrize(
    ("synchronous", "mode"),
    [("FULL", "DELETE"), ("NORMAL", "DELETE"), ("OFF", "DELETE"), ("FULL", "PERSIST"), ("FULL", "TRUNCATE")],
)
def test_rollback_restores_pre_transaction_bytes(tmp_path: Path, synchronous: str, mode: str) -> None:
    before, db, journal = hot_journal(tmp_path, synchronous=synchronous, mode=mode)
    journal_bytes = journal.read_bytes()
    restored, after = our_rollback(db, journal_bytes)
    assert restored
    assert after == before
    assert sqlite_rollback(tmp_path, db, journal_bytes) == before


def test_rollback_works_on_real_files(tmp_path: Path) -> None:
    before, db, journal = hot_journal(tmp_path)
    with journal.open("rb") as jf, db.open("r+b") as dbf:
        assert rollback_journal(jf, dbf)
    assert db.read_bytes() == before
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("select count(*) from t").fetchone() == (300,)
    finally:
        conn.close()


def test_reader_walks_segments_of_synced_journal(tmp_path: Path) -> None:
    before, _db, journal = hot_journal(tmp_path)
    with journal.open("rb") as f:
        r = JournalReader(f, PAGE)
        assert r.is_hot and r.page_size == PAGE and r.sector_size == 512
        assert r.db_size == len(before) // PAGE
        segments = []
        for seg in r.segments():
            assert seg.offset % r.sector_size == 0
            segments.append((seg, list(r.records(seg))))
    assert len(segments) > 2
    # Only the last, not yet synced segment header lacks the magic; every synced one holds records.
    assert r.stop_reason is not None and r.stop_reason.startswith("bad magic")
    for seg, records in segments:
        assert seg.header.record_count == len(records) > 0
        for pgno, page in records:
            assert page == before[(pgno - 1) * PAGE : pgno * PAGE]
    # Iterating the reader directly gives the same records in the same order.
    with journal.open("rb") as f:
        assert list(JournalReader(f)) == [rec for _, recs in segments for rec in recs]


def test_no_sync_journal_reads_to_eof(tmp_path: Path) -> None:
    _before, _db, journal = hot_journal(tmp_path, synchronous="OFF")
    with journal.open("rb") as f:
        r = JournalReader(f)
        assert r.first_header is not None and r.first_header.record_count == 0xFFFFFFFF
        assert len(list(r)) > 0
        assert r.stop_reason == "eof"


def corrupt(journal: bytes, offset: int, value: bytes) -> bytes:
    return journal[:offset] + value + journal[offset + len(value) :]


def record_offsets(journal: bytes) -> list[int]:
    """Offsets of every record that the reader yields."""
    r = JournalReader(io.BytesIO(journal))
    out = []
    for seg in r.segments():
        for i, _ in enumerate(r.records(seg)):
            out.append(seg.records_offset + i * r.record_size)
    return out


@pytest.mark.parametrize(
    "damage", ["checksum", "sampled byte", "pgno zero", "lock page", "truncated", "nrec zero"]
)
def test_damaged_journal_plays_back_like_sqlite(tmp_path: Path, damage: str) -> None:
    _before, db, journal_path = hot_journal(tmp_path)
    journal = journal_path.read_bytes()
    offsets = record_offsets(journal)
    target = offsets[len(offsets) // 2]  # a record in a middle segment
    if damage == "checksum":
        journal = corrupt(journal, target + 4 + PAGE, b"\x00\x00\x00\x00")
    elif damage == "sampled byte":
        b = journal[target + 4 + PAGE - 200]
        journal = corrupt(journal, target + 4 + PAGE - 200, bytes([b ^ 0x55]))
    elif damage == "pgno zero":
        journal = corrupt(journal, target, struct.pack(">I", 0))
    elif damage == "lock page":
        journal = corrupt(journal, target, struct.pack(">I", 0x40000000 // PAGE + 1))
    elif damage == "truncated":
        journal = journal[: target + 100]
    elif damage == "nrec zero":
        journal = corrupt(journal, 8, b"\x00\x00\x00\x00")  # the first segment: zero records
    restored, ours = our_rollback(db, journal)
    assert restored
    assert ours == sqlite_rollback(tmp_path, db, journal)
    assert len(record_offsets(journal)) < len(offsets)


def test_unsynced_journal_is_not_hot(tmp_path: Path) -> None:
    """A zeroed header (PERSIST commit, or a journal never synced) means there is nothing to roll back."""
    _before, db, journal_path = hot_journal(tmp_path)
    journal = b"\x00" * 28 + journal_path.read_bytes()[28:]
    assert not is_journal_header_valid(journal)
    restored, ours = our_rollback(db, journal)
    assert not restored
    assert ours == db.read_bytes()
    assert sqlite_rollback(tmp_path, db, journal) == db.read_bytes()


def test_empty_and_short_journals_are_not_hot() -> None:
    for data in (b"", JOURNAL_MAGIC, JOURNAL_MAGIC + b"\x00" * 100):
        db = io.BytesIO(b"x" * 8192)
        assert not rollback_journal(io.BytesIO(data), db)
        assert db.getvalue() == b"x" * 8192


# -- synthetic journals ---------------------------------------------------------------------------


def build_journal(
    segments: list[tuple[int, int, list[tuple[int, bytes]]]],
    *,
    page_size: int = 512,
    sector_size: int = 512,
    nrec: int | None = None,
) -> bytes:
    """segments = [(nonce, db_size, [(pgno, page), ...]), ...]; each header aligned to a sector."""
    out = bytearray()
    for nonce, db_size, records in segments:
        out.extend(bytes(-len(out) % sector_size))
        header = JOURNAL_MAGIC + struct.pack(
            ">5I", len(records) if nrec is None else nrec, nonce, db_size, sector_size, page_size
        )
        out += header + bytes(sector_size - len(header))
        for pgno, page in records:
            out += struct.pack(">I", pgno) + page + struct.pack(">I", journal_checksum(nonce, page))
    return bytes(out)


def test_records_beyond_original_size_are_skipped_unchecked() -> None:
    p = 512
    good = [(1, b"\x01" * p), (9, b"\x09" * p), (2, b"\x02" * p)]
    journal = bytearray(build_journal([(77, 3, good)], page_size=p))
    bad_ck = 512 + (4 + p + 4) * 2 - 4  # the checksum of the pgno 9 record
    journal[bad_ck : bad_ck + 4] = b"\xde\xad\xbe\xef"
    db = io.BytesIO(b"\xff" * (p * 10))
    assert rollback_journal(io.BytesIO(bytes(journal)), db)
    assert db.getvalue() == b"\x01" * p + b"\x02" * p + b"\xff" * p


def test_rollback_extends_a_short_database() -> None:
    journal = build_journal([(5, 4, [(1, b"\x01" * 512)])])
    db = io.BytesIO(b"\xee" * 512)
    assert rollback_journal(io.BytesIO(journal), db)
    assert db.getvalue() == b"\x01" * 512 + bytes(512 * 3)


def test_later_segment_headers_keep_first_sizes() -> None:
    # The second header's sector/page fields are garbage; SQLite ignores them, so do we.
    first = build_journal([(1, 4, [(1, b"\x01" * 512)])])
    second = bytearray(build_journal([(2, 4, [(2, b"\x02" * 512)])]))
    struct.pack_into(">II", second, 20, 3, 3)
    journal = first + bytes(-len(first) % 512) + bytes(second)
    assert list(JournalReader(io.BytesIO(journal))) == [(1, b"\x01" * 512), (2, b"\x02" * 512)]


def test_page_size_mismatch_with_database_is_an_error() -> None:
    journal = build_journal([(1, 4, [(1, b"\x01" * 512)])])
    with pytest.raises(SQLiteFormatError, match="512.*4096"):
        JournalReader(io.BytesIO(journal), 4096)


def test_page_size_zero_uses_database_page_size() -> None:
    journal = bytearray(build_journal([(1, 4, [(1, b"\x01" * 512)])]))
    struct.pack_into(">I", journal, 24, 0)
    assert list(JournalReader(io.BytesIO(bytes(journal)), 512)) == [(1, b"\x01" * 512)]
    with pytest.raises(SQLiteFormatError, match="page size is 0"):
        JournalReader(io.BytesIO(bytes(journal)))


@pytest.mark.parametrize(
    ("offset", "value", "message"),
    [
        (0, b"\x00", "magic"),
        (20, struct.pack(">I", 100), "sector size"),
        (24, struct.pack(">I", 1000), "page size"),
    ],
)
def test_header_parse_errors(offset: int, value: bytes, message: str) -> None:
    data = build_journal([(1, 4, [])])[:28]
    with pytest.raises(SQLiteFormatError, match=message):
        JournalHeader.parse(corrupt(data, offset, value))
    with pytest.raises(SQLiteFormatError, match="need 28"):
        JournalHeader.parse(data[:27])


def test_header_parse_fields() -> None:
    hdr = JournalHeader.parse(build_journal([(0xABCDEF01, 42, [])], page_size=65536, sector_size=4096))
    assert hdr == JournalHeader(
        record_count=0, nonce=0xABCDEF01, db_size=42, sector_size=4096, page_size=65536
    )
    assert is_journal_header_valid(JOURNAL_MAGIC + b"\x00" * 20)
    assert not is_journal_header_valid(JOURNAL_MAGIC[:7])


@given(
    nonce=st.integers(0, 0xFFFFFFFF),
    page_size=st.sampled_from([512, 1024, 4096, 65536]),
    seed=st.binary(min_size=1, max_size=64),
)
def test_checksum_samples_every_200th_byte(nonce: int, page_size: int, seed: bytes) -> None:
    page = (seed * (page_size // len(seed) + 1))[:page_size]
    expected = nonce
    i = page_size - 200
    while i > 0:
        expected += page[i]
        i -= 200
    assert journal_checksum(nonce, page) == expected & 0xFFFFFFFF
