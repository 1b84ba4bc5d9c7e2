"""Prometheus metrics for litefs-py, with LiteFS's metric names, served at ``GET /metrics``.

Every node gets its own ``CollectorRegistry`` (never prometheus-client's global one, so several nodes
in one process or test never clash) holding the LiteFS collector plus the process, platform and GC
collectors -- the Python counterpart of the Go and process collectors LiteFS's default registry has.
``metrics: {enabled: false}`` in litefs.yml removes the route (``/metrics`` answers 404).

Counters keep LiteFS's exact sample names (``litefs_db_commit_count``, not ``..._total``), so queries
and dashboards written for LiteFS work unchanged; new counters follow the same ``_count`` style. No
``_created`` series are emitted.

Metrics of LiteFS v0.5.14 (reference §10) -- name, type, labels, and where the value comes from:

=================================  =======  ===========  ====================================================
``litefs_db_count``                gauge                 ``NodeHandle.database_names()`` at scrape time
``litefs_is_primary``              gauge                 ``NodeHandle.is_primary``
``litefs_subscriber_count``        gauge                 ``NodeHandle.subscriber_count`` (replica streams, plus
                                                         the backup uploader when one runs)
``litefs_lag_seconds``             gauge                 ``NodeHandle.lag_seconds()``
``litefs_db_txid``                 gauge    db           ``NodeHandle.database_txid()``
``litefs_db_database_write_count`` counter  db           ``NodeHandle.database_stats()``: FUSE write requests
``litefs_db_journal_write_count``  counter  db           same, to ``-journal``
``litefs_db_wal_write_count``      counter  db           same, to ``-wal``
``litefs_db_shm_write_count``      counter  db           same, to ``-shm``
``litefs_db_commit_count``         counter  db           ``litefs_tx_committed`` events of kind ``commit`` or
                                                         ``drop`` (not imports, not LTX applied on replicas)
``litefs_db_ltx_count``            gauge    db           ``*.ltx`` files in ``<data.dir>/dbs/<db>/ltx/``
``litefs_db_ltx_bytes``            gauge    db           their total size (LiteFS reports only the newest)
``litefs_db_ltx_reap_count``       counter  db           ``litefs_ltx_reaped`` (files removed by retention; a
                                                         counter, LiteFS makes it a gauge)
``litefs_db_lag_seconds``          gauge    db           apply time - LTX timestamp of applied events; 0 on
                                                         local commits
``litefs_http_stream_count``       gauge                 ``NodeHandle.stream_count`` (open ``/stream``)
``litefs_http_frame_send_count``   counter  db, type     ``litefs_ltx_sent``: really counted (LiteFS never
                                                         increments it); type ``ltx`` or ``ltx:snapshot``
=================================  =======  ===========  ====================================================

Additions (issues 10 and 11):

=====================================  =========  ============  ==============================================
``litefs_db_position_primary``         gauge      db            ``NodeHandle.primary_position()``: primary: own
                                                                TXID; replica: the primary's TXID last heard
                                                                of (no sample before that)
``litefs_db_position_replica``         gauge      db, replica   replica: own TXID (replica = its lease
                                                                hostname); primary: one per connected replica
                                                                (``NodeHandle.replica_positions()``, by
                                                                hostname, else node ID), as last sent
``litefs_db_replica_lag_seconds``      gauge      db, replica   primary, per connected replica: 0 in sync,
                                                                else age of the oldest commit it lacks
``litefs_halt_lock_active``            gauge      db            1 while a HALT lock is held on this node
                                                                (``litefs_halt_changed``)
``litefs_db_commit_latency_seconds``   histogram  db            commits counted above: hook time - LTX
                                                                timestamp, i.e. LTX encode + fsync + rename
                                                                (ms resolution)
``litefs_http_frame_send_bytes``       counter    db, type      ``litefs_ltx_sent``: LTX bytes sent
``litefs_db_snapshot_count``           counter    db, direction ``sent`` (``litefs_ltx_sent``) / ``received``
                                                                (``litefs_ltx_received``)
``litefs_db_snapshot_bytes``           counter    db, direction same, LTX bytes
``litefs_primary_change_count``        counter                  ``litefs_primary_changed`` events
``litefs_stream_connect_count``        counter                  ``litefs_stream_connected``: streams opened
``litefs_stream_reconnect_count``      counter                  the same, all but the first
``litefs_lease_renew_seconds``         histogram                ``litefs_lease_renewed``: renewal attempts
``litefs_lease_renew_failure_count``   counter                  the failed ones (errors, lease gone)
``litefs_proxy_request_count``         counter    kind, code    ``litefs_proxy_request`` (proxy plugin): kind
                                                                ``read`` / ``write`` / ``forwarded`` /
                                                                ``passthrough`` / ``health``, code the HTTP
                                                                status (``none``: client gone first)
``litefs_proxy_request_seconds``       histogram  kind          same
=====================================  =========  ============  ==============================================

Alert on replication falling behind, on the primary or on each replica::

    litefs_db_position_primary - on(instance, db) group_right litefs_db_position_replica > 100

Grafana: ``grafana/litefs-dashboard.json`` in the repository (import it, pick the Prometheus data
source). Panels: primary per instance (``litefs_is_primary``), primary changes
(``increase(litefs_primary_change_count[5m])``), TXID per node and database (``litefs_db_txid``),
commits/s (``rate(litefs_db_commit_count[1m])``), replication lag (``litefs_lag_seconds``,
``litefs_db_lag_seconds``, and ``litefs_db_position_primary - on(db) group_right
litefs_db_position_replica`` in TXIDs), per-replica lag seen by the primary, commit latency p50/p99,
LTX files and bytes, frames and snapshots sent, stream reconnects, lease renewals, proxy requests.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import trio
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from quart import Response

from litefs.hookspecs import hookimpl
from litefs_metrics.collector import LiteFSCollector, ltx_usage
from litefs_metrics.exposition import render
from litefs_metrics.state import MetricsInputError, NodeMetrics

METRICS_ROUTE = "/metrics"


@dataclass
class MetricsConfig:
    """``metrics`` in litefs.yml (an extension: LiteFS always serves /metrics)."""

    enabled: bool = True


@dataclass
class _NodeBundle:
    state: NodeMetrics
    registry: CollectorRegistry
    collector: LiteFSCollector
    scrape_lock: trio.Lock = field(default_factory=trio.Lock)


_bundles: weakref.WeakKeyDictionary[Any, _NodeBundle] = weakref.WeakKeyDictionary()


def _enabled(node: Any) -> bool:
    return bool(node.config.section("metrics").enabled)


def build_registry(node: Any, state: NodeMetrics) -> tuple[CollectorRegistry, LiteFSCollector]:
    """A fresh registry for ``node``: the LiteFS collector plus process, platform and GC collectors."""
    registry = CollectorRegistry(auto_describe=False)
    collector = LiteFSCollector(node, state)
    registry.register(collector)  # type: ignore[arg-type]
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    return registry, collector


def _bundle(node: Any) -> _NodeBundle | None:
    """This node's metrics, created on first use; None when ``metrics.enabled`` is false."""
    bundle = _bundles.get(node)
    if bundle is None:
        if not _enabled(node):
            return None
        state = NodeMetrics()
        registry, collector = build_registry(node, state)
        bundle = _bundles[node] = _NodeBundle(state, registry, collector)
    return bundle


def metrics_for(node: Any) -> NodeMetrics | None:
    """The :class:`NodeMetrics` of a running node (None when metrics are disabled for it)."""
    bundle = _bundle(node)
    return bundle.state if bundle is not None else None


def registry_for(node: Any) -> CollectorRegistry | None:
    """The node's own ``CollectorRegistry`` (None when metrics are disabled for it)."""
    bundle = _bundle(node)
    return bundle.registry if bundle is not None else None


def make_view(bundle: _NodeBundle) -> Callable[[], Any]:
    """The ``GET /metrics`` view of one node."""

    async def metrics_view() -> Response:
        async with bundle.scrape_lock:
            # Node state is read on the trio thread; LTX directory scans and formatting run in a
            # worker so a big ltx/ directory never stalls FUSE requests served by the same loop.
            bundle.collector.pending = bundle.collector.snapshot()
            body = await trio.to_thread.run_sync(render, bundle.registry)
        return Response(body, status=200, content_type=CONTENT_TYPE_LATEST)

    return metrics_view


# --- hooks --------------------------------------------------------------------------------------


@hookimpl
def litefs_register_config_sections(register: Callable[[str, object], None]) -> None:
    register("metrics", MetricsConfig)


@hookimpl
def litefs_plugin_enabled(config) -> bool:  # noqa: ANN001
    return bool(config.section("metrics").enabled)


@hookimpl
def litefs_http_routes(node: Any, register: Callable[..., None]) -> None:
    bundle = _bundle(node)
    if bundle is not None:
        register(METRICS_ROUTE, make_view(bundle), methods=("GET",))


@hookimpl
def litefs_tx_committed(node: Any, event: Any) -> None:
    bundle = _bundle(node)
    if bundle is not None:
        bundle.state.record_tx(event)


@hookimpl
def litefs_halt_changed(node: Any, event: Any) -> None:
    bundle = _bundle(node)
    if bundle is not None:
        bundle.state.record_halt(event.db, event.held)


@hookimpl
def litefs_primary_changed(node: Any, event: Any) -> None:
    bundle = _bundle(node)
    if bundle is not None:
        bundle.state.record_primary_change(event)


@hookimpl
def litefs_ltx_sent(node: Any, event: Any) -> None:
    bundle = _bundle(node)
    if bundle is not None:
        bundle.state.record_frame_sent(event.db, "ltx:snapshot" if event.snapshot else "ltx", event.nbytes)


@hookimpl
def litefs_ltx_received(node: Any, event: Any) -> None:
    bundle = _bundle(node)
    if bundle is not None and event.snapshot:
        bundle.state.record_snapshot_received(event.db, event.nbytes)


@hookimpl
def litefs_stream_connected(node: Any, event: Any) -> None:
    bundle = _bundle(node)
    if bundle is not None:
        bundle.state.record_stream_connect(event.reconnect)


@hookimpl
def litefs_lease_renewed(node: Any, event: Any) -> None:
    bundle = _bundle(node)
    if bundle is not None:
        bundle.state.record_lease_renewal(event.seconds, event.ok)


@hookimpl
def litefs_ltx_reaped(node: Any, event: Any) -> None:
    bundle = _bundle(node)
    if bundle is not None:
        bundle.state.record_ltx_reaped(event.db, event.files)


@hookimpl
def litefs_proxy_request(node: Any, kind: str, status: int, seconds: float) -> None:
    bundle = _bundle(node)
    if bundle is not None:
        bundle.state.record_proxy_request(kind, seconds, status)


__all__ = [
    "METRICS_ROUTE",
    "MetricsConfig",
    "MetricsInputError",
    "NodeMetrics",
    "build_registry",
    "ltx_usage",
    "metrics_for",
    "registry_for",
    "render",
]
