"""One ``litefs mount`` process: store + FUSE + HTTP API + lease + plugin services in one trio nursery.

Startup order (LiteFS ``MountCommand.Run``): open the store (recovery of every database) -> serve HTTP
(so the port is known) -> start the election loop and wait (up to 10 s) for the role -> mount FUSE ->
first catch-up with the primary -> auto-promotion (``lease.promote``) -> plugin services (proxy,
exec) -> ready. SIGINT/SIGTERM unmount cleanly and exit 0; a commit that cannot be made durable stops
the node with exit code 99 (LiteFS does the same). Shutdown stops the plugin services first, while
the mount still answers, then the HTTP server, then FUSE.

After every role change the election loop runs :meth:`Node.recover_databases` (LiteFS
``Store.Recover``).
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
from litefs.events import LeaseRenewEvent, LTXReapEvent, PrimaryChangeEvent, ReplicaPosition, TxEvent
from litefs.fuse import session as fuse_session
from litefs.fuse.locks import LockTimeoutError, sqlite_lock
from litefs.fuse.mount import MAX_TASKS, mount_options, prepare_mountpoint
from litefs.fuse.ops import LiteFSOperations
from litefs.http.app import create_app, make_route_registrar
from litefs.http.server import port_of, serve_http
from litefs.lease import LeaseError, NoPrimaryError, PrimaryInfo, WatchableLeaser
from litefs.ltx import Pos
from litefs.memtrim import release_free_memory
from litefs.replication.halt import PrimaryHalts, ReplicaHalts
from litefs.replication.handoff import auto_promote
from litefs.replication.mountlock import mount_lock, run_in_thread
from litefs.replication.replica import ReplicaClient
from litefs.replication.walindex import is_wal_database, rewrite_shm, wal_apply_lock
from litefs.sqlite.errors import SQLiteFormatError
from litefs.store import Database, FileKind, RecoveryError, Store, StoreError
from litefs.store.database import RoleRecovery, WriteStats
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
#: How long shutdown waits for plugin services (the app) to stop before unmounting anyway.
SERVICE_STOP_TIMEOUT = 45.0
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
        #: Set (then replaced) whenever the lease backend's watch reports a change.
        self.lease_changed = trio.Event()
        self._mounted_event = trio.Event()
        self._api_url = ""
        self._ready = trio.Event()
        self._shutdown = trio.Event()
        self._http_shutdown = trio.Event()
        self._mounted = False
        self.plugin_rules: list[str] = []
        self._backup_running = False
        self.store.commit_listeners.append(self._tx_committed)
        self.replica = ReplicaClient(self)
        #: HALT locks: held here for replicas (primary side), held on the primary (replica side).
        self.primary_halts = PrimaryHalts(self)
        self.replica_halts = ReplicaHalts(self)
        self.fs.halts = self.replica_halts
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

    def database_position(self, name: str) -> tuple[Pos, int] | None:
        db = self.store.db(name)
        if db is None or not db.pos.txid:
            return None
        return db.pos, db.timestamp_ms

    def lag_seconds(self) -> float:
        """Seconds since the primary's last heartbeat or transaction (0 on the primary)."""
        if self.is_primary or not self.replica.primary_timestamp_ms:
            return 0.0
        return self.replica.lag_ms() / 1000

    def primary_position(self, name: str) -> int | None:
        """The primary's TXID of ``name``: this node's own on the primary, else as last heard of."""
        if self.is_primary:
            return self.database_txid(name)
        return self.replica.primary_txid(name)

    def replica_positions(self, name: str) -> list[ReplicaPosition]:
        """On the primary: what each connected replica has of database ``name`` (as last sent)."""
        db = self.store.db(name)
        primary = db.pos if db is not None else Pos(0, 0)
        now_ms = int(time.time() * 1000)
        out = []
        for _, stream in sorted(self.streams.items()):
            pos = stream.position(name, primary, now_ms)
            if pos is not None:
                out.append(pos)
        return out

    @property
    def replica_name(self) -> str:
        """How the primary names this node among its replicas: its own ``lease.hostname``, or its
        node ID when that hostname is the primary's (the static lease: every node names the primary)."""
        hostname = self.leaser.hostname if self.leaser is not None else self.config.lease.hostname
        primary = self.primary_info
        if not hostname or (not self.is_primary and primary is not None and primary.hostname == hostname):
            return f"{self.node_id:016X}"
        return hostname

    @property
    def stream_count(self) -> int:
        return len(self.streams)

    @property
    def subscriber_count(self) -> int:
        return len(self.streams) + int(self._backup_running)

    def database_stats(self, name: str) -> WriteStats:
        db = self.store.db(name)
        return db.write_stats if db is not None else WriteStats()

    @property
    def hook(self) -> Any:
        return self.registry.hook

    async def wait_ready(self) -> None:
        await self._ready.wait()

    # -- hooks ---------------------------------------------------------------------------------

    def _tx_committed(self, event: TxEvent) -> None:
        self.registry.hook.litefs_tx_committed(node=self, event=event)

    def notify(self, hook_name: str, event: Any) -> None:
        """Call the event hook ``hook_name`` with ``node`` and ``event``; a failing plugin is logged,
        never allowed to break replication, the election or retention."""
        try:
            getattr(self.registry.hook, hook_name)(node=self, event=event)
        except Exception:
            log.exception("plugin hook %s failed", hook_name)

    def _lease_renewed(self, seconds: float, ok: bool, error: str) -> None:
        self.notify("litefs_lease_renewed", LeaseRenewEvent(seconds, ok, error))

    def _ltx_reaped(self, db: str, files: int) -> None:
        self.notify("litefs_ltx_reaped", LTXReapEvent(db, files))

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

    # -- recovery after a role change (LiteFS Store.Recover) -------------------------------------

    async def recover_databases(self, why: str) -> None:
        """Bring every database's files back to its position after a role change.

        Rolls back a hot journal left by a writer whose transaction was cut off by the role change,
        checkpoints the committed WAL frames into the database file and empties the WAL (frames
        past the last commit are dropped), then checks the content against the position. Runs
        while this node does not accept writes, with SQLite's locks taken through the mount (open
        readers never see a half state); the file work runs in a worker thread.
        """
        if not self._mounted:
            return  # the store was recovered when it opened and nothing has been written since
        for db in self.store.dbs():
            if not db.exists():
                continue
            try:
                await self._recover_database(db)
            except (LockTimeoutError, OSError, StoreError, SQLiteFormatError) as exc:
                log.error("%s: recovery after %s failed: %s", db.name, why, exc)

    async def _recover_database(self, db: Database) -> None:
        mount_path = os.path.join(self.mount_dir, db.name)
        # WAL readers hold SHARED for as long as they are open: the WAL locks stand in for
        # EXCLUSIVE, and their WAL index must be rewritten (as for an apply on a replica).
        wal = db.file_exists(FileKind.SHM) and is_wal_database(db.db_path)
        async with wal_apply_lock(mount_path) if wal else mount_lock(mount_path, exclusive=True):
            result = await self.recover_locked(db, wal)
        if result.actions:
            log.info("%s: recovered after role change: %s", db.name, "; ".join(result.actions))

    async def recover_locked(self, db: Database, wal: bool) -> RoleRecovery:
        """LiteFS's ``Recover`` of one database, with SQLite's locks already held through the mount
        (the WAL locks when ``wal``, else EXCLUSIVE): roll back a hot journal, checkpoint committed
        WAL frames and empty the WAL, rewrite the readers' WAL index, drop stale kernel caches.

        Used after role changes and when a HALT lock is taken or released.
        """
        if wal:
            await run_in_thread(self.fs.invalidate_data_sync, db.name, FileKind.SHM)
        result = await trio.to_thread.run_sync(db.recover_files, dict(db.wal.pages))
        db.finish_recovery(result)
        if wal:
            rewrite_shm(db)
        if wal or result.actions:
            await run_in_thread(self.fs.invalidate_db_sync, db.name)
        return result

    # -- database operations that need the mount -----------------------------------------------

    async def import_database(self, name: str, src_path: str) -> None:
        """Replace (or create) a database from a SQLite file, under SQLite's EXCLUSIVE lock.

        Encoding and applying read and write the whole file: that runs in a worker thread so the
        node keeps answering FUSE and HTTP meanwhile; listeners hear of the commit on this thread.
        """
        try:
            await self._import_database(name, src_path)
        finally:
            await trio.to_thread.run_sync(release_free_memory)

    async def _import_database(self, name: str, src_path: str) -> None:
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
        except BaseException as exc:
            # A clean shutdown may cancel the loop before it saw terminate() (a worker waiting for
            # pyfuse3's read lock, e.g. behind an extra HALT worker): not an error then.
            if not (self._shutdown.is_set() and _only_cancelled(exc)):
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

    async def _watch_primary(self, leaser: WatchableLeaser) -> None:
        """Follow the backend's lease watch: wake the election and the replica's lease check."""
        last: list[PrimaryInfo | None] = [None]

        def changed(info: PrimaryInfo | None) -> None:
            if info == last[0]:
                return
            last[0] = info
            log.info("lease watch: primary is now %s", info.hostname if info is not None else "nobody")
            self.lease_changed.set()
            self.lease_changed = trio.Event()
            if self.election is not None:
                self.election.wake()

        try:
            await leaser.watch_primary(changed)
        except Exception:  # the lease is still polled: a broken watch only costs latency
            log.exception("lease watch failed; polling the lease only")

    async def _run_services(
        self,
        services: list[tuple[str, Callable[..., Any]]],
        scope: trio.CancelScope,
        done: trio.Event,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Start every plugin service in one nursery that shutdown can cancel on its own."""
        try:
            with scope:
                async with trio.open_nursery() as services_nursery:
                    for name, run in services:
                        await services_nursery.start(self._run_service, name, run)
                    task_status.started()
                    await trio.sleep_forever()
        finally:
            done.set()

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
        token = trio.lowlevel.current_trio_token()
        # A background LTX write that fails is as fatal as a failed commit (exit 99); the WAL keeps
        # the transaction and startup recovery writes its LTX file.
        self.store.ltx_writer.on_error = lambda exc: token.run_sync_soon(self._on_fatal, exc)
        async with trio.open_nursery() as nursery:
            self.nursery = nursery
            nursery.start_soon(self._signals)
            nursery.start_soon(run_retention, self.store, self.config, self._ltx_reaped)
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
                on_renew=self._lease_renewed,
            )
            self.store.lease_valid = self.election.writable
            self.replica.standalone = False
            if isinstance(self.leaser, WatchableLeaser):
                nursery.start_soon(self._watch_primary, self.leaser)
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
            fuse_session.install(spin_when=lambda: self.store.is_primary)
            self._mounted = True
            self._mounted_event.set()
            nursery.start_soon(self._fuse_main)
            await nursery.start(self.fs.workers.run)
            await nursery.start(self.primary_halts.run)
            await nursery.start(self.replica_halts.run)
            if self.config.skip_sync:  # LiteFS: start services and exec without waiting for sync
                nursery.start_soon(self.replica.run)
            else:
                await nursery.start(self.replica.run)  # replicas: returns after the first catch-up
            log.info("mounted at %s", self.mount_dir)
            if self.config.skip_sync:
                nursery.start_soon(auto_promote, self)
            else:
                # LiteFS order: a node that promotes itself does so before the proxy and the app
                # start, so the app never starts as a replica on a node about to become primary.
                await auto_promote(self)

            services: list[tuple[str, Callable[..., Any]]] = []
            self.registry.hook.litefs_node_services(
                node=self, register=lambda name, run: services.append((name, run))
            )
            backup = self._backup_service()
            if backup is not None:
                services.append(backup)
                self._backup_running = True
            services_scope = trio.CancelScope()
            services_done = trio.Event()
            await nursery.start(self._run_services, services, services_scope, services_done)

            self._ready.set()
            self.registry.hook.litefs_node_ready(node=self)
            log.info("node ready (primary=%s)", self.is_primary)

            await self._shutdown.wait()
            try:
                self.registry.hook.litefs_node_shutdown(node=self)
            except Exception:
                log.exception("node shutdown hook failed")
            # Services (the app) stop while the mount still answers: an app that flushes its
            # database on SIGTERM must not hang on a FUSE loop that is gone.
            services_scope.cancel()
            with trio.move_on_after(SERVICE_STOP_TIMEOUT):
                await services_done.wait()
            self._http_shutdown.set()
            fuse_session.terminate()
            nursery.cancel_scope.cancel()  # the election releases the lease as it is cancelled

    def close(self) -> None:
        if self._mounted:
            pyfuse3.close(unmount=True)
            self._mounted = False
        self.store.close()


def _only_cancelled(exc: BaseException) -> bool:
    """True for trio.Cancelled, or a (nursery) exception group holding nothing else."""
    if isinstance(exc, trio.Cancelled):
        return True
    if isinstance(exc, BaseExceptionGroup):
        return all(_only_cancelled(e) for e in exc.exceptions)
    return False


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

    async def recover(self, why: str) -> None:
        await self.node.recover_databases(why)

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
            with trio.move_on_after(LEASE_WATCH_INTERVAL):
                await self.node.lease_changed.wait()  # a backend with a watch wakes this at once
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
        log.error("node failed", exc_info=exc)
        return node.exit_code or EXIT_ERROR
    finally:
        node.close()
    return node.exit_code
