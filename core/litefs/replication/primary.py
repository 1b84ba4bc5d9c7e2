"""The primary's side of replication: the ``POST /stream`` handler (LiteFS §5.4).

One stream per connected replica. The handler subscribes to the store's commits *before* reading the
replica's position map (so no commit can slip between the two), then loops:

1. for every dirty database, send what the replica lacks: the next LTX file (``ltx/<t>-<t>.ltx``)
   while it continues the replica's position, otherwise a **snapshot** (TXID 1 for a new replica, a
   file removed by retention, a replica ahead of the primary or with a diverged checksum);
2. after the first pass, READY (the replica becomes ready) and a HEARTBEAT;
3. wait for the next commit or one idle second (then a HEARTBEAT), and go round again.

The stream ends with an END frame when this node stops being primary; a replica that disconnects
ends it too (the next write to its socket fails).

Transport: hypercorn serves the route over HTTP/1.1 (chunked) and cleartext HTTP/2 with prior knowledge,
so a LiteFS Go replica, which insists on h2c, can stream from us; we do not answer 426 to HTTP/1.1.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterable
from typing import TYPE_CHECKING, Any

import lz4.block
import trio
from quart import Response, request

from litefs.events import LTXSentEvent, ReplicaPosition, TxEvent
from litefs.fuse.locks import LockTimeoutError, lock_shared, lock_wal_checkpoints
from litefs.ltx import (
    EMPTY_DATABASE_CHECKSUM,
    FLAG_COMPRESS_LZ4,
    PAGE_HEADER_SIZE,
    Encoder,
    Header,
    LTXError,
    Pos,
    lock_pgno,
    peek_header,
)
from litefs.replication.mountlock import hold_locks, release_lock_fd
from litefs.replication.protocol import (
    CHUNK_END,
    DropDBFrame,
    EndFrame,
    HandoffFrame,
    HeartbeatFrame,
    HWMFrame,
    LTXFrameStart,
    ProtocolError,
    ReadyFrame,
    decode_pos_map,
    encode_chunk,
    encode_chunk_parts,
)
from litefs.replication.walindex import is_wal_database
from litefs.sqlite.errors import SQLiteFormatError
from litefs.store import Database, StoreError
from litefs.store.database import SnapshotView

if TYPE_CHECKING:
    from quart_trio import QuartTrio

    from litefs.node import Node

log = logging.getLogger("litefs.replication")

#: Seconds without a commit after which a HEARTBEAT is sent (LiteFS: 1 s ticker).
HEARTBEAT_INTERVAL = 1.0
#: Bytes of an LTX file per wire chunk (LiteFS copies with a 32 KiB buffer).
CHUNK_SIZE = 32768
#: Bytes of a snapshot read and sent per write (as 64 KiB wire chunks).
SEND_SIZE = 1 << 20
#: Pages, spread over the database, that decide whether a snapshot is worth compressing.
SNAPSHOT_SAMPLE_PAGES = 32
#: A snapshot goes out uncompressed when LZ4 saves less than this share of the sample: compressing
#: pages that do not shrink (encrypted or random blobs) costs LZ4 and its content checksum on both
#: nodes for no bandwidth (a 1 GB random-page snapshot: 8.3 s with LZ4, 7.0 s without).
SNAPSHOT_MIN_SAVING = 0.10


class StreamRequestError(ValueError):
    """A ``/stream`` request that must be refused; ``status`` is the HTTP status to answer."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class SnapshotError(StoreError):
    """A snapshot could not be made consistent with the database position."""


class ReplicaStream:
    """The frames sent to one replica; iterate :meth:`frames` to get the response body.

    ``positions`` is the replica's position map, ``filter`` the optional ``?filter=`` names.
    Create it (which subscribes to commits) before the request body is read.
    """

    def __init__(self, node: Node, replica_id: str, *, filter: Iterable[str] | None = None) -> None:
        self.node = node
        self.store = node.store
        self.replica_id = replica_id
        self.filter = set(filter) if filter else None
        self.positions: dict[str, Pos] = {}
        self._dirty: set[str] = set()
        self._changed = trio.Event()
        self._listener: Callable[[TxEvent], None] = self._on_commit
        self.store.commit_listeners.append(self._listener)
        self.closed = False
        self._handoff_lease_id: str | None = None
        self.hostname = ""
        """The replica's ``lease.hostname`` when it sent one (``Litefs-Hostname``, our extension)."""
        self.connected_ms = wall_ms()
        #: Per database: timestamp (ms) of the oldest commit not yet sent to this replica.
        self.behind_since_ms: dict[str, int] = {}
        node.streams[replica_id.upper()] = self

    def send_handoff(self, lease_id: str) -> None:
        """Send a HANDOFF frame with ``lease_id`` next, then end the stream (LiteFS §6.4)."""
        self._handoff_lease_id = lease_id
        self._changed.set()

    def _on_commit(self, event: TxEvent) -> None:
        if self.filter is None or event.db in self.filter:
            self.behind_since_ms.setdefault(event.db, event.timestamp_ms)
            self._dirty.add(event.db)
            self._changed.set()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            if self.node.streams.get(self.replica_id.upper()) is self:
                del self.node.streams[self.replica_id.upper()]
            try:
                self.store.commit_listeners.remove(self._listener)
            except ValueError:
                pass

    def set_positions(self, body: bytes) -> None:
        try:
            self.positions = decode_pos_map(body)
        except ProtocolError as exc:
            raise StreamRequestError(f"cannot read position map: {exc}", 400) from exc

    def _wanted(self, names: Iterable[str]) -> set[str]:
        return {n for n in names if self.filter is None or n in self.filter}

    async def frames(self) -> AsyncIterator[bytes]:
        """The response body: never ends while this node is primary and the replica listens."""
        try:
            try:
                dirty = self._wanted(set(self.positions) | set(self.store.database_names()))
                first = True
                while self.node.is_primary or self._handoff_lease_id is not None:
                    if self._handoff_lease_id is not None:
                        yield HandoffFrame(self._handoff_lease_id).encode()
                        break
                    self._dirty.clear()
                    for name in sorted(dirty):
                        async for piece in self._stream_db(name):
                            yield piece
                    if first:
                        yield ReadyFrame().encode()
                    if first or not dirty:
                        yield HeartbeatFrame(wall_ms()).encode()
                    first = False
                    with trio.move_on_after(HEARTBEAT_INTERVAL):
                        await self._changed.wait()
                    self._changed = trio.Event()
                    dirty = set(self._dirty)
            except SnapshotError as exc:
                # The replica is inside an LTX frame: the body ends there, without an END frame
                # (which it would read as chunk data), so it drops the partial file, reconnects
                # after its reconnect-delay and asks again.
                log.warning("%s; ending the stream to replica %s mid-file", exc, self.replica_id or "?")
                return
            yield EndFrame().encode()
        finally:
            self.close()
            log.info("stream disconnected: replica %s", self.replica_id or "?")

    async def _stream_db(self, name: str) -> AsyncIterator[bytes]:
        db = self.store.db(name)
        if db is None:
            yield DropDBFrame(name).encode()
            return
        client = self.positions.get(name, Pos(0, 0))
        while True:
            pos = db.pos
            if client.txid > pos.txid:
                log.info(
                    "%s: client transaction id %016x exceeds primary %016x, sending snapshot",
                    name,
                    client.txid,
                    pos.txid,
                )
                client = Pos(0, 0)
            elif client.txid == pos.txid and client.post_apply_checksum != pos.post_apply_checksum:
                log.info("%s: client caught up but checksum is mismatched, sending snapshot", name)
                client = Pos(0, 0)
            if client.txid >= pos.txid:
                break
            txid = client.txid + 1
            data = None if txid == 1 else self._read_ltx(db, txid, client)
            if data is None:
                snap = SnapshotEncoder(db, self.store.node_id, self.store.compress)
                async for piece in self._send_snapshot(snap):
                    yield piece
                client = snap.pos
                self._report_sent(name, 1, client.txid, snap.sent_bytes, snapshot=True)
            else:
                # One write per LTX file: separate small writes of one frame cost a trip through
                # quart and hypercorn each, and can wait on the replica's delayed ACK (Nagle).
                parts = [LTXFrameStart(name).encode()]
                parts += [encode_chunk(data[i : i + CHUNK_SIZE]) for i in range(0, len(data), CHUNK_SIZE)]
                parts += [CHUNK_END, HWMFrame(name, 0).encode()]
                yield b"".join(parts)
                # The trailer's first 8 bytes are the post-apply checksum.
                client = Pos(peek_header_bytes(data).max_txid, int.from_bytes(data[-16:-8], "big"))
                self._report_sent(name, txid, client.txid, len(data), snapshot=False)
        self.positions[name] = client
        # Caught up with the position read above, with no await since: nothing older is unsent.
        self.behind_since_ms.pop(name, None)

    def _report_sent(self, name: str, min_txid: int, max_txid: int, nbytes: int, *, snapshot: bool) -> None:
        event = LTXSentEvent(
            db=name,
            replica_id=self.replica_id.upper(),
            replica_hostname=self.hostname,
            min_txid=min_txid,
            max_txid=max_txid,
            nbytes=nbytes,
            snapshot=snapshot,
        )
        self.node.notify("litefs_ltx_sent", event)

    def position(self, name: str, primary: Pos, now_ms: int) -> ReplicaPosition | None:
        """This replica's position in ``name`` as last sent, and its lag behind ``primary``."""
        pos = self.positions.get(name)
        if pos is None:
            return None
        lag_txids = max(0, primary.txid - pos.txid)
        lag_seconds = 0.0
        if lag_txids:
            since = self.behind_since_ms.get(name, self.connected_ms)
            lag_seconds = max(0, now_ms - since) / 1000
        return ReplicaPosition(
            node_id=self.replica_id.upper(),
            hostname=self.hostname,
            txid=pos.txid,
            post_apply_checksum=pos.post_apply_checksum,
            lag_txids=lag_txids,
            lag_seconds=lag_seconds,
        )

    @staticmethod
    def _read_ltx(db: Database, txid: int, client: Pos) -> bytes | None:
        """The LTX file for ``txid`` if it continues ``client``; None means "send a snapshot"."""
        try:
            data = db.read_ltx_bytes(txid, txid)
        except FileNotFoundError:
            log.info("%s: ltx file for txid %016x is gone, sending snapshot", db.name, txid)
            return None
        try:
            header = peek_header_bytes(data)
        except LTXError as exc:
            log.warning("%s: unreadable ltx file for txid %016x (%s), sending snapshot", db.name, txid, exc)
            return None
        if header.pre_apply_checksum != client.post_apply_checksum:
            log.info("%s: pre-apply checksum mismatch at txid %016x, sending snapshot", db.name, txid)
            return None
        return data

    async def _send_snapshot(self, snap: SnapshotEncoder) -> AsyncIterator[bytes]:
        """Stream a snapshot of ``snap.db`` as it is encoded: no temp file, no second pass.

        SQLite's SHARED lock (taken through the mount) keeps rollback-mode writers out until the last
        page is read. WAL-mode writers do not need that lock, so the pages are read through a
        :class:`SnapshotView` captured at one position: commits after it append WAL frames the view
        does not use, and SQLite's WAL read locks keep checkpoints from moving pages under it
        (:class:`_SnapshotLocks`; where they cannot be had, a checkpoint aborts the stream and the
        replica reconnects for a fresh snapshot); the checksum is computed while encoding and
        checked before the trailer goes out (a mismatch aborts the stream instead, and the replica
        reconnects for a fresh snapshot). Pages are read, checksummed and compressed a batch at a
        time in a worker thread; only about one batch is held in memory whatever the database size.
        """
        db = snap.db
        cfg = self.node.config
        limit = cfg.http.snapshot_timeout or cfg.data.retention
        lock = (
            hold_locks(
                lambda: _SnapshotLocks.take(os.path.join(self.node.mount_dir, db.name), db.db_path, 10.0),
                _SnapshotLocks.release,
            )
            if db.page_count
            else _as_async(contextlib.nullcontext())
        )
        done = trio.Event()
        async with lock as held:
            if held is not None and limit > 0 and self.node.nursery is not None:
                # A replica that stops reading would keep writers out for as long as the lock is
                # held: after http.snapshot-timeout (default data.retention) the lock goes, and the
                # stream ends with an error at its next chunk.
                self.node.nursery.start_soon(_snapshot_watchdog, held, limit, done)
            try:
                if held is not None:
                    snap.pinned = held.pinned
                snap.start()
                log.info("%s: sending snapshot at txid %016x to %s", db.name, snap.pos.txid, self.replica_id)
                yield LTXFrameStart(db.name).encode()
                ahead = _ReadAhead(snap.next_wire_chunks)
                while chunk := await ahead.next():
                    if held is not None and held.released:
                        raise SnapshotError(f"snapshot {db.name}: not sent within {limit:g}s, aborted")
                    yield chunk
                yield CHUNK_END
            finally:
                done.set()


class _SnapshotLocks:
    """What keeps a database's pages where a snapshot reads them, taken through the mount.

    SQLite's SHARED lock keeps rollback-journal writers out until the last page is read (as in
    LiteFS). In WAL mode writers do not need that lock, and a checkpoint copying WAL frames into the
    database file would change pages under the snapshot's view: so for a WAL database the primary
    also holds two of SQLite's WAL read locks (:func:`lock_wal_checkpoints`), taken before the view is
    captured. Commits go on, but no checkpoint copies a frame and the WAL is not restarted until the
    snapshot is sent (:attr:`pinned`); without them, the first checkpoint aborted the snapshot, and
    under steady writes a large snapshot was aborted on every retry. The stream or its watchdog
    releases, once, without waiting for the FUSE loop.
    """

    def __init__(self, fd: int, wal_fd: int | None) -> None:
        self.fd = fd
        self.wal_fd = wal_fd
        self.released = False
        self._mu = threading.Lock()

    @classmethod
    def take(cls, mount_path: str, backing_path: str, timeout: float) -> _SnapshotLocks:
        """Blocking (worker thread): the SHARED lock, and the WAL read locks in WAL mode."""
        fd = lock_shared(mount_path, timeout)
        wal_fd = None
        try:
            if is_wal_database(backing_path):
                wal_fd = lock_wal_checkpoints(mount_path, timeout)
        except LockTimeoutError as exc:  # the snapshot goes on; a checkpoint meanwhile aborts it
            log.warning("%s: snapshot without WAL read locks: %s", os.path.basename(mount_path), exc)
        except BaseException:
            release_lock_fd(fd)
            raise
        return cls(fd, wal_fd)

    def pinned(self) -> bool:
        """True while the WAL read locks keep the view's pages in place."""
        return self.wal_fd is not None and not self.released

    def release(self) -> None:
        with self._mu:
            if self.released:
                return
            self.released = True
        release_lock_fd(self.fd)
        if self.wal_fd is not None:
            release_lock_fd(self.wal_fd)


class _ReadAhead:
    """Call ``produce`` in a worker thread one call ahead of the consumer, until it returns b"".

    A snapshot piece is read and encoded (worker thread) and then sent (trio thread); one after the
    other, each side waited for the other. Here the next piece is produced while the current one
    is being sent. Calls never overlap. If the consumer stops, a call in flight finishes in the
    background and its result is dropped (as with ``abandon_on_cancel``).
    """

    def __init__(self, produce: Callable[[], bytes]) -> None:
        self._produce = produce
        self._token = trio.lowlevel.current_trio_token()
        self._pending = self._start()

    def _start(self) -> tuple[trio.Event, list[Any]]:
        done = trio.Event()
        box: list[Any] = []
        token = self._token

        def deliver(outcome: Any) -> None:
            box.append(outcome)
            try:
                token.run_sync_soon(done.set)
            except trio.RunFinishedError:
                pass  # the node is gone: nobody waits

        trio.lowlevel.start_thread_soon(self._produce, deliver)
        return done, box

    async def next(self) -> bytes:
        done, box = self._pending
        await done.wait()
        piece = box[0].unwrap()
        if piece:
            self._pending = self._start()
        return piece


async def _snapshot_watchdog(held: _SnapshotLocks, limit: float, done: trio.Event) -> None:
    with trio.move_on_after(limit):
        await done.wait()
        return
    if not done.is_set():
        log.warning("snapshot not sent within %gs: releasing its lock, the stream ends", limit)
        try:
            held.release()
        except OSError as exc:  # never take the node down from here
            log.error("snapshot watchdog: releasing the lock failed: %s", exc)


@contextlib.asynccontextmanager
async def _as_async(cm: Any) -> AsyncIterator[None]:
    """Enter an async or a plain context manager."""
    if hasattr(cm, "__aenter__"):
        async with cm:
            yield
    else:
        with cm:
            yield


class _Sink:
    """The file object the snapshot encoder writes to: keeps the output until it is taken.

    What is written is kept as it is, not copied: the snapshot's page records are views of the
    encoder's one reused buffer, valid until the next piece is read, so a piece must be taken
    (copied out by :meth:`take` or :func:`encode_chunk_parts`) before the next one is encoded.
    """

    def __init__(self) -> None:
        self.parts: list[bytes | bytearray | memoryview] = []
        self.size = 0

    def write(self, data: bytes | bytearray | memoryview) -> int:
        self.parts.append(data)
        self.size += len(data)
        return len(data)

    def take_parts(self) -> list[bytes | bytearray | memoryview]:
        parts, self.parts = self.parts, []
        self.size = 0
        return parts

    def take(self) -> bytes:
        return b"".join(self.take_parts())


class SnapshotEncoder:
    """Encode pages 1..page count of a database as a snapshot LTX file, one piece at a time.

    :meth:`start` (on the trio thread, with the lock held) fixes the position; :meth:`next_chunk`
    (in a worker thread) returns the next ~``SEND_SIZE`` bytes of the file, then b"" at the end.
    The snapshot checksum is folded in as pages are encoded; the trailer is written only when it
    equals the position's checksum (else SnapshotError).
    """

    def __init__(self, db: Database, node_id: int, compress: bool) -> None:
        self.db = db
        self.node_id = node_id
        self.compress = compress
        self.pos = db.pos
        self.view: SnapshotView | None = None
        self.sent_bytes = 0
        self._sink = _Sink()
        self._enc: Encoder | None = None
        self._pgno = 1
        self._done = False
        self._records: memoryview | None = None
        #: True while something holds the view's pages in place (WAL read locks, see
        #: _SnapshotLocks): no checkpoint or WAL restart can then change what the view reads.
        self.pinned: Callable[[], bool] = lambda: False

    def start(self) -> None:
        self.view = view = self.db.snapshot_view()
        self.pos = view.pos
        self.page_size, self.commit = view.page_size, view.page_count
        if self.compress and not self._worth_compressing():
            log.info("%s: snapshot pages do not compress; sending the snapshot uncompressed", self.db.name)
            self.compress = False
        header = Header(
            flags=FLAG_COMPRESS_LZ4 if self.compress else 0,
            page_size=self.page_size,
            commit=self.commit,
            min_txid=1,
            max_txid=self.pos.txid,
            timestamp=wall_ms(),
            pre_apply_checksum=0,
            node_id=self.node_id,
        )
        self._enc = Encoder(self._sink, header)

    def _worth_compressing(self) -> bool:
        """True unless a sample of pages spread over the database shrinks by less than
        SNAPSHOT_MIN_SAVING under LZ4 (a few page reads and ~100 us of LZ4)."""
        view, commit = self.view, self.commit
        assert view is not None
        if commit < SNAPSHOT_SAMPLE_PAGES:
            return True
        lock = lock_pgno(self.page_size)
        step = commit // SNAPSHOT_SAMPLE_PAGES
        try:
            sample = b"".join(view.read_pages(pgno, 1) for pgno in range(1, commit + 1, step) if pgno != lock)
        except (StoreError, OSError, SQLiteFormatError):
            return True  # the encoder meets the same error and reports it
        return len(lz4.block.compress(sample, store_size=False)) <= (1 - SNAPSHOT_MIN_SAVING) * len(sample)

    def _next_piece(self) -> _Sink:
        """Encode the next piece into the sink (left empty at the end) and return the sink."""
        enc = self._enc
        assert enc is not None, "start() first"
        if self._done:
            return self._sink
        db, commit, view = self.db, self.commit, self.view
        assert view is not None
        lock = lock_pgno(self.page_size) if commit else 0
        per_read = max(1, SEND_SIZE // self.page_size)
        rec = self.page_size + PAGE_HEADER_SIZE
        if self._records is None:
            # One buffer for the records of every piece (a piece is at most SEND_SIZE and a record
            # over): read straight into place, no allocation, no copy in Python (see _Sink).
            self._records = memoryview(bytearray((per_read + 1) * rec))
        used = 0
        while self._sink.size < SEND_SIZE and self._pgno <= commit:
            first = self._pgno
            if first == lock:
                self._pgno += 1
                continue
            # A run of pages up to the lock page or the end, read and encoded in one piece; no more
            # than what fills this piece (compressed data can come out a little shorter).
            want = -(-(SEND_SIZE - self._sink.size) // (self.page_size + 4))
            n = min(per_read, want, commit - first + 1, (lock - first) if first < lock else per_read)
            self._pgno += n
            # The committed pages as of the view: in WAL mode their newest committed frames then,
            # else the file's copies.
            if self.compress:
                used = 0  # the compressor has consumed the previous run: the buffer is free again
            records = self._records[used : used + n * rec]
            used += n * rec
            try:
                view.read_records_into(first, n, records)
            except (StoreError, OSError, SQLiteFormatError) as exc:
                raise SnapshotError(f"snapshot {db.name}: {exc}") from exc
            enc.encode_records(first, records)
        if not self.pinned() and not view.still_valid():
            raise SnapshotError(f"snapshot {db.name}: a checkpoint ran while the pages were read")
        if self._pgno > commit:
            actual = enc.snapshot_checksum if commit else EMPTY_DATABASE_CHECKSUM
            if actual != self.pos.post_apply_checksum:
                raise SnapshotError(
                    f"snapshot {db.name}: snapshot checksum mismatch: pages give {actual:016x}, "
                    f"position is {self.pos}"
                )
            enc.finish(actual)
            self._done = True
        self.sent_bytes += self._sink.size
        return self._sink

    def next_chunk(self) -> bytes:
        """The next ~``SEND_SIZE`` bytes of the LTX file (b"" at the end); worker thread."""
        return self._next_piece().take()

    def next_wire_chunks(self) -> bytes:
        """:meth:`next_chunk` already cut into wire chunks (u16 length + bytes), b"" at the end:
        one copy of the piece, straight from the records buffer into the wire bytes."""
        return encode_chunk_parts(self._next_piece().take_parts())


def wall_ms() -> int:
    """The wall clock in milliseconds (HEARTBEAT payload, snapshot timestamp)."""
    return int(time.time() * 1000)


def peek_header_bytes(data: bytes) -> Header:
    return peek_header(io.BytesIO(data))


def register_stream(app: QuartTrio, node: Node) -> None:
    """Add ``POST /stream`` to the node's API app."""

    @app.route("/stream", methods=["POST"])
    async def stream() -> Response:
        replica_id = request.headers.get("Litefs-Id", "")
        if replica_id and replica_id.upper() == f"{node.node_id:016X}":
            return _error("cannot connect to self", 400)
        if not node.is_primary:
            return _error("node is not primary", 503)
        names = [n for n in request.args.get("filter", "").split(",") if n]
        # Subscribe before reading the positions: a commit in between is then marked dirty.
        rs = ReplicaStream(node, replica_id, filter=names or None)
        rs.hostname = request.headers.get("Litefs-Hostname", "")
        try:
            rs.set_positions(await request.get_data())
        except StreamRequestError as exc:
            rs.close()
            return _error(str(exc), exc.status)
        log.info("stream connected: replica %s (%d databases)", replica_id or "?", len(rs.positions))
        response = Response(rs.frames(), status=200, content_type="application/octet-stream")
        response.timeout = None
        return response


def _error(message: str, status: int) -> Response:
    return Response(message + "\n", status=status, content_type="text/plain; charset=utf-8")


__all__ = [
    "CHUNK_SIZE",
    "HEARTBEAT_INTERVAL",
    "ReplicaStream",
    "SnapshotEncoder",
    "SnapshotError",
    "StreamRequestError",
    "register_stream",
]
