"""WAL checksum, header, frame reader and committed-transaction scanner.

Checked against the upstream LiteFS WAL fixtures and against WAL files written by the sqlite3 module.
"""

from __future__ import annotations

import io
import os
import shutil
import sqlite3
import struct
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from litefs.sqlite import (
    WAL_FRAME_HEADER_SIZE,
    WAL_HEADER_SIZE,
    DatabaseHeader,
    SQLiteFormatError,
    WALHeader,
    WALReader,
    WALTransaction,
    read_wal_page,
    scan_wal_transactions,
    wal_checksum,
)
from litefs.sqlite.wal import wal_checksum_py

FIXTURES = Path(os.environ["LITEFS_LTX_FIXTURES"]) / "litefs-wal-reader"


def wal_fixture(name: str) -> bytes:
    """Bytes of one of the upstream WAL reader fixtures."""
    path = FIXTURES / f"{name}.wal"
    if not path.exists():
        pytest.skip(f"fixture {path} not present")
    return path.read_bytes()


def reference_checksum(data: bytes, s1: int, s2: int, big_endian: bool) -> tuple[int, int]:
    """The loop as SQLite's walChecksumBytes writes it: slow and obviously right."""
    n = len(data) // 4
    words = struct.unpack(f"{'>' if big_endian else '<'}{n}I", data)
    for i in range(0, n, 2):
        s1 = (s1 + words[i] + s2) & 0xFFFFFFFF
        s2 = (s2 + words[i + 1] + s1) & 0xFFFFFFFF
    return s1, s2


class WALBuilder:
    """Build a valid WAL in memory: header, then frames chained by the running checksum."""

    def __init__(self, page_size: int = 512, salts: tuple[int, int] = (1, 2), big_endian: bool = False):
        self.data = bytearray(WALHeader.build(page_size=page_size, salts=salts, big_endian=big_endian))
        self.header = WALHeader.parse(bytes(self.data))
        self.checksum = self.header.checksum

    def frame(self, pgno: int, commit: int = 0, salts: tuple[int, int] | None = None) -> int:
        """Append a frame whose page is filled with pgno; return its offset."""
        offset = len(self.data)
        page = bytes([pgno & 0xFF]) * self.header.page_size
        head8 = struct.pack(">II", pgno, commit)
        s = wal_checksum(head8, *self.checksum, self.header.big_endian)
        self.checksum = wal_checksum(page, *s, self.header.big_endian)
        self.data += head8 + struct.pack(">4I", *(salts or self.header.salts), *self.checksum) + page
        return offset

    def file(self) -> io.BytesIO:
        return io.BytesIO(bytes(self.data))


# -- checksum -------------------------------------------------------------------------------------


@settings(max_examples=200)
@given(
    words=st.lists(st.integers(0, 0xFFFFFFFF), max_size=200).map(lambda w: w[: len(w) // 2 * 2]),
    s1=st.integers(0, 0xFFFFFFFF),
    s2=st.integers(0, 0xFFFFFFFF),
    big_endian=st.booleans(),
)
def test_checksum_matches_reference_loop(words: list[int], s1: int, s2: int, big_endian: bool) -> None:
    data = struct.pack(f">{len(words)}I", *words)
    assert wal_checksum(data, s1, s2, big_endian) == reference_checksum(data, s1, s2, big_endian)


def test_checksum_of_full_page_with_max_words() -> None:
    page = b"\xff" * 65536
    for big_endian in (False, True):
        assert wal_checksum(page, 0xFFFFFFFF, 0xFFFFFFFF, big_endian) == reference_checksum(
            page, 0xFFFFFFFF, 0xFFFFFFFF, big_endian
        )


def test_checksum_rejects_length_not_multiple_of_8() -> None:
    with pytest.raises(ValueError, match="multiple of 8"):
        wal_checksum(b"\x00" * 12, 0, 0, False)
    with pytest.raises(ValueError, match="multiple of 8"):
        wal_checksum(b"\x00" * 4100, 0, 0, False)  # long enough for the vectorised path


@settings(max_examples=150, deadline=None)
@given(
    page_size=st.sampled_from([512, 1024, 2048, 4096, 8192, 16384, 32768, 65536]),
    seed=st.binary(min_size=1, max_size=64),
    s1=st.integers(0, 0xFFFFFFFF),
    s2=st.integers(0, 0xFFFFFFFF),
    big_endian=st.booleans(),
)
def test_vectorised_checksum_matches_python_on_random_pages(
    page_size: int, seed: bytes, s1: int, s2: int, big_endian: bool
) -> None:
    # Random-looking pages of every SQLite page size (the seed is stretched so hypothesis stays fast).
    import hashlib

    page = hashlib.shake_256(seed).digest(page_size)
    assert wal_checksum(page, s1, s2, big_endian) == wal_checksum_py(page, s1, s2, big_endian)
    assert wal_checksum_py(page, s1, s2, big_endian) == reference_checksum(page, s1, s2, big_endian)


@settings(max_examples=100, deadline=None)
@given(
    data=st.binary(min_size=0, max_size=2048).map(lambda b: b[: len(b) // 8 * 8]),
    s1=st.integers(0, 0xFFFFFFFF),
    s2=st.integers(0, 0xFFFFFFFF),
    big_endian=st.booleans(),
)
def test_vectorised_checksum_matches_python_on_any_length(
    data: bytes, s1: int, s2: int, big_endian: bool
) -> None:
    # Lengths on both sides of the size where wal_checksum switches to the vectorised product.
    assert wal_checksum(data, s1, s2, big_endian) == wal_checksum_py(data, s1, s2, big_endian)


def test_checksum_of_worst_case_pages_both_implementations() -> None:
    # All-ones words with all-ones state maximise every intermediate sum (overflow would show here).
    for size in (512, 4096, 65536):
        page = b"\xff" * size
        for big_endian in (False, True):
            expected = reference_checksum(page, 0xFFFFFFFF, 0xFFFFFFFF, big_endian)
            assert wal_checksum(page, 0xFFFFFFFF, 0xFFFFFFFF, big_endian) == expected
            assert wal_checksum_py(page, 0xFFFFFFFF, 0xFFFFFFFF, big_endian) == expected


@pytest.mark.parametrize("name", ["ok", "salt-mismatch", "frame-checksum-mismatch"])
def test_fixture_frame_checksums_agree_between_implementations(name: str) -> None:
    # Every frame of the upstream fixtures: the stored checksum chain, recomputed both ways (salts are
    # not part of the checksum, so the salt-mismatch fixture chains through all three frames).
    data = wal_fixture(name)
    hdr = WALHeader.parse(data)
    frame_size = hdr.frame_size
    s_vec = s_py = hdr.checksum
    matched = 0
    for off in range(32, len(data) - frame_size + 1, frame_size):
        head8, page = data[off : off + 8], data[off + 24 : off + frame_size]
        stored = struct.unpack(">2I", data[off + 16 : off + 24])
        s_vec = wal_checksum(page, *wal_checksum(head8, *s_vec, hdr.big_endian), hdr.big_endian)
        s_py = wal_checksum_py(page, *wal_checksum_py(head8, *s_py, hdr.big_endian), hdr.big_endian)
        assert s_vec == s_py
        if s_vec != stored:
            break
        matched += 1
    assert matched == {"ok": 3, "salt-mismatch": 3, "frame-checksum-mismatch": 1}[name]


# -- header ---------------------------------------------------------------------------------------


def test_header_of_fixture() -> None:
    hdr = WALHeader.parse(wal_fixture("ok"))
    assert hdr.magic == 0x377F0682 and not hdr.big_endian
    assert hdr.version == 3007000 and hdr.page_size == 4096 and hdr.checkpoint_seq == 0
    assert hdr.salts == (0x4875A40B, 0xA38DE4F5)
    assert hdr.checksum == (0xE08B785B, 0x8E57DDA3)


@pytest.mark.parametrize(
    ("offset", "value", "message"),
    [(0, 0x377F0684, "bad WAL magic"), (4, 3007001, "version"), (8, 1000, "page size"), (16, 7, "checksum")],
)
def test_header_rejects_bad_fields(offset: int, value: int, message: str) -> None:
    data = bytearray(wal_fixture("ok")[:32])
    struct.pack_into(">I", data, offset, value)
    with pytest.raises(SQLiteFormatError, match=message):
        WALHeader.parse(bytes(data))


def test_header_rejects_short_input() -> None:
    with pytest.raises(SQLiteFormatError, match="10 bytes"):
        WALHeader.parse(b"\x37" * 10)


def test_header_build_round_trips_both_byte_orders() -> None:
    for big_endian in (False, True):
        hdr = WALHeader.parse(
            WALHeader.build(page_size=65536, salts=(5, 6), checkpoint_seq=3, big_endian=big_endian)
        )
        assert (hdr.page_size, hdr.salts, hdr.checkpoint_seq, hdr.big_endian) == (
            65536,
            (5, 6),
            3,
            big_endian,
        )


# -- reader (LiteFS TestWALReader cases) ----------------------------------------------------------


def test_reader_ok_fixture() -> None:
    data = wal_fixture("ok")
    r = WALReader(io.BytesIO(data))
    assert r.read_header() is not None
    expected = [(32, 1, 0, 56), (4152, 2, 2, 4176), (8272, 2, 2, 8296)]
    checksums = [(0x366B4D98, 0x34F637CF), (0xD6702FDA, 0xF16CCEDA), (0x420A5A7C, 0xF49C13AB)]
    for (offset, pgno, commit, data_start), checksum in zip(expected, checksums, strict=True):
        frame = r.read_frame()
        assert frame is not None
        assert (frame.offset, frame.pgno, frame.commit, frame.data_offset) == (
            offset,
            pgno,
            commit,
            data_start,
        )
        assert frame.data == data[data_start : data_start + 4096]
        assert frame.checksum == checksum
        assert r.offset == offset
    assert r.read_frame() is None
    assert r.read_frame() is None


@pytest.mark.parametrize("name", ["salt-mismatch", "frame-checksum-mismatch"])
def test_reader_stops_at_bad_second_frame(name: str) -> None:
    frames = list(WALReader(io.BytesIO(wal_fixture(name))))
    assert [(f.offset, f.pgno, f.commit) for f in frames] == [(32, 1, 0)]


@pytest.mark.parametrize("size", [40, 56, 1000])
def test_reader_truncated_after_header(size: int) -> None:
    r = WALReader(io.BytesIO(wal_fixture("ok")[:size]))
    assert r.read_header() is not None
    assert r.read_frame() is None


@pytest.mark.parametrize("size", [0, 10])
def test_reader_no_header(size: int) -> None:
    r = WALReader(io.BytesIO(wal_fixture("ok")[:size]))
    assert r.read_header() is None
    assert list(r) == []


def test_reader_torn_header_is_empty_log_but_bad_magic_is_an_error() -> None:
    torn = bytearray(wal_fixture("ok"))
    torn[12] ^= 1  # checkpoint seq changed, checksum no longer matches
    assert WALReader(io.BytesIO(bytes(torn))).read_header() is None
    bad = b"\x00" * 32 + wal_fixture("ok")[32:]
    with pytest.raises(SQLiteFormatError, match="magic"):
        WALReader(io.BytesIO(bad)).read_header()


def test_read_frame_before_header_is_an_error() -> None:
    with pytest.raises(SQLiteFormatError, match="read_header"):
        WALReader(io.BytesIO(wal_fixture("ok"))).read_frame()


# -- transaction scanner on fixtures and built WALs -----------------------------------------------


def test_scan_ok_fixture() -> None:
    data = wal_fixture("ok")
    hdr = WALHeader.parse(data)
    txns = scan_wal_transactions(io.BytesIO(data), header=hdr, start_offset=32, start_checksum=hdr.checksum)
    assert txns == [
        WALTransaction(32, 8272, 2, {1: 56, 2: 4176}, (0xD6702FDA, 0xF16CCEDA)),
        WALTransaction(8272, 12392, 2, {2: 8296}, (0x420A5A7C, 0xF49C13AB)),
    ]
    # Resuming after the first transaction with its end checksum finds the second one alone.
    rest = scan_wal_transactions(
        io.BytesIO(data), header=hdr, start_offset=8272, start_checksum=txns[0].end_checksum
    )
    assert rest == txns[1:]
    assert read_wal_page(io.BytesIO(data), txns[1].pages[2], 4096) == data[8296:12392]


@pytest.mark.parametrize("name", ["salt-mismatch", "frame-checksum-mismatch"])
def test_scan_bad_fixture_finds_nothing(name: str) -> None:
    data = wal_fixture(name)
    assert scan_wal_transactions(io.BytesIO(data), header=WALHeader.parse(data)) == []


def test_scan_ignores_frames_after_last_commit() -> None:
    b = WALBuilder()
    b.frame(1)
    b.frame(2, commit=2)
    b.frame(3)  # an uncommitted tail: not a transaction
    b.frame(1)
    txns = scan_wal_transactions(b.file(), header=b.header)
    assert [(t.start_offset, t.end_offset, t.commit, sorted(t.pages)) for t in txns] == [
        (32, 32 + 2 * 536, 2, [1, 2])
    ]


def test_scan_keeps_last_version_of_each_page() -> None:
    b = WALBuilder()
    b.frame(1)
    second = b.frame(2)
    third = b.frame(1)
    b.frame(3, commit=3)
    (txn,) = scan_wal_transactions(b.file(), header=b.header)
    assert txn.pages[1] == third + WAL_FRAME_HEADER_SIZE
    assert txn.pages[2] == second + WAL_FRAME_HEADER_SIZE


def test_scan_stops_at_stale_salts_even_with_valid_chain() -> None:
    b = WALBuilder(big_endian=True)
    b.frame(1, commit=1)
    b.frame(2, commit=2, salts=(9, 9))  # checksum chain continues, salts do not match
    txns = scan_wal_transactions(b.file(), header=b.header)
    assert [t.commit for t in txns] == [1]


def test_scan_stops_at_torn_commit_frame() -> None:
    b = WALBuilder()
    b.frame(1, commit=1)
    b.frame(2)
    b.frame(3, commit=3)
    data = bytes(b.data)
    for cut in (len(data) - 1, len(data) - 512, len(data) - 536 + 10):
        assert [t.commit for t in scan_wal_transactions(io.BytesIO(data[:cut]), header=b.header)] == [1]
    torn = bytearray(data)
    torn[-1] ^= 0xFF  # same length, wrong page byte: the checksum catches it
    assert [t.commit for t in scan_wal_transactions(io.BytesIO(bytes(torn)), header=b.header)] == [1]


def test_scan_rejects_offset_off_frame_boundary() -> None:
    b = WALBuilder()
    b.frame(1, commit=1)
    with pytest.raises(SQLiteFormatError, match="not a frame boundary"):
        scan_wal_transactions(b.file(), header=b.header, start_offset=40, start_checksum=(0, 0))
    with pytest.raises(SQLiteFormatError, match="start_checksum"):
        scan_wal_transactions(b.file(), header=b.header, start_offset=32 + 536)


def test_read_wal_page_past_eof_names_offset() -> None:
    with pytest.raises(SQLiteFormatError, match="offset 100"):
        read_wal_page(io.BytesIO(b"\x00" * 200), 100, 4096)


# -- real WAL files written by sqlite3 ------------------------------------------------------------


def apply_transactions(db: bytes, wal: bytes, txns: list[WALTransaction], page_size: int) -> bytes:
    """Write the last version of every page of txns into db and size it to the last commit."""
    out = bytearray(db)
    f = io.BytesIO(wal)
    for txn in txns:
        for pgno, offset in sorted(txn.pages.items()):
            page = read_wal_page(f, offset, page_size)
            start = (pgno - 1) * page_size
            if len(out) < start:
                out.extend(bytes(start - len(out)))
            out[start : start + page_size] = page
        size = txn.commit * page_size
        del out[size:]
        out.extend(bytes(size - len(out)))
    return bytes(out)


def open_wal_db(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    assert conn.execute("pragma journal_mode=wal").fetchone()[0] == "wal"
    conn.execute("pragma wal_autocheckpoint=0")
    return conn


def rows(path: Path) -> list[tuple]:
    """All rows of t, read by a fresh connection (so through SQLite, not our parser)."""
    conn = sqlite3.connect(path)
    try:
        return conn.execute("select id, v from t order by id").fetchall()
    finally:
        conn.close()


def test_real_wal_transactions_replay_to_what_sqlite_reads(tmp_path: Path) -> None:
    src = tmp_path / "src.db"
    conn = open_wal_db(src)
    states: list[list[tuple]] = []
    try:
        conn.execute("create table t(id integer primary key, v text)")
        states.append([])
        for i in range(4):
            conn.execute(
                "with recursive s(n) as (select 1 union all select n + 1 from s where n < ?)"
                " insert into t(v) select hex(randomblob(300)) from s",
                (20 * (i + 1),),
            )
            states.append(conn.execute("select id, v from t order by id").fetchall())
        # A transaction larger than the page cache: SQLite spills frames (commit 0) and rewrites pages.
        conn.execute("pragma cache_size=5")
        conn.execute("begin")
        conn.execute("update t set v = hex(randomblob(350)) where id % 2 = 0")
        conn.execute("insert into t(v) select v from t where id < 30")
        conn.execute("commit")
        states.append(conn.execute("select id, v from t order by id").fetchall())
        # A shrinking transaction: the database gets fewer pages.
        conn.execute("delete from t where id > 10")
        conn.execute("vacuum")
        states.append(conn.execute("select id, v from t order by id").fetchall())

        db_bytes = src.read_bytes()
        wal_bytes = Path(f"{src}-wal").read_bytes()
        hdr = WALHeader.parse(wal_bytes)
        txns = scan_wal_transactions(
            io.BytesIO(wal_bytes), header=hdr, start_offset=WAL_HEADER_SIZE, start_checksum=hdr.checksum
        )
        # One transaction per commit: create, 4 inserts, the big one, delete, vacuum.
        assert len(txns) == len(states) + 1
        assert txns[0].start_offset == WAL_HEADER_SIZE
        for a, b in zip(txns, txns[1:], strict=False):
            assert a.end_offset == b.start_offset
        assert txns[-1].end_offset == len(wal_bytes)
        # SQLite rewrites a spilled page's frame in place (and re-chains the checksums after it), so
        # a real WAL has one frame per page per transaction; the builder tests cover repeated pages.
        spilled = txns[5]
        assert (spilled.end_offset - spilled.start_offset) // hdr.frame_size == len(spilled.pages)

        # Each prefix of transactions, applied to the database file, reads back as that state.
        last_txn_of_state = [0, 1, 2, 3, 4, 5, 7]
        for state, last in zip(states, last_txn_of_state, strict=True):
            path = tmp_path / f"replay-{last}.db"
            path.write_bytes(apply_transactions(db_bytes, wal_bytes, txns[: last + 1], hdr.page_size))
            assert DatabaseHeader.parse(path.read_bytes()).is_wal
            assert rows(path) == state

        # All of them give byte for byte what SQLite's own checkpoint writes.
        replayed = apply_transactions(db_bytes, wal_bytes, txns, hdr.page_size)
        conn.execute("pragma wal_checkpoint(truncate)")
        assert src.read_bytes() == replayed
    finally:
        conn.close()


def test_real_wal_restarted_after_checkpoint_ignores_stale_frames(tmp_path: Path) -> None:
    src = tmp_path / "src.db"
    conn = open_wal_db(src)
    try:
        conn.execute("create table t(id integer primary key, v text)")
        conn.execute(
            "with recursive s(n) as (select 1 union all select n + 1 from s where n < 200)"
            " insert into t(v) select hex(randomblob(300)) from s"
        )
        old_header = WALHeader.parse(Path(f"{src}-wal").read_bytes())
        conn.execute("pragma wal_checkpoint(restart)")
        db_after_checkpoint = src.read_bytes()
        conn.execute("insert into t(v) values ('new')")  # the writer restarts the log from offset 32

        wal_bytes = Path(f"{src}-wal").read_bytes()
        hdr = WALHeader.parse(wal_bytes)
        assert hdr.salts != old_header.salts
        assert hdr.checkpoint_seq == old_header.checkpoint_seq + 1
        txns = scan_wal_transactions(io.BytesIO(wal_bytes), header=hdr)
        assert len(txns) == 1
        (txn,) = txns
        assert txn.start_offset == WAL_HEADER_SIZE
        # The stale frames of the previous generation are still in the file, right after the new one.
        assert len(wal_bytes) > txn.end_offset
        assert struct.unpack_from(">II", wal_bytes, txn.end_offset + 8) == old_header.salts

        path = tmp_path / "replay.db"
        path.write_bytes(apply_transactions(db_after_checkpoint, wal_bytes, txns, hdr.page_size))
        assert rows(path)[-1] == (201, "new")
        conn.execute("pragma wal_checkpoint(truncate)")
        assert src.read_bytes() == path.read_bytes()
    finally:
        conn.close()


def test_real_wal_copy_with_open_connection(tmp_path: Path) -> None:
    """The -wal file copied while a connection is open holds every commit so far."""
    src = tmp_path / "src.db"
    conn = open_wal_db(src)
    try:
        conn.execute("create table t(id integer primary key, v text)")
        for i in range(3):
            conn.execute("insert into t(v) values (?)", (f"row{i}",))
        copy = tmp_path / "copy-wal"
        shutil.copyfile(f"{src}-wal", copy)
        with copy.open("rb") as f:
            r = WALReader(f)
            hdr = r.read_header()
            assert hdr is not None
            commits = [fr.commit for fr in r if fr.commit]
            txns = scan_wal_transactions(f, header=hdr)
        assert len(txns) == len(commits) == 4
    finally:
        conn.close()


def test_big_endian_wal_reads_and_scans() -> None:
    b = WALBuilder(page_size=1024, salts=(0xFFFFFFFF, 0), big_endian=True)
    b.frame(1)
    b.frame(2, commit=2)
    b.frame(2, commit=2)
    r = WALReader(b.file())
    hdr = r.read_header()
    assert hdr is not None and hdr.big_endian and hdr.magic == 0x377F0683
    assert [(fr.pgno, fr.commit) for fr in r] == [(1, 0), (2, 2), (2, 2)]
    assert r.checksum == b.checksum
    txns = scan_wal_transactions(b.file(), header=hdr)
    assert [(t.commit, t.end_checksum) for t in txns][-1] == (2, b.checksum)
    # Read as little-endian, the same bytes do not chain: nothing is valid.
    assert wal_checksum(bytes(b.data[:24]), 0, 0, False) != hdr.checksum
