"""The 100-byte database header at the start of page 1 (https://www.sqlite.org/fileformat2.html §1.3)."""

from __future__ import annotations

import struct
from dataclasses import dataclass

from litefs.sqlite.errors import SQLiteFormatError

SQLITE_HEADER_MAGIC = b"SQLite format 3\x00"
DATABASE_HEADER_SIZE = 100

# Offsets 16..99 of the header, big-endian. Padding bytes ("x") cover fields nobody here needs.
_FIELDS = struct.Struct(">HBBBBBBIIIIIIIIIIII20xII")


def decode_page_size(raw: int) -> int:
    """Turn a stored 16-bit page size into bytes (SQLite stores 65536 as 1).

    Raises SQLiteFormatError unless the result is a power of two in 512..65536.
    """
    size = 65536 if raw == 1 else raw
    if not is_valid_page_size(size):
        raise SQLiteFormatError(f"invalid page size {raw} in database header at offset 16")
    return size


def is_valid_page_size(size: int) -> bool:
    """True for the page sizes SQLite accepts: powers of two from 512 to 65536."""
    return 512 <= size <= 65536 and size & (size - 1) == 0


def lock_page(page_size: int) -> int:
    """The page number holding the byte-range locks at offset 1 GiB; SQLite never stores data there."""
    return 0x40000000 // page_size + 1


@dataclass(frozen=True, slots=True)
class DatabaseHeader:
    """The fields of the database header that LiteFS reads."""

    page_size: int
    write_version: int
    read_version: int
    reserved_space: int
    change_counter: int
    page_count: int
    freelist_trunk: int
    freelist_count: int
    schema_cookie: int
    schema_format: int
    default_cache_size: int
    autovacuum_top_root: int
    text_encoding: int
    user_version: int
    incremental_vacuum: int
    application_id: int
    version_valid_for: int
    sqlite_version: int

    @property
    def is_wal(self) -> bool:
        """True when the file is in WAL mode (write and read versions both 2), as LiteFS decides it."""
        return self.write_version == 2 and self.read_version == 2

    @classmethod
    def parse(cls, data: bytes) -> DatabaseHeader:
        """Parse the first 100 bytes of a database file (longer input is fine: only 100 bytes are read).

        Raises SQLiteFormatError on short input, a wrong magic string or an invalid page size.
        """
        if len(data) < DATABASE_HEADER_SIZE:
            raise SQLiteFormatError(f"database header is {len(data)} bytes, need {DATABASE_HEADER_SIZE}")
        if bytes(data[:16]) != SQLITE_HEADER_MAGIC:
            raise SQLiteFormatError(f"bad database header magic {bytes(data[:16])!r} at offset 0")
        (
            raw_page_size,
            write_version,
            read_version,
            reserved_space,
            _max_frac,
            _min_frac,
            _leaf_frac,
            change_counter,
            page_count,
            freelist_trunk,
            freelist_count,
            schema_cookie,
            schema_format,
            default_cache_size,
            autovacuum_top_root,
            text_encoding,
            user_version,
            incremental_vacuum,
            application_id,
            version_valid_for,
            sqlite_version,
        ) = _FIELDS.unpack_from(data, 16)
        return cls(
            page_size=decode_page_size(raw_page_size),
            write_version=write_version,
            read_version=read_version,
            reserved_space=reserved_space,
            change_counter=change_counter,
            page_count=page_count,
            freelist_trunk=freelist_trunk,
            freelist_count=freelist_count,
            schema_cookie=schema_cookie,
            schema_format=schema_format,
            default_cache_size=default_cache_size,
            autovacuum_top_root=autovacuum_top_root,
            text_encoding=text_encoding,
            user_version=user_version,
            incremental_vacuum=incremental_vacuum,
            application_id=application_id,
            version_valid_for=version_valid_for,
            sqlite_version=sqlite_version,
        )
