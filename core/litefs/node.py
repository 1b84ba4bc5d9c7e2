"""One ``litefs mount`` process: store + FUSE + HTTP API + lease + plugin services in one trio nursery.

Startup order (LiteFS ``MountCommand.Run``): open the store (recovery of every database) -> serve HTTP
(so the port is known) -> create the leaser and take the lease (static lease: primary when it is the
candidate) -> mount FUSE -> start plugin services -> ready. SIGINT/SIGTERM unmount cleanly and exit 0;
a commit that cannot be made durable stops the node with exit code 99 (LiteFS does the same).

The election loop (lease renewal, demotion, replicas following a primary) comes later; it will run
as one more task of the nursery and call :meth:`Node.set_role`.
"""

from __future__ import annotations

import functools
import logging
import os
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pyfuse3
import trio

from litefs.election import Election, ElectionSettings
from litefs.events import PrimaryChangeEvent, TxEvent
from litefs.fuse.locks import sqlite_lock
from litefs.fuse.mount import MAX_TASKS, mount_options, prepare_mountpoint
from litefs.fuse.ops import LiteFSOperations
from litefs.http.app import create_app, make_route_registrar
from litefs.http.server import port_of, serve_http
from litefs.lease import LeaseError, NoPrimaryError, PrimaryInfo
from litefs.replication.handoff import auto_promote
from litefs.replication.replica import ReplicaClient
from litefs.store import RecoveryError, Store, StoreError
from litefs.store.retention import run_retention
from litefs.store.store import new_cluster_id

if TYPE_CHECKING:
    from litefs.config import Config
    from litefs.lease import Leaser
    from litefs.plugins import PluginRegistry

log = logging.getLogger("litefs")

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_FATAL = 99

#: How long startup waits for the election to decide this node's role before mounting anyway.
ROLE_WAIT_TIMEOUT = 10.0
#: Export copies made in a worker thread before the copy is made on the trio thread (WAL races).
EXPORT_ATTEMPTS = 3
#: How often a replica checks that the lease still names the primary it follows.
LEASE_WATCH_INTERVAL = 1.0


class Node:
    """A running node; satisfies :class:`litefs.hookspecs.NodeHandle` for plugins."""

    def __init__(self, config: Config, registry: PluginRegistry) -> None:
        self.config = config
        self.registry = registry
        self.store = Store(
            config.data.dir,
            compress=config.data.compress,
            strict_verify=config.strict_verify,
        )
        self.node_id = self.store.node_id
        self.fs = LiteFSOperations(self.store, on_fatal=self._on_fatal)
        self.exit_code = EXIT_OK
        self.leaser: Leaser | None = None
        self.election: Election | None = None
        #: Live /stream connections on the primary, by replica node ID (``%016X``).
        self.streams: dict[str, Any] = {}
        #: The node's task nursery while it runs (for short helper tasks such as snapshot watchdogs).
        self.nursery: trio.Nursery | None = None
        self._role_known = trio.Event()
        self._mounted_event = trio.Event()
        self._api_url = ""
        self._ready = trio.Event()
        self._shutdown = trio.Event()
        self._http_shutdown = trio.Event()
        self._mounted = False
        self.plugin_rules: list[str] = []
        self.store.commit_listeners.append(self._tx_committed)
        self.replica = ReplicaClient(self)
        # `.lag` on a replica: milliseconds since the primary's last heartbeat or applied LTX.
        self.fs._lag_content = self.replica.lag_text  # type: ignore[method-assign]

    # -- NodeHandle ----------------------------------------------------------------------------

    @property
    def is_primary(self) -> bool:
        return self.store.is_primary

    @property
    def is_ready(self) -> bool:
        return self._ready.is_set()

    @property
    def primary_hostname(self) -> str:
        return self.store.primary_hostname

    @property
    def primary_info(self) -> PrimaryInfo | None:
        """The current primary's lease value (this node's own when primary; None when unknown)."""
        if self.is_primary and self.leaser is not None:
            return PrimaryInfo(self.leaser.hostname, self.leaser.advertise_url)
        return self.replica.primary_info

    @property
    def mount_dir(self) -> str:
        return os.path.abspath(self.config.fuse.dir)

    @property
    def api_url(self) -> str:
        return self._api_url

    def database_names(self) -> list[str]:
        return self.store.database_names()

    def database_txid(self, name: str) -> int:
        db = self.store.db(name)
        return db.pos.txid if db is not None else 0

    def lag_seconds(self) -> float:
        """Seconds since the primary's last heartbeat or transaction (0 on the primary)."""
        if self.is_primary or not self.replica.primary_timestamp_ms:
            return 0.0
        return self.replica.lag_ms() / 1000

    def replica_positions(self, name: str) -> list[dict[str, Any]]:
        """On the primary: what each connected replica has of database ``name`` (as last sent)."""
        db = self.store.db(name)
        primary_txid = db.pos.txid if db is not None else 0
        out = []
        for node_id, stream in sorted(self.streams.items()):
            pos = stream.positions.get(name)
            if pos is None:
                continue
            out.append(
                {
                    "nodeID": node_id,
                    "hostname": stream.hostname,
                    "txid": f"{pos.txid:016x}",
                    "checksum": f"{pos.post_apply_checksum:016x}",
                    "lag": max(0, primary_txid - pos.txid),
                }
            )
        return out

    async def wait_ready(self) -> None:
        await self._ready.wait()

    # -- hooks ---------------------------------------------------------------------------------

    def _tx_committed(self, event: TxEvent) -> None:
        self.registry.hook.litefs_tx_committed(node=self, event=event)

    def _on_fatal(self, exc: BaseException) -> None:
        if self.config.exit_on_error:
            log.error("fatal: %s", exc)
            self.request_shutdown(EXIT_FATAL)

    def request_shutdown(self, exit_code: int = EXIT_OK) -> None:
        if exit_code and not self.exit_code:
            self.exit_code = exit_code
        self._shutdown.set()

    def set_role(self, is_primary: bool, hostname: str) -> None:
        """Record who is primary and tell plugins and ``/events`` subscribers when it changed."""
        changed = (is_primary, hostname) != (self.store.is_primary, self.store.primary_hostname)
        self.store.set_primary(is_primary, hostname)
        if changed:
            self.registry.hook.litefs_primary_changed(
                node=self, event=PrimaryChangeEvent(is_primary, hostname)
            )

    # -- database operations that need the mount -----------------------------------------------

    async def import_database(self, name: str, src_path: str) -> None:
        """Replace (or create) a database from a SQLite file, under SQLite's EXCLUSIVE lock.

        Encoding and applying read and write the whole file: that runs in a worker thread so the
        node keeps answering FUSE and HTTP meanwhile; listeners hear of the commit on this thread.
        """
        db = self.store.db(name)
        existing = db is not None and db.exists() and db.page_count > 0
        if not existing:
            created = db is None
            db = self.store.create_db(name)
            try:
                result = await trio.to_thread.run_sync(
                    functools.partial(db.import_database, src_path, notify=False)
                )
            except BaseException:
                if created:
                    self.store.discard_db(name)
                raise
        else:
            assert db is not None
            async with sqlite_lock(os.path.join(self.mount_dir, name), exclusive=True):
                result = await trio.to_thread.run_sync(
                    functools.partial(db.import_database, src_path, notify=False)
                )
                await trio.to_thread.run_sync(self.fs.invalidate_db_sync, name)
            db.notify_commit(result)
            return
        await trio.to_thread.run_sync(self.fs.invalidate_db_sync, name)
        db.notify_commit(result)

    async def export_database(self, name: str) -> str:
        """Copy the committed database to a temp file under SQLite's SHARED lock; return its path.

        The copy runs in a worker thread. SHARED keeps rollback-mode writers out, but not WAL-mode
        ones: if a commit or a WAL restart happened during the copy it is redone, and after a few
        such races the copy is made on this thread, where no commit can interleave.
        """
        db = self.store.db(name)
        if db is None:
            raise StoreError(f"database not found: {name}")
        fd, tmp = tempfile.mkstemp(prefix=".export-", suffix=".tmp", dir=self.config.data.dir)

        def copy(state: tuple[Any, ...]) -> None:
            os.ftruncate(fd, 0)
            os.lseek(fd, 0, os.SEEK_SET)
            for chunk in db.read_database(state):
                view = memoryview(chunk)
                while view:
                    view = view[os.write(fd, view) :]

        try:
            async with sqlite_lock(os.path.join(self.mount_dir, name), exclusive=False):
                for _ in range(EXPORT_ATTEMPTS):
                    state = db.export_state()
                    await trio.to_thread.run_sync(copy, state)
                    if (db.pos, db.wal.generation) == state[:2]:
                        break
                else:
                    copy(db.export_state())
        except BaseException:
            os.unlink(tmp)
            raise
        finally:
            os.close(fd)
        return tmp

    # -- running -------------------------------------------------------------------------------

    async def _signals(self) -> None:
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for signum in signals:
                log.info("received %s, shutting down", signal.Signals(signum).name)
                self.request_shutdown(EXIT_OK)

    async def _fuse_main(self) -> None:
        try:
            await pyfuse3.main(min_tasks=1, max_tasks=MAX_TASKS)
        except BaseException:
            self.request_shutdown(EXIT_ERROR)
            raise

    async def _run_service(
        self,
        name: str,
        run: Callable[..., Any],
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        try:
            await run(task_status=task_status)
        except Exception as exc:
            log.error("service %s failed: %s", name, exc, exc_info=exc)
            self.request_shutdown(EXIT_ERROR)

    def _backup_service(self) -> tuple[str, Callable[..., Any]] | None:
        """The uploader selected by ``backup.type`` (a plugin's registered backup type), if any."""
        if "backup" not in self.registry.sections:
            return None
        section = self.config.section("backup")
        backup_type = self.registry.backup_type(getattr(section, "type", ""))
        if backup_type is None:
            return None
        return f"backup-{backup_type.name}", backup_type.factory(self, section)

    async def run(self) -> None:
        """Run the node until a signal or a fatal error; the caller has opened the store."""
        app = create_app(self)
        self.registry.hook.litefs_http_routes(
            node=self, register=make_route_registrar(app, self.plugin_rules)
        )
        async with trio.open_nursery() as nursery:
            self.nursery = nursery
            nursery.start_soon(self._signals)
            nursery.start_soon(run_retention, self.store, self.config)
            self._api_url = await nursery.start(serve_http, app, self.config.http.addr, self._http_shutdown)
            log.info("http server listening on %s", self._api_url)
            self.leaser = self.registry.create_leaser(
                self.config, node_id=self.node_id, http_port=port_of(self._api_url)
            )
            lease_config = self.config.lease
            self.election = Election(
                self.leaser,
                _ElectionHost(self),
                ElectionSettings(
                    candidate=lease_config.candidate,
                    reconnect_delay=lease_config.reconnect_delay,
                    demote_delay=lease_config.demote_delay,
                ),
            )
            self.store.lease_valid = self.election.writable
            self.replica.standalone = False
            nursery.start_soon(self.election.run)
            # Mount with the role known, so the root's mode (0777 primary, 0555 replica) that the
            # kernel caches is right from the start.
            with trio.move_on_after(ROLE_WAIT_TIMEOUT):
                await self._role_known.wait()

            pyfuse3.init(
                self.fs,
                self.mount_dir,
                mount_options(allow_other=self.config.fuse.allow_other, debug=self.config.fuse.debug),
            )
            self._mounted = True
            self._mounted_event.set()
            nursery.start_soon(self._fuse_main)
            if self.config.skip_sync:  # LiteFS: start services and exec without waiting for sync
                nursery.start_soon(self.replica.run)
            else:
                await nursery.start(self.replica.run)  # replicas: returns after the first catch-up
            log.info("mounted at %s", self.mount_dir)

            services: list[tuple[str, Callable[..., Any]]] = []
            self.registry.hook.litefs_node_services(
                node=self, register=lambda name, run: services.append((name, run))
            )
            backup = self._backup_service()
            if backup is not None:
                services.append(backup)
            for name, run in services:
                await nursery.start(self._run_service, name, run)

            self._ready.set()
            self.registry.hook.litefs_node_ready(node=self)
            nursery.start_soon(auto_promote, self)
            log.info("node ready (primary=%s)", self.is_primary)

            await self._shutdown.wait()
            try:
                self.registry.hook.litefs_node_shutdown(node=self)
            except Exception:
                log.exception("node shutdown hook failed")
            self._http_shutdown.set()
            pyfuse3.terminate()
            nursery.cancel_scope.cancel()  # the election releases the lease as it is cancelled

    def close(self) -> None:
        if self._mounted:
            pyfuse3.close(unmount=True)
            self._mounted = False
        self.store.close()


class _ElectionHost:
    """Connects the election loop (:mod:`litefs.election`) to the node."""

    def __init__(self, node: Node) -> None:
        self.node = node

    def local_cluster_id(self) -> str:
        return self.node.store.cluster_id

    def adopt_cluster_id(self, cluster_id: str) -> None:
        if cluster_id != self.node.store.cluster_id:
            self.node.store.set_cluster_id(cluster_id)

    def new_cluster_id(self) -> str:
        return new_cluster_id()

    def on_primary(self, info: PrimaryInfo) -> None:
        node = self.node
        node.replica.primary_info = None
        node.set_role(True, info.hostname)
        log.info("primary lease acquired, advertising as %s", info.advertise_url)
        node._role_known.set()
        node.replica._mark_ready()

    def on_not_primary(self, info: PrimaryInfo | None) -> None:
        node = self.node
        node.replica.primary_info = info
        node.set_role(False, info.hostname if info is not None else "")
        node._role_known.set()

    async def follow(self, info: PrimaryInfo) -> str | None:
        await self.node._mounted_event.wait()  # applying takes SQLite's locks through the mount
        result: str | None = None
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._watch_lease, info, nursery.cancel_scope)
            result = await self.node.replica.follow_until_error(info)
            nursery.cancel_scope.cancel()
        return result

    async def _watch_lease(self, info: PrimaryInfo, scope: trio.CancelScope) -> None:
        """Stop following when the lease names another primary or none: a frozen or partitioned
        primary sends nothing, not even an end of stream, so the lease is what tells."""
        leaser = self.node.leaser
        assert leaser is not None
        while True:
            await trio.sleep(LEASE_WATCH_INTERVAL)
            try:
                current = await leaser.primary_info()
            except NoPrimaryError:
                current = None
            except LeaseError as exc:
                log.debug("lease lookup while following failed: %s", exc)
                continue
            if current is None or current.advertise_url != info.advertise_url:
                log.info("lease no longer names %s as primary; reconnecting", info.hostname)
                scope.cancel()
                return


def run_mount(config: Config, registry: PluginRegistry, *, skip_unmount: bool = False) -> int:
    """Run a node until SIGINT/SIGTERM or a fatal error; return the process exit code.

    0 on a clean shutdown, 1 on a startup or runtime error (printed as ``ERROR: ...``), 99 when a
    commit could not be made durable.
    """
    started = time.monotonic()
    node = Node(config, registry)
    try:
        prepare_mountpoint(node.mount_dir, skip_unmount=skip_unmount)
        os.makedirs(config.data.dir, exist_ok=True)
        node.store.open()
    except (RecoveryError, StoreError, OSError) as exc:
        print(f"ERROR: cannot open store: {exc}", file=sys.stderr)
        node.store.close()
        return EXIT_ERROR
    log.info("store opened in %.3fs (%d databases)", time.monotonic() - started, len(node.store.dbs()))
    try:
        trio.run(node.run)
    except BaseException as exc:  # noqa: BLE001 - report anything, exit non-zero
        if isinstance(exc, KeyboardInterrupt):
            return node.exit_code
        print(f"ERROR: {exc}", file=sys.stderr)
        log.debug("node failed", exc_info=exc)
        return node.exit_code or EXIT_ERROR
    finally:
        node.close()
    return node.exit_code
