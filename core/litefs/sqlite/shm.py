"""The WAL-index (`-shm`) header: what LiteFS rewrites so running SQLite readers notice new pages.

The first 136 bytes of the shm file are two identical copies of the 48-byte WalIndexHdr followed by the
40-byte WalCkptInfo. The file is memory-mapped by SQLite, so integers are in the host's native byte
order -- except the two salts, which SQLite copies verbatim from the WAL header (big-endian bytes). The
header checksum is SQLite's WAL checksum over the first 40 bytes read as native words.

WalIndexHdr: iVersion u32, unused u32, iChange u32, isInit u8, bigEndCksum u8, szPage u16 (65536 is
stored as 1), mxFrame u32, nPage u32, aFrameCksum 2*u32, aSalt 8 bytes, aCksum 2*u32.
WalCkptInfo: nBackfill u32, aReadMark 5*u32, aLock 8 bytes, nBackfillAttempted u32, notUsed0 u32.
"""

from __future__ import annotations

import struct
import sys
from dataclasses import dataclass

from litefs.sqlite.errors import SQLiteFormatError
from litefs.sqlite.header import is_valid_page_size
from litefs.sqlite.wal import wal_checksum

WAL_INDEX_VERSION = 3007000
WAL_INDEX_HEADER_SIZE = 48
WAL_CKPT_INFO_OFFSET = 96
WAL_INDEX_HEADER_REGION = 136  # two header copies + WalCkptInfo
SHM_BLOCK_SIZE = 32768  # the first wal-index block, which LiteFS truncates the shm file to
READMARK_NOT_USED = 0xFFFFFFFF

_NATIVE_BIG = sys.byteorder == "big"
_HDR_HEAD = struct.Struct("=IIIBBHIIII")  # bytes 0..31: everything before the salts
_SALTS = struct.Struct(">II")
_CKSUM = struct.Struct("=II")
_CKPT = struct.Struct("=6I8xII")


@dataclass(frozen=True, slots=True)
class WalIndexHeader:
    """The parsed shm header region.

    `valid` is what SQLite checks before trusting the header without running recovery: both copies
    equal, isInit set and the checksum right.
    """

    version: int
    change_counter: int
    is_init: int
    big_endian_checksum: bool
    page_size: int
    max_frame: int
    page_count: int
    frame_checksum: tuple[int, int]
    salts: tuple[int, int]
    checksum: tuple[int, int]
    copies_match: bool
    checksum_valid: bool
    n_backfill: int
    read_marks: tuple[int, int, int, int, int]
    n_backfill_attempted: int

    @property
    def valid(self) -> bool:
        """True if SQLite would accept this header as is."""
        return self.copies_match and self.checksum_valid and self.is_init == 1


def _encode_header(
    change_counter: int,
    page_size: int,
    page_count: int,
    frame_checksum: tuple[int, int],
    salts: tuple[int, int],
    big_endian_checksum: bool,
) -> bytes:
    stored_size = 1 if page_size == 65536 else page_size
    head = _HDR_HEAD.pack(
        WAL_INDEX_VERSION,
        0,
        change_counter & 0xFFFFFFFF,
        1,
        1 if big_endian_checksum else 0,
        stored_size,
        0,  # mxFrame: the WAL is empty, everything is in the database file
        page_count,
        frame_checksum[0],
        frame_checksum[1],
    ) + _SALTS.pack(*salts)
    return head + _CKSUM.pack(*wal_checksum(head, 0, 0, _NATIVE_BIG))


def build_wal_index_header(
    *,
    change_counter: int,
    page_size: int,
    page_count: int,
    frame_checksum: tuple[int, int],
    salts: tuple[int, int],
    big_endian_checksum: bool,
) -> bytes:
    """Return the first 136 bytes of a WAL-index whose WAL is empty (mxFrame 0).

    Write them at offset 0 of the `-shm` file (then truncate it to SHM_BLOCK_SIZE, as LiteFS does).
    change_counter should be the previous header's plus one so that readers drop their page cache;
    frame_checksum and salts are the WAL's current ones (salts as read big-endian from the WAL header).
    Raises SQLiteFormatError for an invalid page size.
    """
    if not is_valid_page_size(page_size):
        raise SQLiteFormatError(f"invalid page size {page_size} for the WAL-index header")
    hdr = _encode_header(change_counter, page_size, page_count, frame_checksum, salts, big_endian_checksum)
    ckpt = _CKPT.pack(0, 0, *([READMARK_NOT_USED] * 4), 0, 0)
    out = hdr + hdr + ckpt
    assert len(out) == WAL_INDEX_HEADER_REGION
    return out


def parse_wal_index_header(data: bytes) -> WalIndexHeader:
    """Parse the first 136 bytes of a `-shm` file (the first copy of the header is reported).

    Raises SQLiteFormatError if data is shorter than 136 bytes.
    """
    if len(data) < WAL_INDEX_HEADER_REGION:
        raise SQLiteFormatError(
            f"WAL-index header region is {len(data)} bytes, need {WAL_INDEX_HEADER_REGION}"
        )
    first = bytes(data[:WAL_INDEX_HEADER_SIZE])
    second = bytes(data[WAL_INDEX_HEADER_SIZE : 2 * WAL_INDEX_HEADER_SIZE])
    version, _unused, change, is_init, big_end, stored_size, mx_frame, n_page, fck1, fck2 = (
        _HDR_HEAD.unpack_from(first, 0)
    )
    salts = _SALTS.unpack_from(first, 32)
    checksum = _CKSUM.unpack_from(first, 40)
    n_backfill, rm0, rm1, rm2, rm3, rm4, attempted, _ = _CKPT.unpack_from(data, WAL_CKPT_INFO_OFFSET)
    return WalIndexHeader(
        version=version,
        change_counter=change,
        is_init=is_init,
        big_endian_checksum=bool(big_end),
        page_size=65536 if stored_size == 1 else stored_size,
        max_frame=mx_frame,
        page_count=n_page,
        frame_checksum=(fck1, fck2),
        salts=salts,
        checksum=checksum,
        copies_match=first == second,
        checksum_valid=wal_checksum(first[:40], 0, 0, _NATIVE_BIG) == checksum,
        n_backfill=n_backfill,
        read_marks=(rm0, rm1, rm2, rm3, rm4),
        n_backfill_attempted=attempted,
    )
