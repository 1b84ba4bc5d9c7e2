"""Point-in-time restore: newest snapshot at or before the target, then the LTX files after it.

The restorable points are the ends of the uploaded objects: every TXID an LTX object or a snapshot
ends at. Commits that were compacted into one object by the uploader (those within ``upload-delay``
of each other) can only be restored together. A restore to a timestamp picks the newest restorable
point whose LTX timestamp is at or before it.

Nothing is written to the output path until every file applied and the final database checksum
matched: the database is built in ``OUTPUT.tmp`` and renamed.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass

import trio

from litefs.ltx import ChecksumTracker, Header, LTXError, Pos, apply_ltx, database_checksum
from litefs_backup_s3.layout import RemoteDB, RemoteFile, list_remote, read_header
from litefs_backup_s3.s3 import S3Client, S3NotFound


class RestoreError(Exception):
    """A restore cannot be done as asked; the message says why and what would work."""


@dataclass(frozen=True)
class RestoreResult:
    pos: Pos
    timestamp_ms: int
    page_size: int
    commit: int
    files: list[str]


def plan(remote: RemoteDB, target_txid: int) -> list[RemoteFile]:
    """The objects to apply, base first, to reach exactly ``target_txid``.

    A base is a snapshot or an LTX object starting at TXID 1; from it, follow LTX objects that start
    right after the previous one ends (the longest one not passing the target). Newest bases first.
    """
    bases = [f for f in remote.snapshots + remote.ltx if f.min_txid == 1 and f.max_txid <= target_txid]
    bases.sort(key=lambda f: (f.max_txid, f.is_snapshot_object), reverse=True)
    by_start: dict[int, list[RemoteFile]] = {}
    for f in remote.ltx:
        if f.max_txid <= target_txid:
            by_start.setdefault(f.min_txid, []).append(f)
    for base in bases:
        chain = [base]
        cur = base.max_txid
        while cur < target_txid:
            nexts = by_start.get(cur + 1)
            if not nexts:
                break
            step = max(nexts, key=lambda f: f.max_txid)
            chain.append(step)
            cur = step.max_txid
        if cur == target_txid:
            return chain
    points = sorted({f.max_txid for f in remote.ltx + remote.snapshots})
    before = [p for p in points if p < target_txid]
    after = [p for p in points if p > target_txid]
    if not points:
        raise RestoreError(f"database {remote.name!r} has no backup objects")
    if not before and not any(p == target_txid for p in points):
        raise RestoreError(
            f"TXID {target_txid} is before the first backup of {remote.name!r} (earliest TXID {points[0]})"
        )
    near = ", ".join(str(p) for p in (before[-1:] + after[:1]))
    raise RestoreError(
        f"TXID {target_txid} of {remote.name!r} is not restorable: no snapshot and unbroken LTX chain ends "
        f"exactly there (it may lie inside a compacted object or a gap); nearest restorable TXIDs: {near}"
    )


async def resolve_timestamp(client: S3Client, remote: RemoteDB, timestamp_ms: int) -> int:
    """The TXID of the newest restorable point whose timestamp is ``<= timestamp_ms``.

    Timestamps grow with TXIDs, so this is a binary search over the objects' headers (ranged GETs).
    """
    points = remote.boundaries()
    if not points:
        raise RestoreError(f"database {remote.name!r} has no backup objects")
    cache: dict[str, Header] = {}

    async def ts(i: int) -> int:
        f = points[i]
        if f.key not in cache:
            cache[f.key] = await read_header(client, f.key)
        return cache[f.key].timestamp

    lo, hi = 0, len(points) - 1
    if await ts(0) > timestamp_ms:
        raise RestoreError(
            f"timestamp {_fmt_ms(timestamp_ms)} is before the first backup of {remote.name!r} "
            f"({_fmt_ms(await ts(0))})"
        )
    while lo < hi:  # invariant: ts(lo) <= target
        mid = (lo + hi + 1) // 2
        if await ts(mid) <= timestamp_ms:
            lo = mid
        else:
            hi = mid - 1
    return points[lo].max_txid


def _fmt_ms(ms: int) -> str:
    import datetime as _dt

    return _dt.datetime.fromtimestamp(ms / 1000, tz=_dt.UTC).isoformat().replace("+00:00", "Z")


async def restore(
    client: S3Client,
    prefix: str,
    db: str,
    output: str,
    *,
    txid: int | None = None,
    timestamp_ms: int | None = None,
) -> RestoreResult:
    """Rebuild database ``db`` at ``txid``, at ``timestamp_ms``, or at the latest backup, into ``output``.

    Raises :class:`RestoreError` (unknown database, target not covered, deleted database),
    :class:`~litefs_backup_s3.s3.S3Error` (storage), or ``LTXError`` (corrupt object, checksum chain
    broken); ``output`` is then left untouched.
    """
    dbs = await list_remote(client, prefix, db)
    remote = dbs.get(db)
    if remote is None:
        everything = await list_remote(client, prefix)
        known = ", ".join(sorted(everything)) or "none"
        raise RestoreError(
            f"no backup of database {db!r} under prefix {prefix!r} (backed-up databases: {known})"
        )
    if txid is not None and timestamp_ms is not None:
        raise RestoreError("give a TXID or a timestamp, not both")
    if timestamp_ms is not None:
        target = await resolve_timestamp(client, remote, timestamp_ms)
    elif txid is not None:
        if txid <= 0:
            raise RestoreError(f"invalid TXID {txid}: TXIDs start at 1")
        target = txid
    else:
        target = remote.max_txid
    chain = plan(remote, target)

    out_dir = os.path.dirname(os.path.abspath(output)) or "."
    tmp_out = output + ".tmp"
    files: list[str] = []
    try:
        with tempfile.TemporaryDirectory(prefix=".litefs-restore-", dir=out_dir) as work:
            local_paths: list[str] = []
            for i, f in enumerate(chain):
                try:
                    data = await client.get_object(f.key)
                except S3NotFound as exc:
                    raise RestoreError(f"backup object {f.key} disappeared during the restore") from exc
                path = os.path.join(work, f"{i:06d}.ltx")
                with open(path, "wb") as fh:
                    fh.write(data)
                local_paths.append(path)
                files.append(f.key)
            header, post = await trio.to_thread.run_sync(_apply_chain, chain, local_paths, tmp_out)
        if header.commit == 0:
            raise RestoreError(f"database {db!r} was deleted at TXID {target}; restore an earlier TXID")
        os.replace(tmp_out, output)
    except BaseException:
        try:
            os.unlink(tmp_out)
        except FileNotFoundError:
            pass
        raise
    return RestoreResult(Pos(target, post), header.timestamp, header.page_size, header.commit, files)


def _apply_chain(chain: list[RemoteFile], paths: list[str], tmp_out: str) -> tuple[Header, int]:
    """Apply the downloaded files in order into a fresh ``tmp_out``; verify every checksum."""
    if os.path.exists(tmp_out):
        os.unlink(tmp_out)
    tracker: ChecksumTracker | None = None
    header: Header | None = None
    post = 0
    with open(tmp_out, "w+b") as db:
        for f, path in zip(chain, paths, strict=True):
            with open(path, "rb") as fh:
                page_size = int.from_bytes(fh.read(12)[8:12], "big")
            if tracker is None:
                tracker = ChecksumTracker(page_size)
            try:
                header, trailer = apply_ltx(path, db, tracker=tracker)
            except LTXError as exc:
                raise LTXError(f"backup object {f.key}: {exc}") from exc
            post = trailer.post_apply_checksum
        db.flush()
        os.fsync(db.fileno())
        assert header is not None
        if header.commit:
            actual = database_checksum(db, header.page_size, header.commit)
            if actual != post:
                raise LTXError(
                    f"restored database checksum {actual:016x} != backup position checksum {post:016x}"
                )
    return header, post
