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
``litefs_subscriber_count``        gauge                 ``NodeHandle.subscriber_count`` -- **0: core lacks it**
``litefs_lag_seconds``             gauge                 ``NodeHandle.lag_seconds()``
``litefs_db_txid``                 gauge    db           ``NodeHandle.database_txid()``
``litefs_db_database_write_count`` counter  db           ``NodeHandle.database_stats()`` -- **0: core lacks it**
``litefs_db_journal_write_count``  counter  db           same -- **0 until the core exposes it**
``litefs_db_wal_write_count``      counter  db           same -- **0 until the core exposes it**
``litefs_db_shm_write_count``      counter  db           same -- **0 until the core exposes it**
``litefs_db_commit_count``         counter  db           ``litefs_tx_committed`` events with ``local=True``
``litefs_db_ltx_count``            gauge    db           ``*.ltx`` files in ``<data.dir>/dbs/<db>/ltx/``
``litefs_db_ltx_bytes``            gauge    db           their total size (LiteFS reports only the newest)
``litefs_db_ltx_reap_count``       counter  db           retention (a counter; LiteFS makes it a gauge) --
                                                         **0: the core has no retention or hook yet**
``litefs_db_lag_seconds``          gauge    db           apply time - LTX timestamp of applied events; 0 on
                                                         local commits
``litefs_http_stream_count``       gauge                 ``NodeHandle.stream_count`` -- **0: core lacks it**
``litefs_http_frame_send_count``   counter  db, type     really counted (LiteFS never increments it) once
                                                         the stream reports frames -- **0 until then**
=================================  =======  ===========  ====================================================

Additions (issues 10 and 11):

=====================================  =========  ============  ==============================================
``litefs_db_position_primary``         gauge      db            primary: own TXID; replica: the primary's TXID
                                                                from the stream (**no sample until fed**)
``litefs_db_position_replica``         gauge      db, replica   replica: own TXID (replica = lease hostname);
                                                                primary: per connected replica (**fed later**)
``litefs_db_replica_lag_seconds``      gauge      db, replica   primary, per connected replica (**fed later**)
``litefs_halt_lock_active``            gauge      db            1 while a HALT lock is held on this node
                                                                (``litefs_halt_changed``)
``litefs_db_commit_latency_seconds``   histogram  db            local commits: hook time - LTX timestamp, i.e.
                                                                LTX encode + fsync + rename (ms resolution)
``litefs_db_snapshot_count``           counter    db, direction sent / received (**fed later**)
``litefs_db_snapshot_bytes``           counter    db, direction sent / received (**fed later**)
``litefs_primary_change_count``        counter                  ``litefs_primary_changed`` events
``litefs_stream_reconnect_count``      counter                  replica stream re-opens (**fed later**)
``litefs_lease_renew_seconds``         histogram                lease renewals (**fed later**)
``litefs_lease_renew_failure_count``   counter                  failed lease renewals (**fed later**)
``litefs_proxy_request_count``         counter    kind          read / write / forwarded (**fed later**)
``litefs_proxy_request_seconds``       histogram  kind          same (**fed later**)
=====================================  =========  ============  ==============================================

Known deviations until the core says more in ``TxEvent``: a ``litefs import`` is a local event, so
it counts in ``litefs_db_commit_count`` and the latency histogram (LiteFS counts only journal/WAL
commits and drops); and the core must mark LTX files applied from the primary ``local=False`` or they
will be counted as commits too.

"Fed later" metrics are exported now (with their label sets at 0 where the labels are known) so names,
alerts and dashboards can be set up; :func:`metrics_for` returns the node's
:class:`~litefs_metrics.state.NodeMetrics`, whose ``record_*`` / ``set_*`` methods are what the future
core hooks (stream frames, snapshots, reconnects, lease renewals, retention, proxy requests, replica
positions) will call.

Grafana: ``grafana/litefs-dashboard.json`` in the repository (import it, pick the Prometheus data
source). Panels: primary per instance (``litefs_is_primary``), primary changes
(``increase(litefs_primary_change_count[5m])``), TXID per node and database (``litefs_db_txid``),
commits/s (``rate(litefs_db_commit_count[1m])``), replication lag (``litefs_lag_seconds``,
``litefs_db_lag_seconds``, and ``litefs_db_position_primary - on(db) group_right
litefs_db_position_replica`` in TXIDs), commit latency p50/p99, LTX files and bytes.
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
