"""Where backups live in the bucket, and reading a database's backup state back from a listing.

Keys (``<prefix>/`` is omitted when ``backup.prefix`` is empty)::

    <prefix>/<db>/ltx/<min>-<max>.ltx     consecutive transactions (one or more commits compacted)
    <prefix>/<db>/snapshots/<txid>.ltx    a snapshot LTX file (TXIDs 1..txid: every page of the db)

TXIDs are 16 lowercase hex digits, so a listing sorts in TXID order.
"""

from __future__ import annotations

import datetime as _dt
import re
from dataclasses import dataclass, field

from litefs.ltx import HEADER_SIZE, TRAILER_SIZE, Header, LTXError, Pos, Trailer, format_filename, format_txid
from litefs_backup_s3.s3 import ObjectInfo, S3Client

_SNAPSHOT = re.compile(r"([0-9a-f]{16})\.ltx")
_LTX = re.compile(r"([0-9a-f]{16})-([0-9a-f]{16})\.ltx")


def _root(prefix: str) -> str:
    prefix = prefix.strip("/")
    return prefix + "/" if prefix else ""


def db_prefix(prefix: str, db: str) -> str:
    """``<prefix>/<db>/``."""
    return f"{_root(prefix)}{db}/"


def ltx_key(prefix: str, db: str, min_txid: int, max_txid: int) -> str:
    return f"{db_prefix(prefix, db)}ltx/{format_filename(min_txid, max_txid)}"


def snapshot_key(prefix: str, db: str, txid: int) -> str:
    return f"{db_prefix(prefix, db)}snapshots/{format_txid(txid)}.ltx"


@dataclass(frozen=True)
class RemoteFile:
    """One LTX object: TXIDs ``min_txid..max_txid`` (a snapshot has ``min_txid == 1``)."""

    key: str
    min_txid: int
    max_txid: int
    is_snapshot_object: bool
    size: int = 0
    last_modified: str = ""

    def modified_at(self) -> float:
        """Upload time (seconds since the epoch) from the listing; 0 if unknown."""
        try:
            return _dt.datetime.fromisoformat(self.last_modified.replace("Z", "+00:00")).timestamp()
        except ValueError:
            return 0.0


@dataclass
class RemoteDB:
    """The backup objects of one database, each list sorted by TXID."""

    name: str
    ltx: list[RemoteFile] = field(default_factory=list)
    snapshots: list[RemoteFile] = field(default_factory=list)

    @property
    def max_txid(self) -> int:
        files = self.ltx + self.snapshots
        return max((f.max_txid for f in files), default=0)

    def newest(self) -> RemoteFile | None:
        """The object ending at the highest TXID (an LTX file before a snapshot on a tie)."""
        files = sorted(self.ltx + self.snapshots, key=lambda f: (f.max_txid, not f.is_snapshot_object))
        return files[-1] if files else None

    def boundaries(self) -> list[RemoteFile]:
        """Every object, ordered by the TXID it ends at: the restorable points."""
        return sorted(self.ltx + self.snapshots, key=lambda f: (f.max_txid, f.is_snapshot_object))


def parse_listing(prefix: str, objects: list[ObjectInfo]) -> dict[str, RemoteDB]:
    """Group a listing of ``<prefix>/`` by database; keys that are not backup objects are ignored."""
    root = _root(prefix)
    dbs: dict[str, RemoteDB] = {}
    for obj in objects:
        if not obj.key.startswith(root):
            continue
        parts = obj.key[len(root) :].split("/")
        if len(parts) != 3:
            continue
        db, kind, name = parts
        if kind == "ltx" and (m := _LTX.fullmatch(name)):
            lo, hi = int(m.group(1), 16), int(m.group(2), 16)
            if 0 < lo <= hi:
                dbs.setdefault(db, RemoteDB(db)).ltx.append(
                    RemoteFile(obj.key, lo, hi, False, obj.size, obj.last_modified)
                )
        elif kind == "snapshots" and (m := _SNAPSHOT.fullmatch(name)):
            txid = int(m.group(1), 16)
            if txid > 0:
                dbs.setdefault(db, RemoteDB(db)).snapshots.append(
                    RemoteFile(obj.key, 1, txid, True, obj.size, obj.last_modified)
                )
    for rdb in dbs.values():
        rdb.ltx.sort(key=lambda f: (f.min_txid, f.max_txid))
        rdb.snapshots.sort(key=lambda f: f.max_txid)
    return dbs


async def list_remote(client: S3Client, prefix: str, db: str | None = None) -> dict[str, RemoteDB]:
    """The backup state of every database under ``prefix`` (or just ``db``)."""
    where = db_prefix(prefix, db) if db is not None else _root(prefix)
    return parse_listing(prefix, await client.list_objects(where))


async def read_header(client: S3Client, key: str) -> Header:
    """The LTX header of an object (one ranged GET)."""
    raw = await client.get_object(key, byte_range=f"0-{HEADER_SIZE - 1}")
    if len(raw) < HEADER_SIZE:
        raise LTXError(f"backup object {key}: {len(raw)} bytes, too short for an LTX header")
    try:
        return Header.from_bytes(raw[:HEADER_SIZE])
    except LTXError as exc:
        raise LTXError(f"backup object {key}: {exc}") from exc


async def read_end_pos(client: S3Client, f: RemoteFile) -> Pos:
    """``(max TXID, post-apply checksum)`` of an object, from its trailer (one ranged GET)."""
    raw = await client.get_object(f.key, byte_range=f"-{TRAILER_SIZE}")
    if len(raw) != TRAILER_SIZE:
        raise LTXError(f"backup object {f.key}: cannot read its {TRAILER_SIZE}-byte trailer")
    return Pos(f.max_txid, Trailer.from_bytes(raw).post_apply_checksum)
