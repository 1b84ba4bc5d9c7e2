"""SQLite write-ahead log: checksum, header, frame reader and committed-transaction scanner.

Layout (https://www.sqlite.org/fileformat2.html §4): a 32-byte header (magic, version 3007000, page size,
checkpoint sequence, two salts, checksum of the first 24 bytes), then frames of a 24-byte header (page
number, commit size or 0, the two salts, the cumulative checksum) followed by one page. All integers
are big-endian; the checksum reads 32-bit words in the byte order named by the magic's low bit.

A frame is valid only while its salts equal the header's and its checksum continues the running
checksum; SQLite stops reading the log at the first frame that is not, and so does everything here.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

import numpy as np

from litefs.sqlite.errors import SQLiteFormatError
from litefs.sqlite.header import is_valid_page_size

WAL_HEADER_SIZE = 32
WAL_FRAME_HEADER_SIZE = 24
WAL_MAGIC_LE = 0x377F0682
WAL_MAGIC_BE = 0x377F0683
WAL_VERSION = 3007000

_M32 = 0xFFFFFFFF
_HEADER = struct.Struct(">8I")
_FRAME_HEADER = struct.Struct(">6I")
_word_structs: dict[tuple[int, bool], struct.Struct] = {}


def _words(data: bytes, big_endian: bool) -> tuple[int, ...]:
    n = len(data) // 4
    key = (n, big_endian)
    s = _word_structs.get(key)
    if s is None:
        s = _word_structs[key] = struct.Struct(f"{'>' if big_endian else '<'}{n}I")
    return s.unpack(data)


def wal_checksum_py(data: bytes, s1: int, s2: int, big_endian: bool) -> tuple[int, int]:
    """Pure-Python WAL checksum: the reference the vectorised :func:`wal_checksum` is tested against.

    Each pair of 32-bit words (x0, x1), read big- or little-endian, does s1 += x0 + s2; s2 += x1 + s1
    modulo 2**32. The loop is unrolled eight pairs at a time and masked once per round: the sums grow
    by less than a factor 2.7 per pair, so they stay far below 2**64 between masks.
    """
    if len(data) % 8:
        raise ValueError(f"WAL checksum input must be a multiple of 8 bytes, got {len(data)}")
    words = _words(data, big_endian)
    head = len(words) % 16
    i = 0
    while i < head:
        s1 = (s1 + words[i] + s2) & _M32
        s2 = (s2 + words[i + 1] + s1) & _M32
        i += 2
    it = iter(words[head:] if head else words)
    for a0, b0, a1, b1, a2, b2, a3, b3, a4, b4, a5, b5, a6, b6, a7, b7 in zip(*[it] * 16, strict=True):
        s1 += a0 + s2
        s2 += b0 + s1
        s1 += a1 + s2
        s2 += b1 + s1
        s1 += a2 + s2
        s2 += b2 + s1
        s1 += a3 + s2
        s2 += b3 + s1
        s1 += a4 + s2
        s2 += b4 + s1
        s1 += a5 + s2
        s2 += b5 + s1
        s1 += a6 + s2
        s2 += b6 + s1
        s1 += a7 + s2
        s2 += b7 + s1
        s1 &= _M32
        s2 &= _M32
    return s1, s2


# The checksum is linear. One pair step is (s1, s2) <- M (s1, s2) + N (x0, x1) with M = [[1, 1], [1, 2]]
# and N = [[1, 0], [1, 1]], so after n pairs (s1, s2) = M^n (s1, s2) + sum_k M^(n-1-k) N (x0_k, x1_k):
# every output word is a fixed linear combination of the input words. The coefficients (mod 2**32)
# depend only on n, so they are computed once per input length, and a whole page then costs one
# integer matrix-vector product. numpy's uint64 arithmetic wraps modulo 2**64, a multiple of 2**32,
# so the result taken modulo 2**32 is exact.
_VECTOR_MIN_BYTES = 256  # below this the Python loop is faster than numpy's per-call overhead
_coefficients: dict[int, tuple[np.ndarray, tuple[int, int, int, int]]] = {}


def _coefficients_for(pairs: int) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """(2*pairs x 2 coefficient matrix, M^pairs as (a, b, c, d)) for inputs of `pairs` word pairs."""
    found = _coefficients.get(pairs)
    if found is not None:
        return found
    coef = np.empty((2, 2 * pairs), dtype=np.uint64)
    a, b, c, d = 1, 0, 0, 1  # M^0; the pair at index k is weighted by M^(pairs-1-k) N
    for j in range(pairs):
        k = 2 * (pairs - 1 - j)
        # M^j N = [[a + b, b], [c + d, d]]
        coef[0, k] = (a + b) & _M32
        coef[0, k + 1] = b
        coef[1, k] = (c + d) & _M32
        coef[1, k + 1] = d
        a, b, c, d = (a + b) & _M32, (a + 2 * b) & _M32, (c + d) & _M32, (c + 2 * d) & _M32
    # Stored transposed (2*pairs x 2, C order): a row vector times it is the faster product.
    coef = np.ascontiguousarray(coef.T)
    coef.setflags(write=False)
    found = _coefficients[pairs] = (coef, (a, b, c, d))
    return found


_LE_WORDS = np.dtype("<u4")
_BE_WORDS = np.dtype(">u4")


def wal_checksum(data: bytes, s1: int, s2: int, big_endian: bool) -> tuple[int, int]:
    """Continue SQLite's WAL checksum (s1, s2) over data, whose length must be a multiple of 8.

    Same result as :func:`wal_checksum_py`; inputs of a page or more are computed as one vectorised
    product (about 20x faster than the Python loop on a 4 KiB page).
    """
    n = len(data)
    if n < _VECTOR_MIN_BYTES:
        return wal_checksum_py(data, s1, s2, big_endian)
    if n % 8:
        raise ValueError(f"WAL checksum input must be a multiple of 8 bytes, got {n}")
    coef, (a, b, c, d) = _coefficients_for(n // 8)
    words = np.frombuffer(data, dtype=_BE_WORDS if big_endian else _LE_WORDS).astype(np.uint64)
    x0, x1 = (words @ coef).tolist()
    return (a * s1 + b * s2 + x0) & _M32, (c * s1 + d * s2 + x1) & _M32


@dataclass(frozen=True, slots=True)
class WALHeader:
    """The 32-byte WAL header."""

    magic: int
    version: int
    page_size: int
    checkpoint_seq: int
    salt1: int
    salt2: int
    checksum1: int
    checksum2: int

    @property
    def big_endian(self) -> bool:
        """True when frame checksums read words big-endian (magic 0x377f0683)."""
        return self.magic == WAL_MAGIC_BE

    @property
    def salts(self) -> tuple[int, int]:
        """(salt1, salt2) as big-endian integers."""
        return self.salt1, self.salt2

    @property
    def checksum(self) -> tuple[int, int]:
        """The header checksum: the running checksum that the first frame continues."""
        return self.checksum1, self.checksum2

    @property
    def frame_size(self) -> int:
        """Bytes per frame: header plus one page."""
        return WAL_FRAME_HEADER_SIZE + self.page_size

    def frame_offset(self, index: int) -> int:
        """File offset of the frame header of frame number `index` (0-based)."""
        return WAL_HEADER_SIZE + index * self.frame_size

    @classmethod
    def parse(cls, data: bytes, *, verify_checksum: bool = True) -> WALHeader:
        """Parse and validate a WAL header (only the first 32 bytes of data are read).

        Raises SQLiteFormatError on short input, unknown magic, a version other than 3007000, an invalid
        page size or (unless verify_checksum is False) a header checksum mismatch.
        """
        if len(data) < WAL_HEADER_SIZE:
            raise SQLiteFormatError(f"WAL header is {len(data)} bytes, need {WAL_HEADER_SIZE}")
        magic, version, page_size, seq, salt1, salt2, ck1, ck2 = _HEADER.unpack_from(data, 0)
        if magic not in (WAL_MAGIC_LE, WAL_MAGIC_BE):
            raise SQLiteFormatError(f"bad WAL magic {magic:#010x} at offset 0")
        if version != WAL_VERSION:
            raise SQLiteFormatError(f"unsupported WAL version {version} at offset 4")
        if not is_valid_page_size(page_size):
            raise SQLiteFormatError(f"invalid WAL page size {page_size} at offset 8")
        hdr = cls(magic, version, page_size, seq, salt1, salt2, ck1, ck2)
        if verify_checksum:
            expected = wal_checksum(bytes(data[:24]), 0, 0, hdr.big_endian)
            if expected != (ck1, ck2):
                raise SQLiteFormatError(
                    f"WAL header checksum mismatch at offset 24: stored {ck1:08x}/{ck2:08x}, "
                    f"computed {expected[0]:08x}/{expected[1]:08x}"
                )
        return hdr

    @classmethod
    def build(
        cls, *, page_size: int, salts: tuple[int, int], checkpoint_seq: int = 0, big_endian: bool = False
    ) -> bytes:
        """Encode a valid 32-bit header (for tests and for writers that start a new WAL)."""
        magic = WAL_MAGIC_BE if big_endian else WAL_MAGIC_LE
        head = struct.pack(">6I", magic, WAL_VERSION, page_size, checkpoint_seq, salts[0], salts[1])
        return head + struct.pack(">2I", *wal_checksum(head, 0, 0, big_endian))


@dataclass(frozen=True, slots=True)
class WALFrame:
    """One valid frame: where it is, what it says and the running checksum after it."""

    offset: int
    pgno: int
    commit: int
    data: bytes
    checksum: tuple[int, int]

    @property
    def data_offset(self) -> int:
        """File offset of the page data."""
        return self.offset + WAL_FRAME_HEADER_SIZE


def _read_at(f: BinaryIO, offset: int, n: int) -> bytes:
    """Read up to n bytes at offset (fewer at EOF)."""
    f.seek(offset)
    out = f.read(n)
    if len(out) < n:  # a raw or unbuffered file may return short reads before EOF
        parts = [out]
        got = len(out)
        while got < n:
            more = f.read(n - got)
            if not more:
                break
            parts.append(more)
            got += len(more)
        out = b"".join(parts)
    return out


def _check_frame(
    hdr_bytes: bytes, page: bytes, header: WALHeader, checksum: tuple[int, int]
) -> tuple[int, int, tuple[int, int]] | None:
    """Validate one frame against the header salts and the running checksum.

    Returns (pgno, commit, new checksum), or None when SQLite would treat the frame as the end of the log.
    """
    pgno, commit, salt1, salt2, ck1, ck2 = _FRAME_HEADER.unpack(hdr_bytes)
    if pgno == 0 or salt1 != header.salt1 or salt2 != header.salt2:
        return None
    # One vectorised pass over the frame header's first 8 bytes and the page (a copy of one page
    # costs less than a second checksum call).
    s = wal_checksum(hdr_bytes[:8] + page, checksum[0], checksum[1], header.big_endian)
    if s != (ck1, ck2):
        return None
    return pgno, commit, s


class WALReader:
    """Read a WAL file frame by frame, the way SQLite's recovery does.

    `read_header()` first; then `read_frame()` (or iterate) until it returns None, which happens at EOF,
    at a partial frame, or at the first frame whose salts or cumulative checksum do not match. After
    that the reader stays at the end; `offset` is the offset of the last frame returned and
    `end_offset` the offset just past it.
    """

    def __init__(self, f: BinaryIO) -> None:
        self._f = f
        self.header: WALHeader | None = None
        self.offset = 0
        self.end_offset = 0
        self.checksum: tuple[int, int] = (0, 0)
        self._done = False

    def read_header(self) -> WALHeader | None:
        """Read and validate the header.

        Returns None (an empty log, to SQLite) when fewer than 32 bytes exist or the header checksum does
        not match (a torn header write). Raises SQLiteFormatError for a bad magic, version or page size.
        """
        data = _read_at(self._f, 0, WAL_HEADER_SIZE)
        if len(data) < WAL_HEADER_SIZE:
            self._done = True
            return None
        hdr = WALHeader.parse(data, verify_checksum=False)
        if wal_checksum(data[:24], 0, 0, hdr.big_endian) != hdr.checksum:
            self._done = True
            return None
        self.header = hdr
        self.end_offset = WAL_HEADER_SIZE
        self.checksum = hdr.checksum
        return hdr

    def read_frame(self) -> WALFrame | None:
        """Return the next valid frame, or None at the end of the valid log."""
        if self._done:
            return None
        if self.header is None:
            raise SQLiteFormatError("WALReader.read_frame() called before a successful read_header()")
        hdr = self.header
        pos = self.end_offset
        raw = _read_at(self._f, pos, hdr.frame_size)
        if len(raw) < hdr.frame_size:
            self._done = True
            return None
        checked = _check_frame(raw[:WAL_FRAME_HEADER_SIZE], raw[WAL_FRAME_HEADER_SIZE:], hdr, self.checksum)
        if checked is None:
            self._done = True
            return None
        pgno, commit, self.checksum = checked
        self.offset = pos
        self.end_offset = pos + hdr.frame_size
        return WALFrame(pos, pgno, commit, raw[WAL_FRAME_HEADER_SIZE:], self.checksum)

    def __iter__(self) -> Iterator[WALFrame]:
        if self.header is None and not self._done and self.read_header() is None:
            return
        while (frame := self.read_frame()) is not None:
            yield frame


@dataclass(slots=True)
class WALTransaction:
    """One committed transaction in the WAL.

    start_offset is the first frame's header offset, end_offset the offset just past the commit frame
    (so end_offset - start_offset is LTX's WALSize); commit is the database size in pages after it;
    pages maps each page number to the offset of the page data of its last frame in the transaction.
    """

    start_offset: int
    end_offset: int
    commit: int
    pages: dict[int, int] = field(default_factory=dict)
    end_checksum: tuple[int, int] = (0, 0)


def scan_wal_transactions(
    f: BinaryIO,
    *,
    header: WALHeader,
    start_offset: int = WAL_HEADER_SIZE,
    start_checksum: tuple[int, int] | None = None,
    end_offset: int | None = None,
) -> list[WALTransaction]:
    """Return the complete committed transactions found from start_offset on, in order.

    With ``end_offset`` the scan stops there (a frame that would cross it is not read).

    Frames are validated against header's salts and the running checksum, starting from start_checksum
    (the checksum stored in the frame just before start_offset, or the header checksum at offset 32,
    which is the default). Scanning stops at EOF, a partial frame or the first invalid frame; frames
    after the last commit frame belong to no transaction and are not returned.

    Raises SQLiteFormatError if start_offset is not on a frame boundary for header.page_size.
    """
    if start_checksum is None:
        if start_offset != WAL_HEADER_SIZE:
            raise SQLiteFormatError(f"start_checksum is required when scanning from offset {start_offset}")
        start_checksum = header.checksum
    if start_offset < WAL_HEADER_SIZE or (start_offset - WAL_HEADER_SIZE) % header.frame_size:
        raise SQLiteFormatError(
            f"WAL offset {start_offset} is not a frame boundary for page size {header.page_size}"
        )
    frame_size = header.frame_size
    txns: list[WALTransaction] = []
    checksum = start_checksum
    pos = start_offset
    txn_start = pos
    pages: dict[int, int] = {}
    while end_offset is None or pos + frame_size <= end_offset:
        raw = _read_at(f, pos, frame_size)
        if len(raw) < frame_size:
            break
        checked = _check_frame(raw[:WAL_FRAME_HEADER_SIZE], raw[WAL_FRAME_HEADER_SIZE:], header, checksum)
        if checked is None:
            break
        pgno, commit, checksum = checked
        pages[pgno] = pos + WAL_FRAME_HEADER_SIZE
        pos += frame_size
        if commit:
            txns.append(WALTransaction(txn_start, pos, commit, pages, checksum))
            txn_start = pos
            pages = {}
    return txns


def read_wal_page(f: BinaryIO, frame_offset: int, page_size: int) -> bytes:
    """Read one page of WAL frame data.

    frame_offset is the offset of the page data itself -- the value in WALTransaction.pages or
    WALFrame.data_offset (a frame header offset + 24). Raises SQLiteFormatError if the file ends first.
    """
    data = _read_at(f, frame_offset, page_size)
    if len(data) != page_size:
        raise SQLiteFormatError(
            f"WAL page at offset {frame_offset} is truncated: {len(data)} of {page_size} bytes"
        )
    return data
