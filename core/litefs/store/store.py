"""The store: every database of the node, the node and cluster IDs, the role, and event fan-out."""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import secrets
import shutil
import time
from collections.abc import Callable
from typing import Any

import trio

from litefs.events import PrimaryChangeEvent, TxEvent, init_event_json
from litefs.store.database import CommitResult, Database, StoreError
from litefs.store.ltxwriter import LTXWriter
from litefs.store.names import is_valid_db_name
from litefs.store.syncproc import new_early_sync

log = logging.getLogger("litefs.store")

#: Events buffered per ``/events`` subscriber before it is disconnected (LiteFS: 1024).
SUBSCRIBER_BUFFER = 1024

CLUSTER_ID_PREFIX = "LFSC"


def new_cluster_id() -> str:
    """``LFSC`` + 16 uppercase hex digits (LiteFS §5.8)."""
    return CLUSTER_ID_PREFIX + secrets.token_hex(8).upper()


def is_valid_cluster_id(value: str) -> bool:
    rest = value[len(CLUSTER_ID_PREFIX) :]
    return (
        value.startswith(CLUSTER_ID_PREFIX) and len(rest) == 16 and all(c in "0123456789ABCDEF" for c in rest)
    )


class Subscriber:
    """One ``/events`` listener: a bounded channel of JSON-able dicts."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._send, self.receive = trio.open_memory_channel[dict[str, Any]](SUBSCRIBER_BUFFER)
        self.overflowed = False

    def push(self, item: dict[str, Any]) -> None:
        try:
            self._send.send_nowait(item)
        except trio.WouldBlock:
            # A reader that cannot keep up is dropped (LiteFS disconnects it too).
            self.overflowed = True
            self.close()
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            self.close()

    def close(self) -> None:
        self._store._subscribers.discard(self)
        self._send.close()


#: How long ``Store.open`` waits for the data directory's lock (a killed node's writer finishing).
LOCK_TIMEOUT = 10.0


class Store:
    """All databases under ``<data.dir>/dbs`` plus the node's identity and role."""

    def __init__(
        self,
        data_dir: str,
        *,
        node_id: int | None = None,
        compress: bool = True,
        strict_verify: bool = False,
        fsync: bool = True,
    ) -> None:
        self.data_dir = data_dir
        self.dbs_dir = os.path.join(data_dir, "dbs")
        self.node_id = node_id if node_id is not None else secrets.randbits(64)
        self.compress = compress
        self.strict_verify = strict_verify
        self.fsync = fsync
        self.cluster_id = ""
        self.is_primary = False
        self.primary_hostname = ""
        #: False once the primary's lease may have expired (set by the node's election); writes
        #: are refused from that moment, before any other node can take the lease.
        self.lease_valid: Callable[[], bool] = lambda: True
        self._dbs: dict[str, Database] = {}
        #: One child process per node writes the LTX files of WAL commits (litefs.store.ltxwriter).
        self.ltx_writer = LTXWriter()
        #: Starts SQLite's WAL fdatasyncs early (litefs.store.syncproc): a child process, or AIO.
        self.early_sync = new_early_sync()
        self._lock_fd = -1
        self._subscribers: set[Subscriber] = set()
        #: Called with every TxEvent after it is published (the node calls the plugin hook here).
        self.commit_listeners: list[Callable[[TxEvent], None]] = []

    # -- lifecycle -----------------------------------------------------------------------------

    def open(self, lock_timeout: float = LOCK_TIMEOUT) -> None:
        """Lock the data directory, read the cluster ID, and recover every database."""
        os.makedirs(self.dbs_dir, exist_ok=True)
        self._lock(lock_timeout)
        self.ltx_writer.start()  # before the mount exists (see LTXWriter.start)
        self.early_sync.start()  # likewise
        legacy = os.path.join(self.data_dir, "id")
        if os.path.exists(legacy):  # LiteFS issue #361: node IDs are no longer persisted
            os.unlink(legacy)
        self.cluster_id = self._read_cluster_id()
        for name in sorted(os.listdir(self.dbs_dir)):
            if not os.path.isdir(os.path.join(self.dbs_dir, name)):
                continue
            db = self._new_db(name)
            db.recover()
            self._dbs[name] = db

    def close(self) -> None:
        for db in self._dbs.values():
            db.close()
        self.ltx_writer.close()
        self.early_sync.close()
        for sub in list(self._subscribers):
            sub.close()
        if self._lock_fd >= 0:
            os.close(self._lock_fd)
            self._lock_fd = -1

    def _lock(self, timeout: float) -> None:
        """Hold ``<data.dir>/lock`` so no second node (nor a dead node's writer) shares the directory.

        The LTX writer process inherits the lock: after a SIGKILL of the node it keeps writing the
        files it was sent, and a restarted node must not run recovery until it has finished.
        """
        path = os.path.join(self.data_dir, "lock")
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EWOULDBLOCK, errno.EACCES):
                    os.close(fd)
                    raise StoreError(f"cannot lock the data directory ({path}): {exc.strerror}") from exc
                if time.monotonic() >= deadline:
                    os.close(fd)
                    raise StoreError(
                        f"data directory {self.data_dir} is in use by another litefs process "
                        f"(lock held on {path})"
                    ) from exc
                time.sleep(0.01)
        self._lock_fd = fd
        self.ltx_writer.inherit_fds = (fd,)

    def _read_cluster_id(self) -> str:
        path = os.path.join(self.data_dir, "clusterid")
        try:
            with open(path) as f:
                value = f.read().strip()
        except FileNotFoundError:
            return ""
        if not is_valid_cluster_id(value):
            raise StoreError(f"invalid cluster id {value!r} in {path}")
        return value

    def ensure_cluster_id(self) -> str:
        """Create and persist a cluster ID if this node has none (done by the first primary)."""
        if not self.cluster_id:
            self.set_cluster_id(new_cluster_id())
        return self.cluster_id

    def set_cluster_id(self, value: str) -> None:
        if not is_valid_cluster_id(value):
            raise StoreError(f"invalid cluster id {value!r}")
        path = os.path.join(self.data_dir, "clusterid")
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            f.write(value + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.rename(tmp, path)
        self.cluster_id = value

    # -- databases -----------------------------------------------------------------------------

    def _new_db(self, name: str) -> Database:
        db = Database(
            name,
            os.path.join(self.dbs_dir, name),
            compress=self.compress,
            node_id=self.node_id,
            on_commit=self._on_commit,
            strict_verify=self.strict_verify,
            fsync=self.fsync,
        )
        # Writable on the primary while its lease holds, and on a replica while it holds the
        # primary's HALT lock for this database (its commits are then forwarded to the primary).
        db._writable = lambda: (self.is_primary and self.lease_valid()) or db.remote_halt is not None
        db.ltx_writer = self.ltx_writer
        db.early_sync = self.early_sync
        return db

    def db(self, name: str) -> Database | None:
        return self._dbs.get(name)

    def dbs(self) -> list[Database]:
        """Databases sorted by name."""
        return [self._dbs[k] for k in sorted(self._dbs)]

    def database_names(self) -> list[str]:
        return sorted(self._dbs)

    def create_db(self, name: str) -> Database:
        """The database called ``name``, created (directory only) if it does not exist yet."""
        db = self._dbs.get(name)
        if db is not None:
            return db
        if not is_valid_db_name(name):
            raise StoreError(f"invalid database name {name!r}")
        db = self._new_db(name)
        os.makedirs(db.ltx_dir, exist_ok=True)
        self._dbs[name] = db
        return db

    def discard_db(self, name: str) -> None:
        """Forget a database that was created but never got content (a failed import)."""
        db = self._dbs.pop(name, None)
        if db is not None:
            db.close()
            shutil.rmtree(db.path, ignore_errors=True)

    def drop_db(self, name: str) -> None:
        """Delete a database (its LTX directory stays, holding the deletion LTX file)."""
        db = self._dbs.get(name)
        if db is None:
            raise StoreError(f"database not found: {name}")
        db.drop()

    # -- events --------------------------------------------------------------------------------

    def _on_commit(self, db: Database, result: CommitResult) -> None:
        event = TxEvent(
            db=db.name,
            txid=result.txid,
            post_apply_checksum=result.post_apply_checksum,
            page_size=result.page_size,
            commit=result.commit,
            timestamp_ms=result.timestamp_ms,
            ltx_path=result.ltx_path,
            kind=result.kind,
        )
        if self._subscribers:  # formatting the event costs more than the rest of a small commit
            self.publish(event.to_json())
        for listener in self.commit_listeners:
            try:
                listener(event)
            except Exception:  # a plugin must never break the commit path
                log.exception("commit listener failed")

    def set_primary(self, is_primary: bool, hostname: str) -> None:
        changed = (is_primary, hostname) != (self.is_primary, self.primary_hostname)
        self.is_primary = is_primary
        self.primary_hostname = hostname
        if changed:
            self.publish(PrimaryChangeEvent(is_primary, hostname).to_json())

    def publish(self, item: dict[str, Any]) -> None:
        for sub in list(self._subscribers):
            sub.push(item)

    def subscribe(self) -> Subscriber:
        """A new ``/events`` subscriber; its first item is the ``init`` event."""
        sub = Subscriber(self)
        self._subscribers.add(sub)
        sub.push(init_event_json(self.is_primary, self.primary_hostname))
        return sub

    # -- info ----------------------------------------------------------------------------------

    def debug_vars(self) -> dict[str, Any]:
        return {
            "isPrimary": self.is_primary,
            "nodeID": f"{self.node_id:016X}",
            "clusterID": self.cluster_id,
            "dbs": {db.name: db.info() for db in self.dbs()},
            "ltxWriter": {"pending": self.ltx_writer.pending_count, "written": self.ltx_writer.written},
        }

    def dumps(self) -> str:
        return json.dumps(self.debug_vars(), indent=2)
