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

import io
import logging
import os
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterable
from typing import TYPE_CHECKING

import trio
from quart import Response, request

from litefs.events import LTXSentEvent, ReplicaPosition, TxEvent
from litefs.ltx import (
    EMPTY_DATABASE_CHECKSUM,
    FLAG_COMPRESS_LZ4,
    Encoder,
    Header,
    LTXError,
    Pos,
    lock_pgno,
    peek_header,
)
from litefs.replication.mountlock import mount_lock, run_in_thread
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
)
from litefs.sqlite.errors import SQLiteFormatError
from litefs.store import Database, StoreError
from litefs.store.database import SnapshotView

if TYPE_CHECKING:
    from quart_trio import QuartTrio

    from litefs.node import Node

log = logging.getLogger("litefs.replication")

#: Seconds without a commit after which a HEARTBEAT is sent (LiteFS: 1 s ticker).
HEARTBEAT_INTERVAL = 1.0
#: Snapshot attempts before the stream ends (a WAL checkpoint during one makes it start over).
SNAPSHOT_ATTEMPTS = 5
#: Bytes of an LTX file per wire chunk (LiteFS copies with a 32 KiB buffer).
CHUNK_SIZE = 32768
#: Bytes of a snapshot read and sent per write (as 64 KiB wire chunks).
SEND_SIZE = 1 << 20


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
                # END makes the replica reconnect after its reconnect-delay and ask again.
                log.warning("%s; ending the stream to replica %s", exc, self.replica_id or "?")
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
                path, snap_pos = await self._snapshot(db)
                try:
                    async for piece in self._send_file(name, path):
                        yield piece
                    nbytes = os.path.getsize(path)
                finally:
                    os.unlink(path)
                client = snap_pos
                self._report_sent(name, 1, snap_pos.txid, nbytes, snapshot=True)
            else:
                yield LTXFrameStart(name).encode()
                for start in range(0, len(data), CHUNK_SIZE):
                    yield encode_chunk(data[start : start + CHUNK_SIZE])
                yield CHUNK_END
                yield HWMFrame(name, 0).encode()
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
            with open(db.ltx_path(txid, txid), "rb") as f:
                data = f.read()
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

    async def _send_file(self, name: str, path: str) -> AsyncIterator[bytes]:
        yield LTXFrameStart(name).encode()
        with open(path, "rb") as f:
            # One write per MiB: each yield costs a trip through quart and hypercorn.
            while data := f.read(SEND_SIZE):
                yield encode_chunk(data)
        yield CHUNK_END

    async def _snapshot(self, db: Database) -> tuple[str, Pos]:
        """Write a snapshot of ``db`` at its current position to a temp file; return (path, position).

        SQLite's SHARED lock (taken through the mount) keeps rollback-mode writers out while the
        pages are read. WAL-mode writers do not need that lock, so the pages are read through a
        :class:`SnapshotView` captured at one position; commits after it append WAL frames the view
        does not use, and a checkpoint or WAL restart meanwhile makes the attempt start over.
        The temp file is streamed after the lock is released.
        """
        fd, tmp = tempfile.mkstemp(prefix=".snapshot-", suffix=".tmp", dir=self.store.data_dir)
        os.close(fd)
        try:
            for attempt in range(1, SNAPSHOT_ATTEMPTS + 1):
                try:
                    if db.page_count == 0:
                        view = db.snapshot_view()
                        _write_snapshot_file(tmp, view, self.store.node_id, self.store.compress)
                    else:
                        async with mount_lock(os.path.join(self.node.mount_dir, db.name), exclusive=False):
                            view = db.snapshot_view()
                            await run_in_thread(
                                _write_snapshot_file, tmp, view, self.store.node_id, self.store.compress
                            )
                    break
                except SnapshotError as exc:
                    if attempt == SNAPSHOT_ATTEMPTS:
                        raise
                    log.info("%s (attempt %d of %d), retrying", exc, attempt, SNAPSHOT_ATTEMPTS)
        except BaseException:
            os.unlink(tmp)
            raise
        pos = view.pos
        log.info("%s: sending snapshot at txid %016x to %s", db.name, pos.txid, self.replica_id)
        return tmp, pos


def wall_ms() -> int:
    """The wall clock in milliseconds (HEARTBEAT payload, snapshot timestamp)."""
    return int(time.time() * 1000)


def peek_header_bytes(data: bytes) -> Header:
    return peek_header(io.BytesIO(data))


def _write_snapshot_file(path: str, view: SnapshotView, node_id: int, compress: bool) -> None:
    """Encode pages 1..page count of ``view`` as a snapshot LTX (TXIDs 1..its TXID) into ``path``."""
    page_size, commit, pos, name = view.page_size, view.page_count, view.pos, view.db.name
    header = Header(
        flags=FLAG_COMPRESS_LZ4 if compress else 0,
        page_size=page_size,
        commit=commit,
        min_txid=1,
        max_txid=pos.txid,
        timestamp=wall_ms(),
        pre_apply_checksum=0,
        node_id=node_id,
    )
    with open(path, "wb") as out:
        enc = Encoder(out, header)
        if commit:
            lock = lock_pgno(page_size)
            for pgno in range(1, commit + 1):
                if pgno == lock:
                    continue
                try:
                    data = view.read_page(pgno)
                except (StoreError, OSError, SQLiteFormatError) as exc:
                    raise SnapshotError(f"snapshot {name}: {exc}") from exc
                enc.encode_page(pgno, data)
            actual = enc.snapshot_checksum
        else:
            actual = EMPTY_DATABASE_CHECKSUM
        if not view.still_valid():
            raise SnapshotError(f"snapshot {name}: a checkpoint ran while the pages were read")
        if actual != pos.post_apply_checksum:
            raise SnapshotError(
                f"snapshot {name}: snapshot checksum mismatch: pages give {actual:016x}, position is {pos}"
            )
        enc.finish(actual)


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
    "SnapshotError",
    "StreamRequestError",
    "register_stream",
]
