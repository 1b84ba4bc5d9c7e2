"""Pure parsers for SQLite's files: database header, rollback journal, WAL and the WAL-index header.

Functions over bytes and file objects only -- no FUSE, no trio. Everything raises SQLiteFormatError
(a ValueError) for bytes SQLite could not have written.
"""

from litefs.sqlite.errors import SQLiteFormatError
from litefs.sqlite.header import (
    DATABASE_HEADER_SIZE,
    SQLITE_HEADER_MAGIC,
    DatabaseHeader,
    decode_page_size,
    is_valid_page_size,
    lock_page,
)
from litefs.sqlite.journal import (
    JOURNAL_MAGIC,
    JournalHeader,
    JournalReader,
    JournalSegment,
    is_journal_header_valid,
    journal_checksum,
    rollback_journal,
)
from litefs.sqlite.shm import (
    SHM_BLOCK_SIZE,
    WAL_INDEX_HEADER_REGION,
    WalIndexHeader,
    build_wal_index_header,
    parse_wal_index_header,
)
from litefs.sqlite.wal import (
    WAL_FRAME_HEADER_SIZE,
    WAL_HEADER_SIZE,
    WALFrame,
    WALHeader,
    WALReader,
    WALTransaction,
    read_wal_page,
    scan_wal_transactions,
    wal_checksum,
)

__all__ = [
    "DATABASE_HEADER_SIZE",
    "JOURNAL_MAGIC",
    "SHM_BLOCK_SIZE",
    "SQLITE_HEADER_MAGIC",
    "WAL_FRAME_HEADER_SIZE",
    "WAL_HEADER_SIZE",
    "WAL_INDEX_HEADER_REGION",
    "DatabaseHeader",
    "JournalHeader",
    "JournalReader",
    "JournalSegment",
    "SQLiteFormatError",
    "WALFrame",
    "WALHeader",
    "WALReader",
    "WALTransaction",
    "WalIndexHeader",
    "build_wal_index_header",
    "decode_page_size",
    "is_journal_header_valid",
    "is_valid_page_size",
    "journal_checksum",
    "lock_page",
    "parse_wal_index_header",
    "read_wal_page",
    "rollback_journal",
    "scan_wal_transactions",
    "wal_checksum",
]
