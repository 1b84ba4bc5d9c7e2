"""The record of a snapshot a replica installed, kept instead of the snapshot's LTX file.

A replica builds the database file of an incoming snapshot while it arrives
(:func:`litefs.store.database.build_snapshot_file`) and keeps that file only: writing the LTX
file as well doubled the bytes a snapshot costs the replica's disk (a 1 GB database meant 2 GB of
writes) and kept a second copy of the database in ``ltx/`` until retention or the next snapshot.
What the LTX file was still needed for is the position it proves: startup recovery needs a
position whose checksum the database content must match. This record keeps exactly that: the
snapshot's LTX header (TXID, page size, page count, timestamp) and its post-apply checksum.

Layout of ``ltx/snapshot.pos`` (124 bytes): the 100-byte LTX header, the post-apply checksum
(u64 big-endian) and a CRC-64 (u64) of those 108 bytes, so a torn or foreign file is refused
rather than believed.

Installing a snapshot is ordered so that a crash at any point leaves a state recovery understands
(:meth:`Database.install_snapshot`): the record is first written as ``ltx/snapshot.pending``;
then the new database file is renamed into place, the old LTX files go and the pending record is
renamed to ``ltx/snapshot.pos``. At startup a pending record whose checksum equals the database
content finishes that install; any other pending record is dropped, and the old LTX files, still
there, recover the old state. The record stays until the
next snapshot; once LTX files are applied after it, the newest of them decides the position (they
continue from the record, so they are always newer).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from litefs.ltx import HEADER_SIZE, Header, LTXError
from litefs.ltx.checksum import crc64
from litefs.store.fsutil import fsync_dir, remove_quietly, write_file_atomically

#: File names inside a database's ``ltx/`` directory (never matched by the LTX file pattern).
RECORD_NAME = "snapshot.pos"
PENDING_NAME = "snapshot.pending"
RECORD_SIZE = HEADER_SIZE + 16


class SnapshotRecordError(Exception):
    """A snapshot record that cannot be read (names the file)."""


@dataclass(frozen=True)
class SnapshotRecord:
    """Where a snapshot left the database file: the snapshot's header and post-apply checksum."""

    header: Header
    post_apply_checksum: int

    @property
    def txid(self) -> int:
        return self.header.max_txid

    def to_bytes(self) -> bytes:
        body = self.header.to_bytes() + self.post_apply_checksum.to_bytes(8, "big")
        return body + crc64(body).to_bytes(8, "big")

    @classmethod
    def from_bytes(cls, data: bytes) -> SnapshotRecord:
        if len(data) != RECORD_SIZE:
            raise SnapshotRecordError(f"{len(data)} bytes, a snapshot record has {RECORD_SIZE}")
        body, crc = data[:-8], int.from_bytes(data[-8:], "big")
        if crc64(body) != crc:
            raise SnapshotRecordError("checksum mismatch (torn or foreign file)")
        try:
            header = Header.from_bytes(body[:HEADER_SIZE])
        except LTXError as exc:
            raise SnapshotRecordError(f"bad LTX header: {exc}") from exc
        if not header.is_snapshot:
            raise SnapshotRecordError("the LTX header is not a snapshot's")
        return cls(header, int.from_bytes(body[HEADER_SIZE:], "big"))


def write_record(path: str, record: SnapshotRecord, *, fsync: bool = True) -> None:
    """Write ``record`` at ``path`` whole (temp file and rename), durable when ``fsync``."""
    write_file_atomically(path, record.to_bytes(), datasync=fsync)
    if fsync:
        fsync_dir(os.path.dirname(path))


def read_record(path: str) -> SnapshotRecord | None:
    """The record at ``path``; None if there is none. Raises SnapshotRecordError naming the file."""
    try:
        with open(path, "rb") as f:
            data = f.read(RECORD_SIZE + 1)
    except FileNotFoundError:
        return None
    try:
        return SnapshotRecord.from_bytes(data)
    except SnapshotRecordError as exc:
        raise SnapshotRecordError(f"snapshot record {path}: {exc}") from exc


def remove_records(ltx_dir: str) -> None:
    """Remove both records of a database (its LTX history starts over)."""
    for name in (RECORD_NAME, PENDING_NAME):
        remove_quietly(os.path.join(ltx_dir, name))


__all__ = [
    "PENDING_NAME",
    "RECORD_NAME",
    "SnapshotRecord",
    "SnapshotRecordError",
    "read_record",
    "remove_records",
    "write_record",
]
