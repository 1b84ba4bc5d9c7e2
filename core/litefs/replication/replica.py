"""The replica's side of replication: follow the primary's ``/stream`` (LiteFS §5.5).

:class:`ReplicaClient` runs as a task of the node's nursery on a node that is not primary:

* ask the leaser who is primary, ``POST <advertise-url>/stream`` with this node's positions (and
  ``?filter=`` from ``lease.databases``) and ``Litefs-Id``; adopt the primary's cluster ID if this node
  has none, refuse to stream from a primary of another cluster;
* for every LTX frame: spool the file to ``ltx/``, check it (TXID continuity and pre-apply checksum for
  incremental files, full file checksum), rename it into place and apply it under SQLite's EXCLUSIVE
  lock taken through the mount (open readers never see half a transaction), then drop the kernel's
  cached pages so those readers see the new data without reopening. A snapshot is decoded, checked
  and written into a new database file by a thread while it arrives; under the lock that file only
  replaces the old one (:meth:`Database.install_snapshot`). The snapshot's LTX file is not kept, a
  small record of its position is (:mod:`litefs.store.snaprecord`);
* READY marks the node ready; HEARTBEAT and applied LTX timestamps feed ``.lag``;
* any error, EOF or END: wait ``lease.reconnect-delay`` and connect again. A position mismatch is such
  an error: on reconnect the primary notices and sends a snapshot.

A failure *while* applying (pages half written) is fatal, as in LiteFS: the node exits with code 99 and
startup recovery re-applies the newest LTX file.
"""

from __future__ import annotations

import logging
import math
import os
import queue
import secrets
import threading
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import httpx
import trio

from litefs.events import LTXReceivedEvent, StreamEvent
from litefs.lease import LeaseError, PrimaryInfo
from litefs.ltx import HEADER_SIZE, Decoder, Header, LTXError, Pos, peek_header
from litefs.replication import h2tune
from litefs.replication.mountlock import mount_lock, run_in_thread
from litefs.replication.protocol import (
    DropDBFrame,
    EndFrame,
    FrameParser,
    HandoffFrame,
    HeartbeatFrame,
    HWMFrame,
    LTXChunk,
    LTXFrameEnd,
    LTXFrameStart,
    ProtocolError,
    ReadyFrame,
    encode_pos_map,
)
from litefs.replication.walindex import is_wal_database, rewrite_shm, wal_apply_lock, wal_has_frames
from litefs.sqlite.errors import SQLiteFormatError
from litefs.store import CommitResult, Database, FileKind, StoreError
from litefs.store.database import BuiltSnapshot, build_snapshot_file
from litefs.store.fsutil import fsync_dir

if TYPE_CHECKING:
    from litefs.node import Node

log = logging.getLogger("litefs.replication")

EXIT_FATAL = 99
#: LTX files larger than this are applied in a worker thread (snapshots always are).
THREAD_APPLY_BYTES = 4 << 20
#: Bytes of an incoming snapshot that may wait for each of its two threads before receiving pauses.
VERIFY_BACKLOG = 8 << 20
#: Stream over h2c, as LiteFS's Go client does. Out of the box httpcore's HTTP/2 was much slower than
#: HTTP/1.1 here (16 KiB DATA frames, a hex dump of every frame received); h2tune fixes both, after
#: which h2c moves a snapshot faster than HTTP/1.1 (see the README). HTTP/1.1 stays off: hypercorn's HTTP/1.1
#: protocol can raise BusyResourceError out of the server when a replica drops the stream during a
#: handoff (it answers the cut request body while the stream response is still sending), which took
#: the old primary down.
USE_HTTP2 = True
h2tune.install()
#: Value of ``.lag`` before the first contact with a primary (LiteFS: MaxInt32 milliseconds).
LAG_UNKNOWN_MS = 2147483647


class ReplicationError(Exception):
    """The stream cannot continue (the replica disconnects and reconnects later)."""


class ClusterIDMismatchError(ReplicationError):
    """The primary belongs to another cluster: this node never streams from it."""


class PositionMismatchError(ReplicationError):
    """An incremental LTX file does not continue this replica's position."""


class ApplyError(ReplicationError):
    """Applying a checked LTX file failed midway (fatal: exit code 99)."""


class ReplicaClient:
    """Follows the primary for one node. ``await nursery.start(client.run)``.

    ``run`` reports itself started once the node is ready: after the first READY frame on a replica,
    at once on a primary (or when the node shuts down first), so the node's startup waits for the
    initial catch-up, as LiteFS's does.
    """

    def __init__(self, node: Node) -> None:
        self.node = node
        self.store = node.store
        self.primary_info: PrimaryInfo | None = None
        #: Wall-clock milliseconds of the last heartbeat or applied LTX (0 = never in contact).
        self.primary_timestamp_ms = 0
        self.hwm: dict[str, int] = {}
        self.connected = False
        self.applied = 0
        #: Streams opened so far (the first is a connect, every later one a reconnect).
        self.connects = 0
        #: Per database: the primary's TXID as last heard of on the stream (see primary_txid()).
        self.primary_txids: dict[str, int] = {}
        self._ready = trio.Event()
        self._task_status: trio.TaskStatus[None] | None = None
        #: True: run() looks up and follows the primary itself; False: the election loop drives it.
        self.standalone = True

    # -- state for the mount and the API ------------------------------------------------------------

    @property
    def is_ready(self) -> bool:
        return self._ready.is_set()

    def lag_ms(self) -> int:
        """Milliseconds since the primary's last timestamp (``.lag``); MaxInt32 before any contact."""
        if self.node.is_primary:
            return 0
        if not self.primary_timestamp_ms:
            return LAG_UNKNOWN_MS
        return max(-LAG_UNKNOWN_MS, min(LAG_UNKNOWN_MS, int(time.time() * 1000) - self.primary_timestamp_ms))

    def primary_txid(self, name: str) -> int | None:
        """The primary's TXID of ``name`` as last heard of: the newest LTX frame applied, or this
        node's own TXID after a READY or HEARTBEAT frame (the primary sends those only once it has
        sent everything it had). None before either."""
        return self.primary_txids.get(name)

    def _caught_up(self) -> None:
        """READY/HEARTBEAT: the primary had nothing newer than what this node has applied."""
        wanted = self.node.config.lease.databases
        for db in self.store.dbs():
            if not wanted or db.name in wanted:
                self.primary_txids[db.name] = db.pos.txid

    def lag_text(self) -> bytes:
        """Content of ``.lag``: ``%+010d\\n`` in milliseconds."""
        return b"%+010d\n" % self.lag_ms()

    # -- the loop ------------------------------------------------------------------------------------

    def _mark_ready(self) -> None:
        if not self._ready.is_set():
            self._ready.set()
        if self._task_status is not None:
            status, self._task_status = self._task_status, None
            status.started()

    async def run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Follow the primary until cancelled."""
        self._task_status = task_status
        if self._ready.is_set():  # became primary (or caught up) before this task started
            self._mark_ready()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._stop_on_shutdown, nursery.cancel_scope)
            if self.standalone:
                await self._loop()
            else:
                await trio.sleep_forever()  # the node's election loop calls follow_until_error()
            nursery.cancel_scope.cancel()

    async def _stop_on_shutdown(self, scope: trio.CancelScope) -> None:
        # Stop replicating as soon as the node is asked to stop, before its FUSE loop ends (an apply
        # in flight needs it). A node that never caught up (no primary, another cluster) must stop
        # too: the node's startup is waiting for this task to report itself started.
        await self.node._shutdown.wait()
        scope.cancel()
        self._mark_ready()

    async def _loop(self) -> None:
        """Without an election loop (tests of the client alone): look up the primary and follow it."""
        delay = self.node.config.lease.reconnect_delay
        while True:
            if self.node.is_primary:
                self._mark_ready()
                await trio.sleep(delay)
                continue
            info = await self._lookup_primary()
            if info is not None:
                await self.follow_until_error(info)
            await trio.sleep(delay)

    async def follow_until_error(self, info: PrimaryInfo) -> str | None:
        """:meth:`follow`, with every stream error logged instead of raised (the caller reconnects
        after ``lease.reconnect-delay``); an apply failure stops the node with exit code 99."""
        self.primary_info = info
        if not info.advertise_url:
            log.warning("primary %s has no advertise URL; cannot replicate", info.hostname)
            return None
        try:
            return await self.follow(info)
        except ClusterIDMismatchError as exc:
            log.error("%s", exc)
        except ApplyError as exc:
            log.error("fatal: %s", exc)
            self.node.request_shutdown(EXIT_FATAL)
            await trio.sleep_forever()  # the node is shutting down; do not reconnect meanwhile
        except (
            ReplicationError,
            ProtocolError,
            httpx.HTTPError,
            StoreError,
            LTXError,
            OSError,
        ) as exc:
            log.warning("replication stream from %s ended: %s", info.hostname, exc)
        finally:
            self.connected = False
        return None

    async def _lookup_primary(self) -> PrimaryInfo | None:
        leaser = self.node.leaser
        if leaser is None:
            return None
        try:
            info = await leaser.primary_info()
        except LeaseError:
            info = None
        self.primary_info = info
        self.node.set_role(False, info.hostname if info is not None else "")
        if info is None:
            log.info("cannot find primary, retrying")
        return info

    async def follow(self, info: PrimaryInfo) -> str | None:
        """Stream from ``info`` until the stream ends; return a handed-off lease ID, if any."""
        positions = {db.name: db.pos for db in self.store.dbs()}
        url = info.advertise_url.rstrip("/") + "/stream"
        params = (
            {"filter": ",".join(self.node.config.lease.databases)} if self.node.config.lease.databases else {}
        )
        node_id = f"{self.node.node_id:016X}"
        name = self.node.replica_name
        headers = {
            "Litefs-Id": node_id,
            # An extension (LiteFS primaries ignore it): lets the primary name its replicas. Not sent
            # when this node has no hostname of its own (static lease): it is then named by its ID.
            "Litefs-Hostname": "" if name == node_id else name,
            "Content-Type": "application/octet-stream",
        }
        timeout = httpx.Timeout(10.0, read=None)
        # HTTP/2 with prior knowledge over cleartext (h2c), as LiteFS's own client: works against a
        # LiteFS Go primary (which refuses HTTP/1.1 with 426) and against ours (hypercorn speaks both).
        async with httpx.AsyncClient(timeout=timeout, http1=not USE_HTTP2, http2=USE_HTTP2) as client:
            async with client.stream(
                "POST",
                url,
                params=params,
                headers=headers,
                content=encode_pos_map(positions),
                # Snapshots arrive in ~1 MiB DATA frames instead of 16 KiB ones (see h2tune).
                extensions={h2tune.MAX_FRAME_EXTENSION: h2tune.STREAM_MAX_FRAME_SIZE},
            ) as resp:
                if resp.status_code != 200:
                    body = (await resp.aread()).decode(errors="replace").strip()
                    raise ReplicationError(f"stream request to {url}: {resp.status_code} {body}")
                self._check_cluster_id(resp.headers.get("Litefs-Cluster-Id", ""))
                self.connected = True
                self.connects += 1
                log.info("connected to primary %s (%s)", info.hostname, url)
                self.node.notify(
                    "litefs_stream_connected",
                    StreamEvent(info.hostname, info.advertise_url, reconnect=self.connects > 1),
                )
                return await self._consume(resp)

    def _check_cluster_id(self, remote: str) -> None:
        local = self.store.cluster_id
        if not remote:
            return
        if not local:
            self.store.set_cluster_id(remote)
            log.info("adopted cluster id %s", remote)
        elif local != remote:
            raise ClusterIDMismatchError(
                f"cannot stream from primary with a different cluster id: {remote} (this node: {local})"
            )

    def snapshot_timeout(self) -> float:
        """Longest time one snapshot may take to arrive: ``http.snapshot-timeout``, or
        ``data.retention`` when that is 0 (LiteFS's default); ``inf`` when both are 0."""
        config = self.node.config
        timeout = config.http.snapshot_timeout or config.data.retention
        return timeout if timeout > 0 else math.inf

    async def _consume(self, resp: httpx.Response) -> str | None:
        parser = FrameParser()
        spool: _Spool | None = None
        timeout = self.snapshot_timeout()
        try:
            # The deadline is set while a snapshot is arriving only (never while applying): a
            # snapshot that takes longer than the timeout ends the stream and the replica reconnects.
            with trio.CancelScope() as snapshot_scope:
                async for data in resp.aiter_raw():
                    parser.feed(data)
                    # The wire chunks (<= 64 KiB, views into the received data) of one read go
                    # to the spool together, uncopied.
                    pending: list[bytes | memoryview] = []
                    for event in parser:
                        if isinstance(event, LTXChunk):
                            pending.append(event.data)
                            continue
                        if pending:
                            assert spool is not None
                            await self._spool_write(spool, pending, snapshot_scope, timeout)
                        if isinstance(event, LTXFrameStart):
                            spool = _Spool(self.store.create_db(event.name))
                            spool.started = time.perf_counter()
                        elif isinstance(event, LTXFrameEnd):
                            assert spool is not None
                            snapshot_scope.deadline = math.inf
                            current, spool = spool, None
                            await self._apply(current)
                        elif isinstance(event, HeartbeatFrame):
                            self.primary_timestamp_ms = event.timestamp_ms
                            self._caught_up()
                        elif isinstance(event, HWMFrame):
                            self.hwm[event.name] = event.txid
                        elif isinstance(event, ReadyFrame):
                            log.info("caught up with primary; node is ready")
                            self._caught_up()
                            self._mark_ready()
                        elif isinstance(event, HandoffFrame):
                            return event.lease_id
                        elif isinstance(event, EndFrame):
                            return None
                        elif isinstance(event, DropDBFrame):
                            pass  # deprecated: deletions arrive as LTX files with commit 0
                    if pending:
                        assert spool is not None
                        await self._spool_write(spool, pending, snapshot_scope, timeout)
                parser.close()
                raise ReplicationError("stream closed by the primary without an END frame")
            assert spool is not None
            raise ReplicationError(
                f"snapshot of database {spool.db.name!r} not received within {timeout:g}s "
                f"({spool.size} bytes so far; http.snapshot-timeout, or data.retention when 0); "
                "disconnecting to retry"
            )
        finally:
            if spool is not None:
                spool.discard()

    @staticmethod
    async def _spool_write(
        spool: _Spool, pending: list[bytes | memoryview], scope: trio.CancelScope, timeout: float
    ) -> None:
        for data in pending:
            spool.write(data)
        pending.clear()
        if spool.backlogged:
            await spool.catch_up()
        if spool.is_snapshot and scope.deadline == math.inf:
            scope.deadline = spool.started_at + timeout

    # -- applying ------------------------------------------------------------------------------------

    async def _apply(self, spool: _Spool) -> None:
        db = spool.db
        header = await spool.finish()
        halts = self.node.replica_halts
        if header.node_id == self.node.node_id and not header.is_snapshot:
            # A transaction this node forwarded under a HALT lock, coming back: it is already here
            # (once its local commit, which may still be finishing, is done).
            while halts.in_flight.get(db.name):
                await trio.sleep(0.001)
            if db.pos.txid >= header.max_txid:
                spool.discard()
                return
        elif db.remote_halt is not None:
            # Someone else's transaction: the primary no longer holds our lock (LiteFS drops it too).
            halts.release_soon(db.name)
        # A released HALT lock may still be moving WAL frames into the database file.
        await halts.settled(db.name)
        try:
            if not header.is_snapshot:
                expected = Pos(header.min_txid - 1, header.pre_apply_checksum)
                if db.pos != expected:
                    raise PositionMismatchError(
                        f"position mismatch on db {db.name!r}: {db.pos} <> {expected}"
                    )
            path = spool.install(header) if spool.built is None else ""
        except BaseException:
            spool.discard()
            raise
        received = time.perf_counter()
        if spool.built is not None:
            await self._install_snapshot(db, spool, header)
        else:
            await self._apply_file(db, path, header)
        self.applied += 1
        self.primary_txids[db.name] = header.max_txid
        self.node.notify(
            "litefs_ltx_received",
            LTXReceivedEvent(
                db=db.name,
                min_txid=header.min_txid,
                max_txid=header.max_txid,
                nbytes=spool.size,
                snapshot=header.is_snapshot,
                primary_hostname=self.primary_info.hostname if self.primary_info else "",
            ),
        )
        if header.is_snapshot:
            log.info(
                "%s: applied snapshot at txid %016x (%d pages): received in %.3fs, applied in %.3fs",
                db.name,
                header.max_txid,
                header.commit,
                received - spool.started,
                time.perf_counter() - received,
            )
        if self.is_ready:
            self.primary_timestamp_ms = header.timestamp

    async def _apply_file(self, db: Database, path: str, header: Header) -> None:
        if header.is_snapshot or os.path.getsize(path) > THREAD_APPLY_BYTES:
            # A large apply (a snapshot: the whole database) runs in a worker thread so FUSE and HTTP
            # are served meanwhile; the commit listeners hear of it back on this thread.
            async def apply() -> None:
                result = await trio.to_thread.run_sync(self._apply_locked, db, path, header, False)
                db.notify_commit(result)
        else:

            async def apply() -> None:
                self._apply_locked(db, path, header)

        await self._locked_for_apply(db, header, apply)

    async def _install_snapshot(self, db: Database, spool: _Spool, header: Header) -> None:
        """Swap in a snapshot's database file, built while it arrived, under the same locks as an apply."""
        built = spool.built
        assert built is not None

        async def apply() -> None:
            try:
                result = db.install_snapshot(built, notify=False)
            except (StoreError, OSError) as exc:
                spool.discard()
                raise ApplyError(
                    f"install snapshot at txid {header.max_txid:016x} on {db.name!r}: {exc}"
                ) from exc
            db.notify_commit(result)

        try:
            await self._locked_for_apply(db, header, apply)
        except BaseException:
            spool.discard()  # a lock timeout or cancellation: the built file is not used
            raise

    async def _locked_for_apply(
        self, db: Database, header: Header, apply: Callable[[], Awaitable[None]]
    ) -> None:
        """Run ``apply`` so that open readers see the database before it or after it, never between."""
        node = self.node
        visible = db.exists() and db.page_count > 0
        if visible and db.file_exists(FileKind.SHM) and is_wal_database(db.db_path):
            # WAL mode with readers around: they hold SHARED on the database for as long as they are
            # open, so the WAL locks stand in for EXCLUSIVE, and their WAL index must be rewritten.
            async with wal_apply_lock(os.path.join(node.mount_dir, db.name)):
                await run_in_thread(node.fs.invalidate_data_sync, db.name, FileKind.SHM)
                await apply()
                if header.commit > 0:
                    self._after_wal_apply(db)
                await run_in_thread(node.fs.invalidate_db_sync, db.name)
        elif visible:
            # Readers hold SHARED; EXCLUSIVE waits for them and keeps new ones out until the database
            # file, its size and the cached pages all show the new transaction.
            async with mount_lock(os.path.join(node.mount_dir, db.name), exclusive=True):
                await apply()
                await run_in_thread(node.fs.invalidate_db_sync, db.name)
        else:
            await apply()
            await run_in_thread(node.fs.invalidate_db_sync, db.name)

    @staticmethod
    def _apply_locked(db: Database, path: str, header: Header, notify: bool = True) -> CommitResult:
        """Apply under the lock. Only failures here are fatal: a lock timeout before it changed nothing."""
        try:
            result = db.apply_ltx_file(
                path, kind="snapshot" if header.is_snapshot else "apply", notify=notify
            )
        except (StoreError, LTXError, OSError) as exc:
            raise ApplyError(f"apply ltx {os.path.basename(path)} to {db.name!r}: {exc}") from exc
        if header.commit == 0:
            # A dropped database: its files go, the LTX directory (and the position) stays.
            db.close()
            for kind in (FileKind.DATABASE, FileKind.JOURNAL, FileKind.WAL, FileKind.SHM):
                try:
                    os.unlink(db.backing_path(kind))
                except FileNotFoundError:
                    pass
        return result

    @staticmethod
    def _after_wal_apply(db: Database) -> None:
        """Make open WAL readers see the applied pages (LiteFS §4.8); still under the WAL locks."""
        if wal_has_frames(db):
            # A replica's WAL stays empty (applies go into the database file); frames here would
            # shadow the applied pages for a reader that rebuilds its WAL index. Startup recovery
            # copies committed frames into the database before the node replicates.
            log.warning("%s: replica WAL holds frames; leaving them, readers are told mxFrame=0", db.name)
        try:
            rewrite_shm(db)
        except (OSError, SQLiteFormatError) as exc:
            raise ApplyError(f"rewrite shm of {db.name!r}: {exc}") from exc

    def debug_vars(self) -> dict[str, Any]:
        return {
            "connected": self.connected,
            "ready": self.is_ready,
            "primary": self.primary_info.hostname if self.primary_info else "",
            "lagMs": self.lag_ms(),
            "applied": self.applied,
            "hwm": {k: f"{v:016x}" for k, v in self.hwm.items()},
        }


class _QueueReader:
    """A blocking ``read(n)`` over chunks handed over through a queue (None marks the end).

    ``pending`` counts the bytes queued but not read yet, so the producer can wait for the reader.
    ``sink``, when given, is called with every chunk as the reader takes it (in the reader's thread).
    """

    def __init__(self, sink: Callable[[bytes], object] | None = None) -> None:
        self.sink = sink
        self.queue: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        self._cur = b""
        self._pos = 0
        self._eof = False
        self.pending = 0
        self.cond = threading.Condition()

    def put(self, data: bytes | None) -> None:
        if data:
            with self.cond:
                self.pending += len(data)
        self.queue.put(data)

    def _got(self, n: int) -> None:
        with self.cond:
            self.pending -= n
            self.cond.notify_all()

    def wait_below(self, limit: int) -> None:
        with self.cond:
            while self.pending > limit and not self._eof:
                self.cond.wait(1.0)

    def _take(self) -> bytes | None:
        """The next chunk (already handed to the sink), or None at the end."""
        if self._eof:
            return None
        item = self.queue.get()
        if item is None:
            with self.cond:
                self._eof = True
                self.cond.notify_all()
            return None
        self._got(len(item))
        if self.sink is not None:
            self.sink(item)
        return item

    def drain(self) -> None:
        """Take every chunk up to the end, handing each to the sink (if any) as it is."""
        while self._take() is not None:
            pass

    def read(self, n: int = -1) -> bytes:
        parts: list[bytes] = []
        need = n if n >= 0 else 1 << 62
        while need > 0:
            if self._pos >= len(self._cur):
                item = self._take()
                if item is None:
                    break
                self._cur, self._pos = item, 0
            take = min(need, len(self._cur) - self._pos)
            if take == len(self._cur) and self._pos == 0:
                parts.append(self._cur)  # a whole chunk: no copy
            else:
                parts.append(self._cur[self._pos : self._pos + take])
            self._pos += take
            need -= take
        return parts[0] if len(parts) == 1 else b"".join(parts)


class _ChunkWorker:
    """A thread that consumes the chunks of one incoming LTX file through a :class:`_QueueReader`.

    ``work`` runs in the thread with the reader; an exception it raises is kept in :attr:`error`
    (reported by :meth:`_Spool.finish`), after which the rest of the chunks are drained unused so
    a waiting receiver is released. At most ``VERIFY_BACKLOG`` bytes wait for the thread; beyond
    that the receiver waits (memory stays flat whatever the snapshot size).
    """

    def __init__(
        self,
        name: str,
        work: Callable[[_QueueReader], object],
        sink: Callable[[bytes], object] | None = None,
    ) -> None:
        self._reader = _QueueReader(sink)
        self._work = work
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self._work(self._reader)
        except BaseException as exc:  # reported by finish()
            self.error = exc
            self._reader.sink = None  # the file is discarded: stop writing it
            self._reader.drain()

    def feed(self, data: bytes) -> None:
        self._reader.put(data)

    @property
    def backlogged(self) -> bool:
        return self._reader.pending > VERIFY_BACKLOG

    async def catch_up(self) -> None:
        """Wait (in a worker thread) until the thread is back under the backlog limit."""
        await trio.to_thread.run_sync(self._reader.wait_below, VERIFY_BACKLOG // 2)

    def close(self) -> None:
        self._reader.put(None)

    def join(self) -> None:
        self._thread.join()


class _Spool:
    """One incoming LTX file, written to a temp file in the database's ``ltx/`` directory.

    A snapshot is decoded and checked by a thread while it arrives, which writes its pages into a
    new database file beside the live one (:func:`build_snapshot_file`); its LTX file is not
    written at all. When the last chunk is in, all that is left is renaming that file into place.
    Small incremental files are verified after the last chunk, which costs less than a thread.
    """

    def __init__(self, db: Database) -> None:
        self.db = db
        self.started = time.perf_counter()
        os.makedirs(db.ltx_dir, exist_ok=True)
        # Both end in ".tmp": startup recovery removes leftovers from the ltx/ directory.
        token = secrets.token_hex(4)
        self.tmp = os.path.join(db.ltx_dir, f".incoming-{token}.tmp")
        self.shadow = os.path.join(db.ltx_dir, f".incoming-{token}.db.tmp")
        self._f = open(self.tmp, "wb")  # noqa: SIM115 - closed in finish/discard
        self.started_at = trio.current_time()
        self.size = 0
        self._head: bytes | None = b""
        self.is_snapshot = False
        """Known once the header has arrived: a snapshot starts at TXID 1."""
        self._workers: list[_ChunkWorker] = []
        self._header: Header | None = None
        self.built: BuiltSnapshot | None = None
        """A snapshot's database file, once :meth:`finish` returned."""

    @property
    def backlogged(self) -> bool:
        """True when a worker lags too far behind: await :meth:`catch_up` before more writes."""
        return any(w.backlogged for w in self._workers)

    async def catch_up(self) -> None:
        for worker in self._workers:
            if worker.backlogged:
                await worker.catch_up()

    def write(self, data: bytes | memoryview) -> None:
        self.size += len(data)
        if self._workers:
            for worker in self._workers:
                worker.feed(data)
            return
        if self._head is None:
            self._f.write(data)
            return
        # The first bytes wait here until the header tells whether this is a snapshot.
        self._head += data
        if len(self._head) >= HEADER_SIZE:
            self._start_body()

    def _start_body(self) -> None:
        head, self._head = self._head, None
        assert head is not None
        try:
            peeked = Header.from_bytes(head[:HEADER_SIZE], validate=False)
            snapshot, commit = peeked.is_snapshot, peeked.commit
        except LTXError:
            snapshot, commit = False, 0  # finish() reports the bad header
        self.is_snapshot = snapshot
        if not snapshot or commit == 0:  # a dropped database's snapshot is applied as a file
            self._f.write(head)
            return
        # Only the database file is built: the replica keeps no LTX file of a snapshot, just a
        # record of it (litefs.store.snaprecord).
        self._f.close()
        os.unlink(self.tmp)
        self._workers = [_ChunkWorker("litefs-ltx-build", self._build)]
        for worker in self._workers:
            worker.feed(head)

    def _build(self, reader: _QueueReader) -> None:
        """In the builder thread: decode and check the snapshot, writing its pages to the shadow file."""
        dec = Decoder(reader)
        self._header = dec.header
        self.built = build_snapshot_file(dec, self.shadow, fsync=self.db.fsync_enabled)

    async def finish(self) -> Header:
        """Close the temp file, make sure it is verified completely and return its header."""
        try:
            if self._head is not None:  # shorter than a header: decoding below says so
                self._f.write(self._head)
                self._head = None
            for worker in self._workers:
                worker.close()
            for worker in self._workers:
                await trio.to_thread.run_sync(worker.join)
            self._f.close()
            if self._workers:
                for worker in reversed(self._workers):  # a decoding error names the culprit best
                    if worker.error is not None:
                        raise worker.error
                assert self._header is not None
                return self._header
            with open(self.tmp, "rb") as f:
                header = peek_header(f)
                f.seek(0)
                Decoder(f).verify()
        except BaseException:
            self.discard()
            raise
        return header

    def install(self, header: Header) -> str:
        """fsync and rename into ``ltx/<min>-<max>.ltx``; a snapshot replaces every other LTX file.

        Not for a built snapshot (:attr:`built`), which has no LTX file: see Database.install_snapshot.
        """
        db = self.db
        assert self.built is None
        fd = os.open(self.tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        path = db.ltx_path(header.min_txid, header.max_txid)
        if header.is_snapshot:
            db.remove_ltx_history(keep=path)
        os.rename(self.tmp, path)
        fsync_dir(db.ltx_dir)
        return path

    def discard(self) -> None:
        if not self._f.closed:
            self._f.close()
        for worker in self._workers:
            worker.close()  # its thread ends on its own
        for path in (self.tmp, self.shadow):
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass


__all__ = [
    "LAG_UNKNOWN_MS",
    "ApplyError",
    "ClusterIDMismatchError",
    "PositionMismatchError",
    "ReplicaClient",
    "ReplicationError",
]
