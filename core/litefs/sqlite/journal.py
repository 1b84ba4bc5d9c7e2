"""SQLite rollback journal: header, segment/record reader and hot-journal playback.

Layout (https://www.sqlite.org/fileformat2.html §3): the journal is one or more segments. Each segment
starts with a header at a multiple of the sector size -- magic d9d505f920a163d7, record count, checksum
nonce, database size in pages before the transaction, sector size, page size (all big-endian u32),
padded to one sector -- followed by records of (u32 page number, original page, u32 checksum). The
checksum is the nonce plus every 200th byte of the page, counting down from page_size - 200 while the
index is positive.

The reader follows SQLite's `pager_playback` exactly, because deciding what a journal means is the
point: sector size and page size come from the first header only; a record count of 0xffffffff means
"as many records as fit in the rest of the file"; 0 means no records (a hot journal whose count was
never synced); a record for page 0 or for the lock page, or with a bad checksum, ends the whole
playback; a record for a page beyond the original database size is skipped without a checksum test;
a short record ends playback. Super-journals (multi-database transactions) are not supported.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from litefs.sqlite.errors import SQLiteFormatError
from litefs.sqlite.header import is_valid_page_size, lock_page

JOURNAL_MAGIC = bytes.fromhex("d9d505f920a163d7")
JOURNAL_HEADER_SIZE = 28  # bytes that carry fields; the header occupies a whole sector on disk
NREC_TO_EOF = 0xFFFFFFFF
MIN_SECTOR_SIZE = 32
MAX_SECTOR_SIZE = 0x10000

_HEADER = struct.Struct(">8s5I")
_U32 = struct.Struct(">I")


def is_journal_header_valid(data: bytes) -> bool:
    """True if data starts with the journal magic.

    SQLite writes the magic only once the journal is synced and the database is about to change, so a
    journal without it means "nothing to roll back / nothing committed" (what LiteFS checks at commit).
    """
    return bytes(data[:8]) == JOURNAL_MAGIC


def journal_checksum(nonce: int, page: bytes) -> int:
    """A record checksum: nonce plus the bytes at page_size-200, page_size-400, ... (index > 0), mod 2**32."""
    # page[n-200::-200] walks the same indices down to index 0; drop index 0 if it was reached.
    start = len(page) - 200
    if start <= 0:
        return nonce & 0xFFFFFFFF
    total = sum(page[start::-200])
    if start % 200 == 0:
        total -= page[0]
    return (nonce + total) & 0xFFFFFFFF


@dataclass(frozen=True, slots=True)
class JournalHeader:
    """One segment header.

    record_count is the raw nRec field (0xffffffff = up to EOF); db_size is the database size in pages
    when the transaction started; sector_size and page_size are only meaningful in the first header.
    """

    record_count: int
    nonce: int
    db_size: int
    sector_size: int
    page_size: int

    @classmethod
    def parse(cls, data: bytes, sector_size: int | None = None) -> JournalHeader:
        """Parse the 28 bytes of a segment header.

        For the first header (sector_size None) the sector and page sizes must be valid powers of two
        (page size 0, written by SQLite before 3.5.8, is accepted as "unknown"). For later headers pass
        the first header's sector size: their own sector/page fields are ignored, as SQLite does.
        Raises SQLiteFormatError on short input, a bad magic or invalid sizes.
        """
        if len(data) < JOURNAL_HEADER_SIZE:
            raise SQLiteFormatError(f"journal header is {len(data)} bytes, need {JOURNAL_HEADER_SIZE}")
        magic, nrec, nonce, db_size, sector, page_size = _HEADER.unpack_from(data, 0)
        if magic != JOURNAL_MAGIC:
            raise SQLiteFormatError(f"bad journal magic {magic.hex()} at header offset 0")
        if sector_size is None:
            if not (MIN_SECTOR_SIZE <= sector <= MAX_SECTOR_SIZE and sector & (sector - 1) == 0):
                raise SQLiteFormatError(f"invalid journal sector size {sector} at header offset 20")
            if page_size != 0 and not is_valid_page_size(page_size):
                raise SQLiteFormatError(f"invalid journal page size {page_size} at header offset 24")
        return cls(nrec, nonce, db_size, sector, page_size)


@dataclass(frozen=True, slots=True)
class JournalSegment:
    """A segment: its header's file offset, the header, and where its records start."""

    offset: int
    header: JournalHeader
    records_offset: int


def _read_at(f: BinaryIO, offset: int, n: int) -> bytes:
    f.seek(offset)
    out = f.read(n)
    while len(out) < n:
        more = f.read(n - len(out))
        if not more:
            break
        out += more
    return out


def _file_size(f: BinaryIO) -> int:
    return f.seek(0, 2)


class JournalReader:
    """Walk a hot rollback journal as SQLite's playback would.

    Iterating yields (pgno, original page bytes) for every record that playback would write to the
    database, across all segments. `segments()` yields the segments, each followed by its records via
    `records(segment)`. After the walk, `stop_reason` tells why it ended ("eof", "bad magic",
    "bad checksum at offset N", ...).

    db_page_size: the database's page size, used when the journal header's page size is 0. If both are
    known and differ, SQLiteFormatError is raised (LiteFS never changes page size under a journal).
    Construction reads the first header; if it is missing or invalid the journal is not hot:
    `is_hot` is False and iteration yields nothing.
    """

    def __init__(self, f: BinaryIO, db_page_size: int | None = None) -> None:
        self._f = f
        self.size = _file_size(f)
        self.stop_reason: str | None = None
        self.first_header: JournalHeader | None = None
        self.page_size = 0
        self.sector_size = 0
        self._next_offset: int | None = None
        # SQLite checks a header fits in a sector using the pager's default sector size before reading
        # the real one; 512 is that default on the platforms LiteFS runs on.
        if self.size < 512:
            self.stop_reason = "journal shorter than one sector"
            return
        raw = _read_at(f, 0, JOURNAL_HEADER_SIZE)
        if not is_journal_header_valid(raw):
            self.stop_reason = "bad magic at offset 0"
            return
        try:
            hdr = JournalHeader.parse(raw)
        except SQLiteFormatError as e:
            self.stop_reason = str(e)
            return
        page_size = hdr.page_size or (db_page_size or 0)
        if page_size == 0:
            raise SQLiteFormatError("journal header page size is 0 and no database page size was given")
        if db_page_size is not None and page_size != db_page_size:
            raise SQLiteFormatError(
                f"journal page size {page_size} (header offset 24) differs from database page size {db_page_size}"
            )
        self.first_header = hdr
        self.page_size = page_size
        self.sector_size = hdr.sector_size

    @property
    def is_hot(self) -> bool:
        """True if the journal has a valid first header, so playback changes the database."""
        return self.first_header is not None

    @property
    def db_size(self) -> int:
        """Database size in pages before the transaction (from the first header); 0 if not hot."""
        return self.first_header.db_size if self.first_header else 0

    @property
    def record_size(self) -> int:
        """Bytes per record: page number, page, checksum."""
        return 4 + self.page_size + 4

    def _align(self, offset: int) -> int:
        s = self.sector_size
        return ((offset - 1) // s + 1) * s if offset else 0

    def segments(self) -> Iterator[JournalSegment]:
        """Yield each segment in order; consume `records(segment)` before asking for the next one."""
        if self.first_header is None:
            return
        offset = 0
        hdr: JournalHeader | None = self.first_header
        while True:
            if hdr is None:
                if offset + self.sector_size > self.size:
                    self.stop_reason = "eof"
                    return
                raw = _read_at(self._f, offset, JOURNAL_HEADER_SIZE)
                if not is_journal_header_valid(raw):
                    self.stop_reason = f"bad magic at offset {offset}"
                    return
                hdr = JournalHeader.parse(raw, self.sector_size)
            seg = JournalSegment(offset, hdr, offset + self.sector_size)
            self._next_offset = None
            yield seg
            if self._next_offset is None:
                # The caller skipped the records: walk them anyway to find the next header.
                for _ in self.records(seg):
                    pass
            if self.stop_reason is not None:
                return
            offset = self._align(self._next_offset or seg.records_offset)
            hdr = None

    def records(self, segment: JournalSegment) -> Iterator[tuple[int, bytes]]:
        """Yield (pgno, page) for each record of segment that playback would write."""
        hdr = segment.header
        rec_size = self.record_size
        pos = segment.records_offset
        nrec = hdr.record_count
        if nrec == NREC_TO_EOF:
            nrec = (self.size - pos) // rec_size
        lock_pgno = lock_page(self.page_size)
        try:
            for _ in range(nrec):
                raw = _read_at(self._f, pos, rec_size)
                if len(raw) < rec_size:
                    self.stop_reason = f"short record at offset {pos}"
                    return
                pos += rec_size
                pgno = _U32.unpack_from(raw, 0)[0]
                if pgno == 0 or pgno == lock_pgno:
                    self.stop_reason = f"invalid page number {pgno} at offset {pos - rec_size}"
                    return
                if pgno > self.db_size:
                    continue  # the page did not exist before the transaction: truncation removes it
                page = raw[4 : 4 + self.page_size]
                if journal_checksum(hdr.nonce, page) != _U32.unpack_from(raw, 4 + self.page_size)[0]:
                    self.stop_reason = f"bad checksum for page {pgno} at offset {pos - rec_size}"
                    return
                yield pgno, page
        finally:
            self._next_offset = pos

    def __iter__(self) -> Iterator[tuple[int, bytes]]:
        for seg in self.segments():
            yield from self.records(seg)


def rollback_journal(journal_f: BinaryIO, db_f: BinaryIO) -> bool:
    """Play a hot journal back into the database file, as SQLite does on opening a hot journal.

    Truncates (or extends) the database to the original size from the first header, then writes every
    valid original page. Returns True if the journal was hot (the database may have changed), False if
    it had no valid header (nothing was done). The journal itself is left alone: the caller deletes or
    invalidates it afterwards, and must fsync the database first if durability matters.
    """
    reader = JournalReader(journal_f)
    if not reader.is_hot:
        return False
    page_size = reader.page_size
    _truncate_like_sqlite(db_f, reader.db_size * page_size, page_size)
    for pgno, page in reader:
        db_f.seek((pgno - 1) * page_size)
        db_f.write(page)
    db_f.flush()
    return True


def _truncate_like_sqlite(db_f: BinaryIO, new_size: int, page_size: int) -> None:
    """SQLite's pager_truncate: shrink to new_size, or grow by writing a zero last page if a page short."""
    current = _file_size(db_f)
    if current > new_size:
        db_f.truncate(new_size)
    elif current + page_size <= new_size:
        db_f.seek(new_size - page_size)
        db_f.write(bytes(page_size))
