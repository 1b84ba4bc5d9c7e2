"""The plugin contract of litefs-py.

Every feature outside FUSE interception and LTX replication is a plugin: lease backends, the HTTP
proxy, the exec supervisor, metrics, backup uploaders. A plugin is a module (or object) with
functions marked ``@hookimpl`` whose names are the hooks below, published by its distribution in
the ``litefs`` entry-point group::

    # pyproject.toml of a plugin
    [project.entry-points.litefs]
    lease_foo = "litefs_lease_foo"

Built-in plugins are found exactly the same way, so anything they do a third-party plugin can do.

Plugins talk to the core only through this module and the small public objects it documents:
:class:`litefs.events.TxEvent`, :class:`litefs.events.PrimaryChangeEvent`, the other events of
:mod:`litefs.events` (stream, lease, retention, HALT), :class:`litefs.events.ReplicaPosition`,
:mod:`litefs.lease` (:class:`~litefs.lease.Leaser`, :class:`~litefs.lease.LeaseContext`, errors),
:class:`litefs.config.Config` and :class:`NodeHandle` below.

Hooks are synchronous, called on the node's trio thread: they must return quickly. Long-running
work is a *service*: an ``async def run(task_status)`` that the core starts in the node's nursery.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Protocol

import pluggy

if TYPE_CHECKING:
    import click

    from litefs.config import Config
    from litefs.events import (
        HaltEvent,
        LeaseRenewEvent,
        LTXReapEvent,
        LTXReceivedEvent,
        LTXSentEvent,
        PrimaryChangeEvent,
        ReplicaPosition,
        StreamEvent,
        TxEvent,
    )
    from litefs.lease import LeaseContext, Leaser, PrimaryInfo
    from litefs.ltx import Pos

PROJECT = "litefs"
ENTRY_POINT_GROUP = "litefs"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

#: ``async def run(task_status=trio.TASK_STATUS_IGNORED)``: call ``task_status.started()`` once the
#: service is up (the node waits for it), then run until cancelled.
ServiceRun = Callable[..., Awaitable[None]]
LeaseFactory = Callable[["LeaseContext"], "Leaser"]


class NodeHandle(Protocol):
    """What a plugin may see of a running node (``litefs mount``)."""

    config: Config
    node_id: int
    """Random 64-bit ID of this process (``%016X`` in HTTP headers)."""

    @property
    def is_primary(self) -> bool: ...

    @property
    def is_ready(self) -> bool:
        """True once the node is primary or has caught up with the primary."""
        ...

    @property
    def primary_hostname(self) -> str:
        """Hostname of the current primary ("" if unknown; this node's own when primary)."""
        ...

    @property
    def primary_info(self) -> PrimaryInfo | None:
        """The lease value of the current primary (hostname, advertise URL, extensions such as
        ``proxy-url``); this node's own when it is primary; ``None`` when no primary is known."""
        ...

    @property
    def mount_dir(self) -> str: ...

    @property
    def api_url(self) -> str:
        """Base URL of this node's HTTP API, e.g. ``http://127.0.0.1:20202``."""
        ...

    def database_names(self) -> list[str]: ...

    def database_txid(self, name: str) -> int:
        """Current TXID of a database (0 if it does not exist)."""
        ...

    def database_position(self, name: str) -> tuple[Pos, int] | None:
        """Current position of a database and the timestamp (ms) of its last transaction; ``None``
        if it does not exist or has no transaction. Unlike the newest file in ``ltx/``, this is
        always known: a replica keeps no LTX file of a snapshot it installed."""
        ...

    def lag_seconds(self) -> float:
        """Seconds since the last contact with the primary (0 on the primary or before sync)."""
        ...

    def primary_position(self, name: str) -> int | None:
        """The primary's TXID of a database: on the primary its own; on a replica the TXID the
        primary last told this node of (the newest LTX frame applied, or this node's own TXID after
        a READY or HEARTBEAT frame, which the primary sends only when it has nothing newer).
        ``None`` on a replica that has heard nothing of this database yet."""
        ...

    def replica_positions(self, name: str) -> list[ReplicaPosition]:
        """On the primary: each connected replica's position in database ``name`` (as last sent),
        sorted by node ID; empty on a replica."""
        ...

    @property
    def replica_name(self) -> str:
        """How the primary names this node in :meth:`replica_positions`: its ``lease.hostname``,
        or its node ID (``%016X``) when it has no hostname of its own (static lease replicas)."""
        ...

    @property
    def stream_count(self) -> int:
        """Open ``/stream`` connections served by this node (replicas following it)."""
        ...

    @property
    def subscriber_count(self) -> int:
        """Change subscribers: replica streams plus the backup uploader when one runs (LiteFS's
        ``litefs_subscriber_count``)."""
        ...

    def database_stats(self, name: str) -> Any:
        """Write counters of a database through the mount, an object with the int attributes
        ``database_writes``, ``journal_writes``, ``wal_writes`` and ``shm_writes`` (FUSE write
        requests to each file, on this node, since it started)."""
        ...

    @property
    def hook(self) -> Any:
        """The node's pluggy hook relay, for plugins that report to other plugins through hooks
        meant to be called by plugins (:func:`litefs_proxy_request`), e.g.
        ``node.hook.litefs_proxy_request(node=node, kind="read", status=200, seconds=0.01)``.
        Do not call the core's own event hooks with it."""
        ...

    async def wait_ready(self) -> None: ...

    def request_shutdown(self, exit_code: int = 0) -> None:
        """Ask the node to unmount and exit with ``exit_code`` (the first non-zero code wins)."""
        ...


# --- registration hooks (called once, when the plugin manager is built) ----------------------


@hookspec
def litefs_register_lease_types(register: Callable[..., None]) -> None:
    """Register lease backends.

    Call ``register(type_name, factory, config_type=None)`` once per backend. ``type_name`` is the
    value of ``lease.type`` that selects it; ``factory(context: LeaseContext) -> Leaser`` builds the
    backend for one node; ``config_type`` is a dataclass for the ``lease.<type_name>`` section of
    litefs.yml (validated strictly by the core, with file and line in errors).

    Use in plugins: a lease plugin implements only this hook.
    """


@hookspec
def litefs_register_config_sections(register: Callable[[str, Any], None]) -> None:
    """Declare the litefs.yml sections a plugin owns.

    Call ``register(path, type)`` where ``path`` is a dotted key (``"proxy"``, ``"exec"``,
    ``"backup"``) and ``type`` the dataclass (or type) the section converts to. Unknown keys in a
    registered section are errors, exactly as for core keys; a section nobody registered is an
    unknown key. Fields marked ``metadata={"secret": True}`` may be given as ``{"$env": VAR}`` or
    ``{"$file": path}`` and are masked by ``litefs config show``.
    """


@hookspec
def litefs_register_backup_types(register: Callable[..., None]) -> None:
    """Register backup uploaders, selected by ``backup.type``.

    Call ``register(type_name, factory)``; ``factory(node: NodeHandle, section)`` returns a service
    ``run`` coroutine function that uploads what :func:`litefs_tx_committed` reports.
    """


@hookspec
def litefs_register_commands(cli: click.Group) -> None:
    """Add subcommands to the ``litefs`` command line (``cli.add_command(...)``)."""


@hookspec
def litefs_lease_value_extras(config: Config) -> dict[str, Any] | None:
    """Add keys to the value this node stores in the lease when it is primary.

    LiteFS stores ``{"hostname", "advertise-url"}``; other nodes (LiteFS ones included) ignore keys
    they do not know, so plugins may publish more, e.g. the proxy's ``proxy-url``. Return a dict
    (merged over the results of other plugins) or ``None``.
    """


@hookspec
def litefs_plugin_enabled(config: Config) -> bool | None:
    """Say whether this plugin is switched on by ``config`` (for ``litefs plugins list``).

    Return ``None`` if the question does not apply. Called once per plugin, not aggregated.
    """


# --- node hooks (called while ``litefs mount`` runs) -----------------------------------------


@hookspec
def litefs_node_services(node: NodeHandle, register: Callable[[str, ServiceRun], None]) -> None:
    """Start long-running work inside the node.

    Call ``register(name, run)`` for each service this plugin wants for this node's config (check
    your section first: do nothing when disabled). The core starts each with
    ``await nursery.start(run)`` after FUSE and the HTTP API are up; an exception in a service
    stops the node cleanly and is reported with the service's name.
    """


@hookspec
def litefs_http_routes(node: NodeHandle, register: Callable[..., None]) -> None:
    """Add routes to the node's HTTP API.

    Call ``register(rule, view, methods=("GET",))`` where ``view`` is an ``async def`` Quart view
    function (``quart.request`` is available inside it). Core routes cannot be overridden.
    """


@hookspec
def litefs_tx_committed(node: NodeHandle, event: TxEvent) -> None:
    """A transaction became part of a database (local commit or applied LTX).

    ``event.kind`` says how: ``commit``, ``drop`` or ``import`` on this node (``event.local``), or
    ``apply`` / ``snapshot`` for LTX files from the primary.

    Called on the commit path: do no I/O here. Record the event and let a service pick it up.
    """


@hookspec
def litefs_primary_changed(node: NodeHandle, event: PrimaryChangeEvent) -> None:
    """The node became primary, stopped being primary, or learnt of another primary."""


@hookspec
def litefs_ltx_sent(node: NodeHandle, event: LTXSentEvent) -> None:
    """On the primary: one LTX frame (an incremental file or a snapshot) went to a replica.

    Called on the stream's path after the frame was handed to the HTTP server: return quickly.
    """


@hookspec
def litefs_ltx_received(node: NodeHandle, event: LTXReceivedEvent) -> None:
    """On a replica: one LTX frame from the primary was verified and applied (after the matching
    :func:`litefs_tx_committed` with kind ``apply`` or ``snapshot``)."""


@hookspec
def litefs_stream_connected(node: NodeHandle, event: StreamEvent) -> None:
    """On a replica: the stream to the primary is open (``event.reconnect`` after the first)."""


@hookspec
def litefs_lease_renewed(node: NodeHandle, event: LeaseRenewEvent) -> None:
    """On the primary: one attempt to renew the lease ended (``event.ok`` False when it failed).

    The election loop renews every TTL/2, at most every 5 s, for every lease backend.
    """


@hookspec
def litefs_ltx_reaped(node: NodeHandle, event: LTXReapEvent) -> None:
    """Retention removed ``event.files`` LTX files of ``event.db`` (not called when it removed none)."""


@hookspec
def litefs_proxy_request(node: NodeHandle, kind: str, status: int, seconds: float) -> None:
    """The HTTP proxy plugin handled one request. Called by a plugin, not by the core.

    ``kind`` is ``read`` (served by this node's app), ``write`` (a write served here, as primary),
    ``forwarded`` (a write sent on to the primary: forwarded or ``fly-replay``), ``passthrough`` or
    ``health``; ``status`` the HTTP status answered (0 when the client went away first);
    ``seconds`` the time from the request's arrival to the end of the answer. A proxy plugin calls
    it as ``node.hook.litefs_proxy_request(node=node, kind=..., status=..., seconds=...)``.
    """


@hookspec
def litefs_halt_changed(node: NodeHandle, event: HaltEvent) -> None:
    """A HALT lock was taken or released on this node (write forwarding, LiteFS §7).

    On the primary: a replica's lock was granted, released or expired (``event.holder`` is that
    replica's node ID). On a replica: this node took or gave up the primary's lock for
    ``event.db``. Called on the trio thread; do no I/O here.
    """


@hookspec
def litefs_node_ready(node: NodeHandle) -> None:
    """The node is primary, or has caught up with the primary, for the first time."""


@hookspec
def litefs_node_shutdown(node: NodeHandle) -> None:
    """The node is about to unmount and exit (services are cancelled right after)."""


__all__ = [
    "ENTRY_POINT_GROUP",
    "LeaseFactory",
    "NodeHandle",
    "PROJECT",
    "ServiceRun",
    "hookimpl",
    "hookspec",
]
