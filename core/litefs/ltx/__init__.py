"""LTX v1: the file format LiteFS replicates and backs up (codec, checksums, tracker, compaction).

Pure code (no trio, FUSE or sockets), byte-compatible with LiteFS v0.5.14 / ltx v0.3.14. Every malformed
input raises :class:`LTXError`. See /work/shared/reference/ltx.md for the format.
"""

from litefs.ltx.apply import apply_ltx, write_snapshot
from litefs.ltx.checksum import (
    CHECKSUM_FLAG,
    EMPTY_DATABASE_CHECKSUM,
    crc64,
    database_checksum,
    is_valid_page_size,
    lock_pgno,
    page_checksum,
)
from litefs.ltx.compact import compact
from litefs.ltx.decoder import Decoder, decode_file, peek_header
from litefs.ltx.encoder import Encoder, encode_ltx
from litefs.ltx.errors import LTXError
from litefs.ltx.header import FLAG_COMPRESS_LZ4, HEADER_SIZE, PAGE_HEADER_SIZE, TRAILER_SIZE, Header, Trailer
from litefs.ltx.pos import (
    Pos,
    format_checksum,
    format_filename,
    format_txid,
    parse_checksum,
    parse_filename,
    parse_txid,
)
from litefs.ltx.tracker import ChecksumTracker

__all__ = [
    "CHECKSUM_FLAG",
    "EMPTY_DATABASE_CHECKSUM",
    "FLAG_COMPRESS_LZ4",
    "HEADER_SIZE",
    "PAGE_HEADER_SIZE",
    "TRAILER_SIZE",
    "ChecksumTracker",
    "Decoder",
    "Encoder",
    "encode_ltx",
    "Header",
    "LTXError",
    "Pos",
    "Trailer",
    "apply_ltx",
    "compact",
    "crc64",
    "database_checksum",
    "decode_file",
    "format_checksum",
    "format_filename",
    "format_txid",
    "is_valid_page_size",
    "lock_pgno",
    "page_checksum",
    "parse_checksum",
    "parse_filename",
    "parse_txid",
    "peek_header",
    "write_snapshot",
]
