"""The uploader service: ships each database's LTX files to S3 while this node is primary.

Per database it keeps the *remote position* (the TXID and checksum the backup has reached; read back
from a listing plus one trailer when the node becomes primary). Commits only mark a database dirty
(no I/O on the commit path); the service then waits ``upload-delay`` so a burst of commits becomes one
object, compacts the local LTX files ``remote+1..local`` (at most 256) with :func:`litefs.ltx.compact`
and PUTs the result as ``ltx/<min>-<max>.ltx``.

When the chain is broken -- the file after the remote position is gone locally (retention, a restart
after a long outage), the first file does not continue the remote checksum, nothing was ever
backed up and the local files do not start at TXID 1, or there is no local file at all (a replica
keeps none of a snapshot it installed, so a node promoted since has none until its first commit)
-- the uploader uploads a *snapshot* instead.
It cannot read the live database file itself (a commit may be half-written), so it asks the node's own
``GET /export?name=`` (which copies the database under SQLite's SHARED lock), notes the node's
position of the database (``database_position``) before and after, and accepts the copy only when
both agree and the copy's page checksum equals that position's post-apply checksum; then
``write_snapshot`` turns the copy into ``snapshots/<txid>.ltx`` and the remote position jumps there.

Every ``snapshot-interval`` the same export path adds a snapshot so that restores never replay an
unbounded chain; with ``retention`` set, objects that only serve restores older than the retention
window are deleted after a snapshot (the newest snapshot older than the window is kept as the base).

S3 errors are logged and retried every second with the remote state re-read, so an outage ends with
the backlog compacted into a few objects.
"""

from __future__ import annotations

import io
import logging
import os
import re
import tempfile
import time
from dataclasses import dataclass
from typing import Any

import httpx
import trio

from litefs.ltx import (
    LTXError,
    Pos,
    Trailer,
    compact,
    database_checksum,
    peek_header,
    write_snapshot,
)
from litefs.ltx.apply import read_sqlite_geometry
from litefs_backup_s3.layout import RemoteDB, list_remote, ltx_key, read_end_pos, snapshot_key
from litefs_backup_s3.s3 import S3Client, S3Error

log = logging.getLogger("litefs.backup_s3")

MAX_BATCH = 256
RETRY_DELAY = 1.0
_LTX_NAME = re.compile(r"([0-9a-f]{16})-([0-9a-f]{16})\.ltx")


class SnapshotError(Exception):
    """A consistent snapshot of a live database could not be taken."""


@dataclass(frozen=True)
class LocalFile:
    min_txid: int
    max_txid: int
    path: str


def local_ltx_files(data_dir: str, db: str) -> list[LocalFile]:
    """The LTX files the node keeps for ``db``, by TXID (``<data>/dbs/<db>/ltx``)."""
    ltx_dir = os.path.join(data_dir, "dbs", db, "ltx")
    try:
        names = os.listdir(ltx_dir)
    except FileNotFoundError:
        return []
    out = []
    for name in names:
        m = _LTX_NAME.fullmatch(name)
        if m:
            out.append(LocalFile(int(m.group(1), 16), int(m.group(2), 16), os.path.join(ltx_dir, name)))
    out.sort(key=lambda f: (f.min_txid, f.max_txid))
    return out


def build_batch(files: list[LocalFile], remote: Pos, stop_at: int = 0) -> list[LocalFile] | None:
    """The local files that continue ``remote`` (contiguous TXIDs, at most :data:`MAX_BATCH`, not past
    ``stop_at`` when that is beyond ``remote``), or ``None`` if the chain is broken."""
    by_start = {f.min_txid: f for f in files}
    batch: list[LocalFile] = []
    cur = remote.txid
    while len(batch) < MAX_BATCH:
        f = by_start.get(cur + 1)
        if f is None or (stop_at > remote.txid and f.max_txid > stop_at and batch):
            break
        batch.append(f)
        cur = f.max_txid
    return batch or None


def compact_batch(batch: list[LocalFile], remote: Pos) -> tuple[bytes, Pos]:
    """Compact ``batch`` into one LZ4 LTX file; check it continues ``remote``. Runs in a thread."""
    handles = [open(f.path, "rb") for f in batch]  # noqa: SIM115 - closed below
    try:
        first = peek_header(handles[0])
        handles[0].seek(0)
        if remote.txid and first.pre_apply_checksum != remote.post_apply_checksum:
            raise LTXError(
                f"{batch[0].path}: pre-apply checksum {first.pre_apply_checksum:016x} does not continue the "
                f"backup position {remote}"
            )
        out = io.BytesIO()
        compact(handles, out, compress=True)
    finally:
        for h in handles:
            h.close()
    data = out.getvalue()
    post = Trailer.from_bytes(data[-16:]).post_apply_checksum
    return data, Pos(batch[-1].max_txid, post)


class Uploader:
    """One node's S3 uploader (see the module docstring)."""

    def __init__(self, node: Any, section: Any, client: S3Client | None = None) -> None:
        self.node = node
        self.cfg = section
        self.prefix = section.prefix
        self._client = client
        self.remote: dict[str, Pos] = {}
        self.last_snapshot: dict[str, float] = {}
        self.snapshot_txid: dict[str, int] = {}
        self.split_at: dict[str, int] = {}
        self._loaded = False
        self._dirty: set[str] = set()
        self._wake: trio.Event | None = None
        self._token: trio.lowlevel.TrioToken | None = None
        self._running = False
        self._warned: set[str] = set()
        self.uploads = 0
        """Objects uploaded by this process (for tests and metrics)."""

    @property
    def data_dir(self) -> str:
        return self.node.config.data.dir

    def client(self) -> S3Client:
        if self._client is None:
            self._client = S3Client(
                self.cfg.endpoint,
                self.cfg.bucket,
                region=self.cfg.region,
                access_key_id=self.cfg.access_key_id,
                secret_access_key=self.cfg.secret_access_key,
            )
        return self._client

    # -- events (commit path: no I/O) ---------------------------------------------------------

    def on_tx(self, event: Any) -> None:
        self._dirty.add(event.db)
        self._poke()

    def on_primary_changed(self, event: Any) -> None:
        self._poke()

    def _poke(self) -> None:
        if self._token is not None and self._wake is not None:
            try:
                self._token.run_sync_soon(self._wake.set)
            except trio.RunFinishedError:
                pass

    # -- service -------------------------------------------------------------------------------

    async def run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        if self._running:  # registered through both hooks: one loop is enough
            task_status.started()
            await trio.sleep_forever()
        self._running = True
        self._token = trio.lowlevel.current_trio_token()
        self._wake = trio.Event()
        client = self.client()
        log.info("s3 backup to %s bucket %s prefix %r", client.endpoint, client.bucket, self.prefix)
        task_status.started()
        try:
            await self._loop()
        finally:
            with trio.CancelScope(shield=True):
                await client.aclose()

    async def _loop(self) -> None:
        while True:
            if not self.node.is_primary:
                self._loaded = False  # another node may upload meanwhile: re-read when primary again
                self._wake = trio.Event()
                with trio.move_on_after(1.0):  # woken by a primary change; polled as a safety net
                    await self._wake.wait()
                continue
            self._wake = trio.Event()
            try:
                await self.sync_all()
            except (S3Error, LTXError, SnapshotError, OSError, httpx.HTTPError) as exc:
                log.warning("s3 backup: %s (retrying in %.0fs)", exc, RETRY_DELAY)
                self._loaded = False
                await trio.sleep(RETRY_DELAY)
                continue
            with trio.move_on_after(self._next_snapshot_due()):
                await self._wake.wait()
            await trio.sleep(self.cfg.upload_delay)

    def _next_snapshot_due(self) -> float:
        interval = self.cfg.snapshot_interval
        if not interval or not self.remote:
            return 10.0
        now = time.time()
        due = min(self.last_snapshot.get(db, now) + interval for db in self.remote)
        return max(0.05, min(10.0, due - now))

    async def load_remote(self) -> None:
        """Read every database's remote position from the bucket."""
        client = self.client()
        dbs = await list_remote(client, self.prefix)
        remote: dict[str, Pos] = {}
        for name, rdb in dbs.items():
            newest = rdb.newest()
            if newest is not None:
                remote[name] = await read_end_pos(client, newest)
            self.last_snapshot[name] = max((f.modified_at() for f in rdb.snapshots), default=time.time())
            self.snapshot_txid[name] = max((f.max_txid for f in rdb.snapshots), default=0)
        self.remote = remote
        self._loaded = True
        log.info("s3 backup positions: %s", {k: str(v) for k, v in sorted(remote.items())} or "none")

    async def sync_all(self) -> None:
        """Upload whatever every database has beyond its remote position (and due snapshots)."""
        if not self._loaded:
            await self.load_remote()
            self._dirty.update(self.node.database_names())
        dirty, self._dirty = self._dirty, set()
        try:
            for db in sorted(dirty):
                while await self.sync_db(db):
                    pass
            now = time.time()
            for db in sorted(self.remote):
                interval = self.cfg.snapshot_interval
                # A database backed up for the first time gets its first periodic snapshot an
                # interval from now (its chain starts at TXID 1 or at a snapshot anyway).
                if interval and now - self.last_snapshot.setdefault(db, now) >= interval:
                    await self.periodic_snapshot(db)
        except BaseException:
            self._dirty |= dirty
            raise

    async def sync_db(self, db: str) -> bool:
        """Upload one batch for ``db``; True if there may be more to upload."""
        files = await trio.to_thread.run_sync(local_ltx_files, self.data_dir, db)
        remote = self.remote.get(db, Pos.zero())
        if not files:
            # A replica keeps no LTX file of a snapshot it installed: promoted before its first
            # commit since, this node can only upload a snapshot of the database.
            here = self.node.database_position(db)
            if here is None or here[0].txid <= remote.txid:
                return False
            await self.upload_snapshot(db, move_position=True)
            return True
        local_max = files[-1].max_txid
        if local_max == remote.txid:
            return False
        if local_max < remote.txid:
            if db not in self._warned:
                self._warned.add(db)
                log.warning(
                    "s3 backup of %s is ahead of the local database (backup %s, local TXID %d): not "
                    "uploading; restore it or use a new prefix",
                    db,
                    remote,
                    local_max,
                )
            return False
        batch = build_batch(files, remote, self.split_at.get(db, 0))
        if batch is not None and remote.txid == 0 and batch[0].min_txid != 1:
            batch = None
        if batch is not None:
            try:
                data, pos = await trio.to_thread.run_sync(compact_batch, batch, remote)
            except (LTXError, FileNotFoundError) as exc:
                log.info("s3 backup of %s: chain broken (%s); uploading a snapshot", db, exc)
                batch = None
        if batch is None:
            await self.upload_snapshot(db, move_position=True)
            return True
        await self.client().put_object(ltx_key(self.prefix, db, batch[0].min_txid, pos.txid), data)
        self.uploads += 1
        self.remote[db] = pos
        log.debug("s3 backup of %s: uploaded %d..%d", db, batch[0].min_txid, pos.txid)
        return pos.txid < local_max

    async def periodic_snapshot(self, db: str) -> None:
        txid = self.node.database_txid(db)
        if not txid or txid == self.snapshot_txid.get(db, 0):
            self.last_snapshot[db] = time.time()  # nothing new: look again an interval later
            if self.cfg.retention:  # older objects still age out of the window
                await self.enforce_retention(db)
            return
        await self.upload_snapshot(db, move_position=False)

    async def upload_snapshot(self, db: str, *, move_position: bool) -> Pos:
        """Export the live database through the node API and upload it as ``snapshots/<txid>.ltx``."""
        fd, tmp = tempfile.mkstemp(prefix=".backup-s3-export-", dir=self.data_dir)
        os.close(fd)
        try:
            for _attempt in range(5):
                before = self.node.database_position(db)
                await self._export(db, tmp)
                after = self.node.database_position(db)
                if before is None or before != after:
                    continue
                pos, timestamp = before
                if await trio.to_thread.run_sync(_checksum_of, tmp) == pos.post_apply_checksum:
                    break
            else:
                raise SnapshotError(f"could not take a consistent snapshot of {db}: it kept changing")
            buf = io.BytesIO()
            await trio.to_thread.run_sync(
                lambda: write_snapshot(
                    tmp, buf, txid=pos.txid, compress=True, node_id=self.node.node_id, timestamp=timestamp
                )
            )
        finally:
            os.unlink(tmp)
        await self.client().put_object(snapshot_key(self.prefix, db, pos.txid), buf.getvalue())
        self.uploads += 1
        self.last_snapshot[db] = time.time()
        self.snapshot_txid[db] = pos.txid
        remote = self.remote.get(db, Pos.zero())
        if move_position or pos.txid <= remote.txid:
            if move_position:
                self.remote[db] = pos
        else:
            self.split_at[db] = pos.txid  # the next LTX object must end exactly at the snapshot
        log.info("s3 backup of %s: uploaded snapshot at %s", db, pos)
        if self.cfg.retention:
            await self.enforce_retention(db)
        return pos

    async def _export(self, db: str, path: str) -> None:
        async with httpx.AsyncClient(timeout=60.0) as http:
            async with http.stream("GET", self.node.api_url + "/export", params={"name": db}) as resp:
                if resp.status_code != 200:
                    body = (await resp.aread())[:200].decode(errors="replace")
                    raise SnapshotError(f"export of {db} failed: HTTP {resp.status_code} {body}")
                with open(path, "wb") as f:
                    async for chunk in resp.aiter_bytes():
                        f.write(chunk)

    async def enforce_retention(self, db: str) -> None:
        """Delete objects only needed for restores older than ``retention`` (keeps a base snapshot)."""
        client = self.client()
        rdb: RemoteDB | None = (await list_remote(client, self.prefix, db)).get(db)
        if rdb is None:
            return
        cutoff = time.time() - self.cfg.retention
        old = [s for s in rdb.snapshots if s.modified_at() and s.modified_at() <= cutoff]
        if not old:
            return
        base = old[-1]
        doomed = [s for s in rdb.snapshots if s.max_txid < base.max_txid]
        doomed += [f for f in rdb.ltx if f.max_txid <= base.max_txid]
        for f in doomed:
            await client.delete_object(f.key)
        if doomed:
            log.info(
                "s3 backup of %s: retention removed %d objects before TXID %d", db, len(doomed), base.max_txid
            )


def _checksum_of(path: str) -> int:
    page_size, count = read_sqlite_geometry(path)
    return database_checksum(path, page_size, count)
