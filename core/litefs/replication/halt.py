"""HALT locks: a replica writes through the primary for a while (LiteFS §7).

Primary side (:class:`PrimaryHalts`, routes ``POST/DELETE /halt`` and ``POST /tx``): a replica asks for
the HALT lock of one database. The primary takes its internal write lock on it -- every SQLite lock
byte, taken through the mount from a worker thread like a replica's apply -- within 10 s, recovers the
database (a hot journal is rolled back, committed WAL frames are copied into the database file so the
WAL is empty) and answers the lock: ``{"id", "pos": {"TXID", "PostApplyChecksum"}, "expires"}``. Its
own writers wait (SQLITE_BUSY) until the lock is released or expires (30 s, checked every 5 s). The
holder then sends each of its transactions as an LTX file to ``/tx``; the primary checks the lock ID
(LiteFS does not), TXID continuity and the pre-apply checksum, stores the file as it came (stamped
with the replica's node ID), applies it under the held locks and streams it to every replica.

Replica side (:class:`ReplicaHalts`): acquire = ``POST /halt``, then wait until the local position is
the lock's position (overshoot or a different checksum is an error, the lock is released). While held
the database is writable here; every commit (rollback journal or WAL) posts its LTX file to ``/tx``
*before* it completes locally, so a refusal (lock expired, primary gone) fails the commit with an I/O
error and nothing is half-applied. Release: forget the lock (the database is read-only again),
recover locally under SQLite's locks (roll back a transaction the primary refused, copy the WAL
frames written meanwhile into the database file), ``DELETE /halt``.

The echo of a forwarded transaction comes back on the replication stream with this node's ID; the
replica recognises it and drops it (see :mod:`litefs.replication.replica`).
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
import secrets
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx
import trio
from quart import Response, request

from litefs.fuse.locks import LockTimeoutError
from litefs.ltx import Decoder, LTXError, Pos, peek_header
from litefs.replication.mountlock import mount_lock, run_in_thread
from litefs.replication.walindex import is_wal_database, rewrite_shm, wal_apply_lock
from litefs.store import Database, FileKind, HaltForwardError, StoreError
from litefs.store.fsutil import fsync_dir

if TYPE_CHECKING:
    from quart_trio import QuartTrio

    from litefs.node import Node

log = logging.getLogger("litefs.halt")

#: Longest wait for the primary's internal write lock (LiteFS: 10 s).
HALT_ACQUIRE_TIMEOUT = 10.0
#: A HALT lock expires this long after it was granted (LiteFS: 30 s).
HALT_LOCK_TTL = 30.0
#: How often the primary drops expired HALT locks (LiteFS: 5 s).
HALT_MONITOR_INTERVAL = 5.0
#: How often the replica checks the expiry of the locks it holds.
REPLICA_MONITOR_INTERVAL = 0.5
#: HTTP timeout of the replica's requests to the primary (the acquire may wait 10 s there).
HALT_HTTP_TIMEOUT = 15.0

HALT_RULES = ("/halt", "/tx")


class HaltError(Exception):
    """A HALT request failed; ``status`` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int = 500) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class HaltLock:
    """LiteFS's ``HaltLock`` document."""

    id: int
    pos: Pos
    expires: float
    """Wall-clock seconds (UNIX time)."""

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "pos": {
                "TXID": f"{self.pos.txid:016x}",
                "PostApplyChecksum": f"{self.pos.post_apply_checksum:016x}",
            },
            "expires": format_rfc3339_nano(self.expires),
        }

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> HaltLock:
        try:
            pos = doc["pos"]
            return cls(
                int(doc["id"]),
                Pos(int(pos["TXID"], 16), int(pos["PostApplyChecksum"], 16)),
                parse_rfc3339(doc["expires"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise HaltError(f"invalid halt lock document: {exc}") from exc


def format_rfc3339_nano(ts: float) -> str:
    """Go's RFC3339Nano in UTC (trailing zeros of the fraction trimmed)."""
    ns = int(round(ts * 1e9))
    when = _dt.datetime.fromtimestamp(ns // 1_000_000_000, tz=_dt.UTC)
    frac = f"{ns % 1_000_000_000:09d}".rstrip("0")
    return when.strftime("%Y-%m-%dT%H:%M:%S") + (f".{frac}" if frac else "") + "Z"


def parse_rfc3339(text: str) -> float:
    """Parse an RFC 3339 time with up to nanosecond precision; return UNIX seconds."""
    text = text.strip()
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    main, frac = text, ""
    if "." in text:
        head, rest = text.split(".", 1)
        digits = ""
        for ch in rest:
            if not ch.isdigit():
                break
            digits += ch
        frac = digits
        main = head + rest[len(digits) :]
    when = _dt.datetime.fromisoformat(main)
    return when.timestamp() + (int(frac) / 10 ** len(frac) if frac else 0.0)


def parse_lock_id(value: str | None) -> int:
    """A lock ID is a decimal int64 (LiteFS answers ``invalid id`` otherwise)."""
    try:
        lock_id = int(value or "")
    except ValueError:
        raise HaltError("invalid id", 400) from None
    if not -(1 << 63) <= lock_id < (1 << 63):
        raise HaltError("invalid id", 400)
    return lock_id


# -- holding a database's SQLite locks -------------------------------------------------------------


@asynccontextmanager
async def write_lock(node: Node, db: Database, timeout: float) -> AsyncIterator[bool]:
    """The node's internal write lock on ``db``: every SQLite lock byte, through the mount.

    Rollback journal: EXCLUSIVE on the database file. WAL with ``-shm``: the WAL locks (WRITE, CKPT,
    RECOVER, READ0-4) exclusively, as an apply does. A database with no content has nothing to lock.
    Yields True when it is a WAL database whose ``-shm`` must be rewritten after a change.
    """
    path = os.path.join(node.mount_dir, db.name)
    if not db.exists() or db.page_count == 0:
        yield False
        return
    if db.file_exists(FileKind.SHM) and is_wal_database(db.db_path):
        async with wal_apply_lock(path, timeout=timeout):
            yield True
    else:
        async with mount_lock(path, exclusive=True, timeout=timeout):
            yield False


def _fire(node: Node, name: str, held: bool, lock_id: int, holder: int) -> None:
    from litefs.events import HaltEvent

    try:
        node.registry.hook.litefs_halt_changed(node=node, event=HaltEvent(name, held, lock_id, holder))
    except Exception:  # a plugin must never break the HALT path
        log.exception("litefs_halt_changed hook failed")


# -- primary side ----------------------------------------------------------------------------------


@dataclass
class _Held:
    name: str
    lock: HaltLock
    holder: int
    wal: bool = False
    released: trio.Event = field(default_factory=trio.Event)
    done: trio.Event = field(default_factory=trio.Event)


class PrimaryHalts:
    """HALT locks this primary holds for replicas, one per database at most."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.held: dict[str, _Held] = {}
        self._nursery: trio.Nursery | None = None
        self._changed = trio.Event()

    def active(self, name: str) -> bool:
        return name in self.held

    async def run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Service: hosts the lock holders and drops expired locks every 5 s."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            while True:
                await trio.sleep(HALT_MONITOR_INTERVAL)
                self.expire()

    def expire(self, now: float | None = None) -> None:
        now = time.time() if now is None else now
        for held in list(self.held.values()):
            if not held.lock.expires:
                continue  # still being acquired
            if held.lock.expires <= now or not self.node.is_primary:
                log.info("%s: halt lock %d expired", held.name, held.lock.id)
                self._drop(held)

    def _drop(self, held: _Held) -> None:
        if self.held.get(held.name) is held:
            del self.held[held.name]
            _fire(self.node, held.name, False, held.lock.id, held.holder)
        held.released.set()
        self._changed.set()
        self._changed = trio.Event()

    async def acquire(self, name: str, lock_id: int, holder: int) -> HaltLock:
        node = self.node
        if holder == node.node_id:
            raise HaltError("cannot remotely halt self", 400)
        if not node.is_primary:
            raise HaltError("acquire halt lock: node is not primary", 500)
        if self._nursery is None:
            raise HaltError("acquire halt lock: node is starting", 503)
        try:
            db = node.store.create_db(name)
        except StoreError as exc:
            raise HaltError(str(exc), 400) from exc
        deadline = trio.current_time() + HALT_ACQUIRE_TIMEOUT
        while True:
            held = self.held.get(name)
            if held is None:
                break
            if held.lock.id == lock_id and held.holder == holder and held.lock.expires:
                return held.lock  # a retried request: the same lock
            with trio.move_on_at(deadline):
                await held.released.wait()
            if trio.current_time() >= deadline and name in self.held:
                raise HaltError("acquire halt lock: context deadline exceeded", 500)
        held = _Held(name, HaltLock(lock_id, db.pos, 0.0), holder)
        self.held[name] = held  # reserve: concurrent acquires wait for it
        try:
            with trio.fail_after(max(0.0, deadline - trio.current_time())):
                await self._nursery.start(self._hold, db, held)
        except (trio.TooSlowError, LockTimeoutError, OSError, StoreError) as exc:
            self.held.pop(name, None)
            held.released.set()
            reason = "context deadline exceeded" if isinstance(exc, trio.TooSlowError) else str(exc)
            raise HaltError(f"acquire halt lock: {reason}", 500) from exc
        except BaseException:
            self.held.pop(name, None)
            held.released.set()
            raise
        held.lock = HaltLock(lock_id, db.pos, time.time() + HALT_LOCK_TTL)
        log.info("%s: halt lock %d granted to %016X at %s", name, lock_id, holder, db.pos)
        _fire(node, name, True, lock_id, holder)
        return held.lock

    async def _hold(self, db: Database, held: _Held, task_status: trio.TaskStatus[None]) -> None:
        try:
            async with write_lock(self.node, db, HALT_ACQUIRE_TIMEOUT) as wal:
                held.wal = wal
                await self.node.recover_locked(db, wal)
                task_status.started()
                await held.released.wait()
                # Writers on this node may have cached pages from before the remote transactions.
                await run_in_thread(self.node.fs.invalidate_db_sync, db.name)
        finally:
            held.done.set()

    async def release(self, name: str, lock_id: int, holder: int | None = None) -> None:
        """Release the lock if it is this one (idempotent)."""
        if holder is not None and holder == self.node.node_id:
            raise HaltError("cannot remotely halt self", 400)
        held = self.held.get(name)
        if held is None or held.lock.id != lock_id or not held.lock.expires:
            return
        self._drop(held)
        with trio.move_on_after(HALT_ACQUIRE_TIMEOUT):
            await held.done.wait()
        log.info("%s: halt lock %d released", name, lock_id)

    async def apply_tx(self, name: str, lock_id: int, holder: int, body: bytes) -> None:
        """Apply an LTX file sent by the holder of the HALT lock (``POST /tx``)."""
        node = self.node
        if holder == node.node_id:
            raise HaltError("cannot remotely halt self", 400)
        db = node.store.db(name)
        if db is None:
            raise HaltError("database not found", 404)
        held = self.held.get(name)
        if held is None or not held.lock.expires:
            raise HaltError("halt lock not held", 409)
        if held.lock.id != lock_id or held.holder != holder:
            raise HaltError(f"halt lock id mismatch: held by {held.lock.id}, got {lock_id}", 409)
        if held.lock.expires <= time.time():
            self._drop(held)
            raise HaltError("halt lock expired", 409)
        try:
            header = _peek(body)
        except LTXError as exc:
            raise HaltError(f"invalid ltx file: {exc}", 400) from exc
        if header.is_snapshot or header.min_txid != header.max_txid:
            raise HaltError("ltx file must hold exactly one transaction", 400)
        if header.min_txid != db.pos.txid + 1:
            raise HaltError(
                f"position mismatch on db {name!r}: txid {header.min_txid:016x} does not follow "
                f"{db.pos.txid:016x}",
                409,
            )
        if header.pre_apply_checksum != db.pos.post_apply_checksum:
            raise HaltError(
                f"pre-apply checksum mismatch on db {name!r}: {header.pre_apply_checksum:016x} <> "
                f"{db.pos.post_apply_checksum:016x}",
                409,
            )
        path = db.ltx_path(header.min_txid, header.max_txid)
        tmp = path + f".{secrets.token_hex(4)}.tmp"
        try:
            os.makedirs(db.ltx_dir, exist_ok=True)
            with open(tmp, "wb") as f:
                f.write(body)
                f.flush()
                os.fsync(f.fileno())
            with open(tmp, "rb") as f:
                Decoder(f).verify()
            os.rename(tmp, path)
            fsync_dir(db.ltx_dir)
        except (OSError, LTXError) as exc:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise HaltError(f"write ltx file: {exc}", 500) from exc
        # The locks are held by the lock's holder task: nobody else can be reading or writing.
        if held.wal:
            await run_in_thread(node.fs.invalidate_data_sync, name, FileKind.SHM)
        try:
            # On the primary this is a new commit of the cluster (metrics, backups): not an "apply".
            db.apply_ltx_file(path, kind="commit")
            if held.wal and header.commit > 0:
                rewrite_shm(db)
        except (StoreError, LTXError, OSError) as exc:
            # Pages may be half written: fatal, as a failed apply is on a replica (LiteFS: exit 99).
            log.error("fatal: apply ltx from halt lock holder: %s", exc)
            node.request_shutdown(99)
            raise HaltError(f"apply ltx: {exc}", 500) from exc
        await run_in_thread(node.fs.invalidate_db_sync, name)


def _peek(body: bytes):  # noqa: ANN202 - litefs.ltx.Header
    import io

    return peek_header(io.BytesIO(body))


# -- replica side ----------------------------------------------------------------------------------


@dataclass
class RemoteHalt:
    """A HALT lock this replica holds on the primary."""

    name: str
    lock: HaltLock
    primary_url: str
    broken: bool = False


class ReplicaHalts:
    """HALT locks this node holds on the primary, one per database at most (others wait)."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self._slots: dict[str, trio.Semaphore] = {}
        #: Commits being forwarded right now, per database (the stream waits for them).
        self.in_flight: dict[str, int] = {}
        #: Databases whose released lock is still being recovered (applies wait for them).
        self._recovering: dict[str, trio.Event] = {}
        self._nursery: trio.Nursery | None = None
        self._client: httpx.AsyncClient | None = None

    async def run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Service: drops locks past their expiry time; background releases run here."""
        async with AsyncExitStack() as stack:
            self._client = await stack.enter_async_context(httpx.AsyncClient(timeout=HALT_HTTP_TIMEOUT))
            nursery = await stack.enter_async_context(trio.open_nursery())
            self._nursery = nursery
            task_status.started()
            try:
                while True:
                    await trio.sleep(REPLICA_MONITOR_INTERVAL)
                    now = time.time()
                    for db in self.node.store.dbs():
                        halt = db.remote_halt
                        if isinstance(halt, RemoteHalt) and halt.lock.expires <= now:
                            log.info("%s: halt lock %d expired", db.name, halt.lock.id)
                            self.release_soon(db.name, halt.lock.id)
            finally:
                # Shutting down: free the primary's writers now rather than at expiry.
                with trio.CancelScope(shield=True), trio.move_on_after(2.0):
                    for db in self.node.store.dbs():
                        halt = db.remote_halt
                        if isinstance(halt, RemoteHalt):
                            db.remote_halt = None
                            db.forward_ltx = None
                            await self._delete(halt)

    def holds(self, name: str) -> RemoteHalt | None:
        db = self.node.store.db(name)
        halt = db.remote_halt if db is not None else None
        return halt if isinstance(halt, RemoteHalt) else None

    def _headers(self) -> dict[str, str]:
        return {"Litefs-Id": f"{self.node.node_id:016X}"}

    async def acquire(self, name: str, lock_id: int | None = None) -> HaltLock | None:
        """Take the primary's HALT lock for ``name``; None on the primary itself (a no-op)."""
        node = self.node
        if node.is_primary:
            return None
        if self._client is None:
            raise HaltError("halt: node is starting", 503)
        try:
            db = node.store.create_db(name)
        except StoreError as exc:
            raise HaltError(str(exc), 400) from exc
        existing = db.remote_halt
        if isinstance(existing, RemoteHalt) and lock_id is not None and existing.lock.id == lock_id:
            return existing.lock
        slot = self._slots.setdefault(name, trio.Semaphore(1))
        with trio.move_on_after(HALT_ACQUIRE_TIMEOUT) as cs:
            await slot.acquire()
        if cs.cancelled_caught:
            raise HaltError("acquire halt lock: already held on this node; timed out waiting", 500)
        try:
            return await self._acquire(db, lock_id if lock_id is not None else secrets.randbits(63))
        except BaseException:
            slot.release()
            raise

    async def _acquire(self, db: Database, lock_id: int) -> HaltLock:
        node = self.node
        await self.settled(db.name)
        info = node.replica.primary_info
        if info is None or not info.advertise_url:
            raise HaltError("acquire halt lock: no primary known", 503)
        url = info.advertise_url.rstrip("/")
        assert self._client is not None
        try:
            resp = await self._client.post(
                url + "/halt", params={"name": db.name, "id": str(lock_id)}, headers=self._headers()
            )
        except httpx.HTTPError as exc:
            raise HaltError(f"acquire remote halt lock: {exc}", 500) from exc
        if resp.status_code != 200:
            raise HaltError(f"acquire remote halt lock: {resp.status_code} {resp.text.strip()}", 500)
        lock = HaltLock.from_json(resp.json())
        halt = RemoteHalt(db.name, lock, url)
        # Wait until everything before the lock has been applied here.
        deadline = trio.current_time() + HALT_ACQUIRE_TIMEOUT
        while db.pos != lock.pos:
            if db.pos.txid > lock.pos.txid or (
                db.pos.txid == lock.pos.txid and db.pos.post_apply_checksum != lock.pos.post_apply_checksum
            ):
                await self._delete(halt)
                raise HaltError(
                    f"acquire halt lock: local position {db.pos} does not match lock {lock.pos}", 500
                )
            if trio.current_time() >= deadline:
                await self._delete(halt)
                raise HaltError(f"acquire halt lock: timed out catching up to {lock.pos} (at {db.pos})", 500)
            await trio.sleep(0.002)
        db.remote_halt = halt
        db.forward_ltx = lambda data: trio.from_thread.run(self._forward, db, halt, data)
        # The database's mode is 0666 while writable: let the kernel see it.
        await run_in_thread(node.fs.invalidate_attrs_sync, db.name, FileKind.DATABASE)
        log.info("%s: holding halt lock %d at %s", db.name, lock.id, lock.pos)
        _fire(node, db.name, True, lock.id, node.node_id)
        return lock

    async def _forward(self, db: Database, halt: RemoteHalt, data: bytes) -> None:
        """POST one LTX file to the primary's /tx (runs on the trio thread, for a worker thread)."""
        if db.remote_halt is not halt or halt.broken:
            raise HaltForwardError(f"{db.name}: halt lock released")
        assert self._client is not None
        try:
            resp = await self._client.post(
                halt.primary_url + "/tx",
                params={"name": db.name, "lockID": str(halt.lock.id)},
                headers={**self._headers(), "Content-Type": "application/octet-stream"},
                content=data,
            )
        except httpx.HTTPError as exc:
            self._break(db, halt)
            raise HaltForwardError(f"{db.name}: forward transaction to primary: {exc}") from exc
        if resp.status_code != 200:
            self._break(db, halt)
            raise HaltForwardError(
                f"{db.name}: primary refused transaction: {resp.status_code} {resp.text.strip()}"
            )

    def _break(self, db: Database, halt: RemoteHalt) -> None:
        """The primary refused a commit: writes stop now, the node recovers in the background."""
        log.warning("%s: halt lock %d lost; the transaction is rolled back", db.name, halt.lock.id)
        halt.broken = True
        self.release_soon(db.name, halt.lock.id)

    def _detach_held(self, name: str, lock_id: int | None) -> tuple[Database, RemoteHalt] | None:
        """Detach the lock held on ``name`` (only if its ID is ``lock_id``, when given)."""
        db = self.node.store.db(name)
        halt = db.remote_halt if db is not None else None
        if db is None or not isinstance(halt, RemoteHalt):
            return None
        if lock_id is not None and halt.lock.id != lock_id:
            return None
        self._detach(db, halt)
        return db, halt

    def release_soon(self, name: str, lock_id: int | None = None) -> None:
        """Make the database read-only at once; recover and tell the primary in the background."""
        held = self._detach_held(name, lock_id)
        if held is not None and self._nursery is not None:
            self._nursery.start_soon(self._finish_release, *held)

    async def release(self, name: str, lock_id: int | None = None) -> None:
        """Release the lock (idempotent; ``lock_id`` None: whatever is held)."""
        held = self._detach_held(name, lock_id)
        if held is not None:
            await self._finish_release(*held)

    async def settled(self, name: str) -> None:
        """Wait until no released HALT lock of ``name`` is being recovered."""
        while (event := self._recovering.get(name)) is not None:
            await event.wait()

    def _detach(self, db: Database, halt: RemoteHalt) -> None:
        if db.name not in self._recovering:
            self._recovering[db.name] = trio.Event()
        db.remote_halt = None
        db.forward_ltx = None
        slot = self._slots.get(db.name)
        if slot is not None:
            slot.release()
        _fire(self.node, db.name, False, halt.lock.id, self.node.node_id)

    async def _finish_release(self, db: Database, halt: RemoteHalt) -> None:
        node = self.node
        # Wait for a commit still being forwarded, then recover under SQLite's locks: roll back what
        # the primary refused, move WAL frames written under the lock into the database file.
        while self.in_flight.get(db.name):
            await trio.sleep(0.002)
        # The primary's writers may go on at once; what it sends next waits for the recovery here
        # (see settled()), so applies never mix with WAL frames still to be moved.
        await self._delete(halt)
        try:
            while True:
                try:
                    if db.file_exists(FileKind.JOURNAL) or db.wal.pages:
                        async with write_lock(node, db, HALT_ACQUIRE_TIMEOUT) as wal:
                            await node.recover_locked(db, wal)
                    else:
                        await run_in_thread(node.fs.invalidate_attrs_sync, db.name, FileKind.DATABASE)
                    break
                except LockTimeoutError as exc:
                    # A reader keeps a transaction open: replication waits rather than apply pages
                    # that WAL frames written under the lock would hide.
                    log.warning("%s: recovery after halt lock release: %s; retrying", db.name, exc)
                    await trio.sleep(1.0)
                except (OSError, StoreError) as exc:
                    log.error("%s: recovery after halt lock release failed: %s", db.name, exc)
                    break
        finally:
            event = self._recovering.pop(db.name, None)
            if event is not None:
                event.set()
        log.info("%s: released halt lock %d", db.name, halt.lock.id)

    async def _delete(self, halt: RemoteHalt) -> None:
        assert self._client is not None
        try:
            resp = await self._client.delete(
                halt.primary_url + "/halt",
                params={"name": halt.name, "id": str(halt.lock.id)},
                headers=self._headers(),
            )
            if resp.status_code != 200:
                log.warning("%s: release halt lock: %s %s", halt.name, resp.status_code, resp.text.strip())
        except httpx.HTTPError as exc:
            log.warning("%s: release halt lock: %s", halt.name, exc)


# -- HTTP --------------------------------------------------------------------------------------------


def _error(message: str, status: int) -> Response:
    return Response(message + "\n", status=status, content_type="text/plain; charset=utf-8")


def _json(body: Any, status: int = 200) -> Response:
    import json

    return Response(json.dumps(body) + "\n", status=status, content_type="application/json")


def _holder() -> int:
    raw = request.headers.get("Litefs-Id", "")
    try:
        return int(raw, 16)
    except ValueError:
        raise HaltError("invalid node id", 400) from None


def register_halt(app: QuartTrio, node: Node) -> None:
    """``POST/DELETE /halt`` and ``POST /tx`` (primary side)."""

    @app.route("/halt", methods=["POST", "DELETE"])
    async def halt() -> Response:
        try:
            name = request.args.get("name", "")
            if not name:
                raise HaltError("name required", 400)
            lock_id = parse_lock_id(request.args.get("id"))
            holder = _holder()
            if request.method == "POST":
                lock = await node.primary_halts.acquire(name, lock_id, holder)
                return _json(lock.to_json())
            if holder == node.node_id:
                raise HaltError("cannot remotely halt self", 400)
            if node.store.db(name) is None:
                raise HaltError("database not found", 404)
            await node.primary_halts.release(name, lock_id, holder)
            return Response("", status=200)
        except HaltError as exc:
            return _error(str(exc), exc.status)

    @app.route("/tx", methods=["POST"])
    async def tx() -> Response:
        try:
            name = request.args.get("name", "")
            if not name:
                raise HaltError("name required", 400)
            lock_id = parse_lock_id(request.args.get("lockID"))
            holder = _holder()
            body = await request.get_data(cache=False)
            assert isinstance(body, bytes)
            await node.primary_halts.apply_tx(name, lock_id, holder, body)
            return Response("", status=200)
        except HaltError as exc:
            return _error(str(exc), exc.status)


async def api_halt(node: Node, name: str, method: str, lock_id_text: str | None) -> Response:
    """``POST/DELETE /api/v1/dbs/<name>/halt`` on any node: take or release the HALT lock for the
    caller. On a replica the database stays writable until DELETE or expiry; on the primary it is a
    no-op that answers the current position."""
    try:
        lock_id = parse_lock_id(lock_id_text) if lock_id_text else None
        if method == "DELETE":
            if node.store.db(name) is None:
                raise HaltError(f"database not found: {name}", 404)
            if not node.is_primary:
                await node.replica_halts.release(name, lock_id)
            return _json({"released": True})
        if node.is_primary:
            db = node.store.db(name)
            if db is None:
                raise HaltError(f"database not found: {name}", 404)
            lock = HaltLock(lock_id or 0, db.pos, time.time() + HALT_LOCK_TTL)
            return _json(lock.to_json())
        got = await node.replica_halts.acquire(name, lock_id)
        if got is None:  # became primary meanwhile
            db = node.store.db(name)
            assert db is not None
            got = HaltLock(lock_id or 0, db.pos, time.time() + HALT_LOCK_TTL)
        return _json(got.to_json())
    except HaltError as exc:
        return _json({"error": str(exc)}, exc.status)


__all__ = [
    "HALT_ACQUIRE_TIMEOUT",
    "HALT_LOCK_TTL",
    "HALT_MONITOR_INTERVAL",
    "HaltError",
    "HaltLock",
    "PrimaryHalts",
    "RemoteHalt",
    "ReplicaHalts",
    "api_halt",
    "register_halt",
]
