"""The 100-byte LTX v1 header and the 16-byte trailer (ltx.md sections 2 and 4)."""

from __future__ import annotations

import struct
from dataclasses import dataclass

from litefs.ltx.checksum import CHECKSUM_FLAG, is_valid_page_size
from litefs.ltx.errors import LTXError
from litefs.ltx.pos import Pos

MAGIC = b"LTX1"
HEADER_SIZE = 100
TRAILER_SIZE = 16
PAGE_HEADER_SIZE = 4
FLAG_COMPRESS_LZ4 = 1
FLAG_MASK = FLAG_COMPRESS_LZ4


def record_pgnos(first: int, n: int) -> bytes:
    """The page headers of ``n`` page records from page ``first`` on: big-endian u32s, concatenated."""
    return struct.pack(f">{n}I", *range(first, first + n))


def read_record_pgnos(records: bytes | bytearray | memoryview, rec: int, n: int) -> bytearray:
    """The page headers of ``n`` records of ``rec`` bytes each, concatenated: one strided slice per
    header byte instead of a Python step per record."""
    view = memoryview(records)
    out = bytearray(n * PAGE_HEADER_SIZE)
    for k in range(PAGE_HEADER_SIZE):
        out[k::PAGE_HEADER_SIZE] = view[k : n * rec : rec].tobytes()
    return out


def write_record_pgnos(records: bytearray | memoryview, rec: int, first: int, n: int) -> None:
    """Fill in the page headers of ``n`` records of ``rec`` bytes each with ``first`` on."""
    headers = record_pgnos(first, n)
    for k in range(PAGE_HEADER_SIZE):
        records[k : n * rec : rec] = headers[k::PAGE_HEADER_SIZE]


# magic, flags, page size, commit, min, max, timestamp, pre-apply, WAL offset, WAL size, salt1, salt2,
# node id, 20 reserved bytes.
_HEADER = struct.Struct(">4sIIIQQqQqqIIQ20x")
_TRAILER = struct.Struct(">QQ")
assert _HEADER.size == HEADER_SIZE and _TRAILER.size == TRAILER_SIZE

_U32 = (1 << 32) - 1
_U64 = (1 << 64) - 1
_I64_MIN, _I64_MAX = -(1 << 63), (1 << 63) - 1


def _int_in(value: object, lo: int, hi: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and lo <= value <= hi


@dataclass
class Header:
    """LTX v1 header fields. ``timestamp`` is milliseconds since the Unix epoch."""

    flags: int = 0
    page_size: int = 4096
    commit: int = 0
    min_txid: int = 1
    max_txid: int = 1
    timestamp: int = 0
    pre_apply_checksum: int = 0
    wal_offset: int = 0
    wal_size: int = 0
    wal_salt1: int = 0
    wal_salt2: int = 0
    node_id: int = 0

    @property
    def is_snapshot(self) -> bool:
        """A snapshot holds the whole database; that is the case exactly when it starts at TXID 1."""
        return self.min_txid == 1

    @property
    def compressed(self) -> bool:
        return bool(self.flags & FLAG_COMPRESS_LZ4)

    @property
    def pre_apply_pos(self) -> Pos:
        """Position the database must be at before this file applies: (min_txid - 1, pre-apply checksum)."""
        return Pos(self.min_txid - 1, self.pre_apply_checksum)

    def _values(self) -> tuple[int, ...]:
        """The fields after the magic, in on-disk order."""
        return (
            self.flags,
            self.page_size,
            self.commit,
            self.min_txid,
            self.max_txid,
            self.timestamp,
            self.pre_apply_checksum,
            self.wal_offset,
            self.wal_size,
            self.wal_salt1,
            self.wal_salt2,
            self.node_id,
        )

    def validate(self) -> None:
        """Check every LTX v1 header rule; raise ``LTXError`` naming the first broken one."""
        # Every commit validates a header, so the common case (all plain ints in range) is checked in
        # one pass; only a failure walks the fields one by one to name the culprit.
        values = self._values()
        if not (
            all(type(v) is int for v in values)
            and 0 <= self.flags <= _U32
            and 0 <= self.page_size <= _U32
            and 0 <= self.commit <= _U32
            and 0 <= self.min_txid <= _U64
            and 0 <= self.max_txid <= _U64
            and _I64_MIN <= self.timestamp <= _I64_MAX
            and 0 <= self.pre_apply_checksum <= _U64
            and _I64_MIN <= self.wal_offset <= _I64_MAX
            and _I64_MIN <= self.wal_size <= _I64_MAX
            and 0 <= self.wal_salt1 <= _U32
            and 0 <= self.wal_salt2 <= _U32
            and 0 <= self.node_id <= _U64
        ):
            self._validate_fields()
        if self.flags & ~FLAG_MASK:
            raise LTXError(f"invalid LTX header: unsupported flags 0x{self.flags:08x} (offset 4)")
        if not is_valid_page_size(self.page_size):
            raise LTXError(f"invalid LTX header: page size {self.page_size} (offset 8)")
        if self.min_txid == 0:
            raise LTXError("invalid LTX header: min TXID is 0 (offset 16)")
        if self.max_txid == 0:
            raise LTXError("invalid LTX header: max TXID is 0 (offset 24)")
        if self.min_txid > self.max_txid:
            raise LTXError(
                f"invalid LTX header: min TXID {self.min_txid:016x} > max TXID {self.max_txid:016x}"
            )
        if self.wal_offset < 0:
            raise LTXError(f"invalid LTX header: negative WAL offset {self.wal_offset} (offset 48)")
        if self.wal_size < 0:
            raise LTXError(f"invalid LTX header: negative WAL size {self.wal_size} (offset 56)")
        if (self.wal_salt1 or self.wal_salt2) and not (self.wal_offset and self.wal_size):
            raise LTXError("invalid LTX header: WAL salts set without a WAL offset and size")
        if bool(self.wal_offset) != bool(self.wal_size):
            raise LTXError("invalid LTX header: WAL offset and WAL size must be both zero or both set")
        if self.is_snapshot:
            if self.pre_apply_checksum != 0:
                raise LTXError(
                    "invalid LTX header: snapshot (min TXID 1) must have pre-apply checksum 0 (offset 40)"
                )
        elif not self.pre_apply_checksum & CHECKSUM_FLAG:
            raise LTXError(
                f"invalid LTX header: pre-apply checksum {self.pre_apply_checksum:016x} lacks the "
                "checksum flag (offset 40)"
            )

    def _validate_fields(self) -> None:
        for name, lo, hi in (
            ("flags", 0, _U32),
            ("page_size", 0, _U32),
            ("commit", 0, _U32),
            ("min_txid", 0, _U64),
            ("max_txid", 0, _U64),
            ("timestamp", _I64_MIN, _I64_MAX),
            ("pre_apply_checksum", 0, _U64),
            ("wal_offset", _I64_MIN, _I64_MAX),
            ("wal_size", _I64_MIN, _I64_MAX),
            ("wal_salt1", 0, _U32),
            ("wal_salt2", 0, _U32),
            ("node_id", 0, _U64),
        ):
            value = getattr(self, name)
            if not _int_in(value, lo, hi):
                raise LTXError(f"invalid LTX header: {name} {value!r} out of range")

    def to_bytes(self, *, validate: bool = True) -> bytes:
        """Serialise to exactly 100 bytes, validating first unless the caller just did."""
        if validate:
            self.validate()
        return _HEADER.pack(MAGIC, *self._values())

    @classmethod
    def from_bytes(cls, data: bytes | bytearray | memoryview, *, validate: bool = True) -> Header:
        """Parse the first 100 bytes of an LTX file; with ``validate`` (default) also apply every rule."""
        if len(data) < HEADER_SIZE:
            raise LTXError(f"truncated LTX header: {len(data)} of {HEADER_SIZE} bytes")
        fields = _HEADER.unpack_from(data)
        if fields[0] != MAGIC:
            raise LTXError(f"invalid LTX file: bad magic {bytes(fields[0])!r} at offset 0")
        header = cls(*fields[1:])
        if validate:
            header.validate()
        return header

    def to_json(self) -> dict[str, object]:
        """A JSON-friendly dict (checksums and TXIDs as 16-hex strings, like LiteFS)."""
        return {
            "flags": self.flags,
            "pageSize": self.page_size,
            "commit": self.commit,
            "minTXID": f"{self.min_txid:016x}",
            "maxTXID": f"{self.max_txid:016x}",
            "timestamp": self.timestamp,
            "preApplyChecksum": f"{self.pre_apply_checksum:016x}",
            "walOffset": self.wal_offset,
            "walSize": self.wal_size,
            "walSalt1": f"{self.wal_salt1:08x}",
            "walSalt2": f"{self.wal_salt2:08x}",
            "nodeID": f"{self.node_id:016x}",
        }


@dataclass(frozen=True)
class Trailer:
    """The last 16 bytes of an LTX file."""

    post_apply_checksum: int
    file_checksum: int

    def validate(self, commit: int | None = None) -> None:
        """Both checksums need the flag; a deletion (``commit == 0``) must post-apply exactly the flag."""
        if not _int_in(self.post_apply_checksum, 0, _U64) or not self.post_apply_checksum & CHECKSUM_FLAG:
            raise LTXError(
                f"invalid LTX trailer: post-apply checksum {self.post_apply_checksum!r} lacks the flag"
            )
        if not _int_in(self.file_checksum, 0, _U64) or not self.file_checksum & CHECKSUM_FLAG:
            raise LTXError(f"invalid LTX trailer: file checksum {self.file_checksum!r} lacks the flag")
        if commit == 0 and self.post_apply_checksum != CHECKSUM_FLAG:
            raise LTXError(
                f"invalid LTX trailer: commit 0 requires post-apply checksum {CHECKSUM_FLAG:016x}, "
                f"got {self.post_apply_checksum:016x}"
            )

    def to_bytes(self) -> bytes:
        return _TRAILER.pack(self.post_apply_checksum, self.file_checksum)

    @classmethod
    def from_bytes(cls, data: bytes | bytearray | memoryview) -> Trailer:
        if len(data) != TRAILER_SIZE:
            raise LTXError(f"truncated LTX trailer: {len(data)} of {TRAILER_SIZE} bytes")
        return cls(*_TRAILER.unpack(data))
