"""The collector: turns one node's state into metric families at scrape time.

Values the node can be asked for (role, TXIDs, lag) are read through :class:`~litefs.hookspecs.NodeHandle`
on the trio thread (:meth:`LiteFSCollector.snapshot`); LTX files are counted on disk, which is exact and
does not depend on the core reporting every file it writes or deletes. Event-fed values come from
:class:`~litefs_metrics.state.NodeMetrics`.

NodeHandle members newer than the first core (``database_stats``, ``subscriber_count``, ``stream_count``,
``primary_position``, ``replica_positions``) are read with fallbacks, so a node
without one gives zeros or no samples instead of failing the scrape.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.metrics_core import Metric

from litefs_metrics.exposition import GoCounter
from litefs_metrics.state import FRAME_TYPES, PROXY_KINDS, SNAPSHOT_DIRECTIONS, NodeMetrics

WRITE_COUNTERS = (
    ("litefs_db_database_write_count", "database_writes", "Number of writes to the database file."),
    ("litefs_db_journal_write_count", "journal_writes", "Number of writes to the rollback journal."),
    ("litefs_db_wal_write_count", "wal_writes", "Number of writes to the WAL file."),
    ("litefs_db_shm_write_count", "shm_writes", "Number of writes to the shared-memory (SHM) file."),
)


@dataclass
class DBSnapshot:
    name: str
    txid: int
    ltx_dir: str
    writes: dict[str, int] = field(default_factory=dict)
    halt: bool = False
    primary_txid: int | None = None
    """The primary's TXID (own on the primary, last heard of on a replica; None: unknown)."""
    replicas: list[Any] = field(default_factory=list)
    """On the primary: :class:`litefs.events.ReplicaPosition` of each connected replica."""


@dataclass
class NodeSnapshot:
    """What one scrape reads from the node, taken on the node's trio thread."""

    is_primary: bool
    lag_seconds: float
    hostname: str
    subscriber_count: int
    stream_count: int
    dbs: list[DBSnapshot]


def ltx_usage(ltx_dir: str) -> tuple[int, int]:
    """Number and total size of the finished ``*.ltx`` files in ``ltx_dir`` ((0, 0) if it is missing).

    Temporary files (``*.ltx.tmp``) are not LTX files yet and are left out; a file deleted between the
    listing and its stat is skipped.
    """
    count = size = 0
    try:
        entries = os.scandir(ltx_dir)
    except (FileNotFoundError, NotADirectoryError):
        return 0, 0
    with entries:
        for entry in entries:
            if not entry.name.endswith(".ltx"):
                continue
            try:
                st = entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue
            count += 1
            size += st.st_size
    return count, size


def _int_attr(node: Any, name: str) -> int:
    value = getattr(node, name, 0)
    return int(value() if callable(value) else value)


class LiteFSCollector:
    """A prometheus-client collector for one node (register it in that node's own registry)."""

    def __init__(self, node: Any, state: NodeMetrics) -> None:
        self.node = node
        self.state = state
        self.pending: NodeSnapshot | None = None

    # -- reading the node ----------------------------------------------------------------------

    def snapshot(self) -> NodeSnapshot:
        """Read everything this scrape needs from the node (call on the node's trio thread)."""
        node = self.node
        data_dir = os.path.abspath(node.config.data.dir)
        stats = getattr(node, "database_stats", None)
        primary_position = getattr(node, "primary_position", None)
        replica_positions = getattr(node, "replica_positions", None)
        is_primary = bool(node.is_primary)
        dbs = []
        for name in node.database_names():
            db = DBSnapshot(name, node.database_txid(name), os.path.join(data_dir, "dbs", name, "ltx"))
            if stats is not None:
                st = stats(name)
                db.writes = {attr: int(getattr(st, attr, 0)) for _, attr, _ in WRITE_COUNTERS}
            if is_primary:
                db.primary_txid = db.txid
                if replica_positions is not None:
                    db.replicas = list(replica_positions(name))
            elif primary_position is not None:
                db.primary_txid = primary_position(name)
            db.halt = name in self.state.halts_active
            dbs.append(db)
        # The name the primary gives this node, so both ends label a replica alike.
        hostname = getattr(node, "replica_name", None) or node.config.lease.hostname or f"{node.node_id:016X}"
        return NodeSnapshot(
            is_primary=is_primary,
            lag_seconds=float(node.lag_seconds()),
            hostname=hostname,
            subscriber_count=_int_attr(node, "subscriber_count"),
            stream_count=_int_attr(node, "stream_count"),
            dbs=dbs,
        )

    # -- Collector protocol --------------------------------------------------------------------

    def describe(self) -> list[Metric]:
        # Names only: registering must not read the node (it may not be running yet).
        return []

    def collect(self) -> Iterator[Metric]:
        snap, self.pending = self.pending, None
        if snap is None:
            snap = self.snapshot()
        yield from self._node_families(snap)
        yield from self._db_families(snap)
        yield from self._extension_families(snap)

    def _node_families(self, snap: NodeSnapshot) -> Iterator[Metric]:
        yield GaugeMetricFamily("litefs_db_count", "Number of managed databases.", value=len(snap.dbs))
        yield GaugeMetricFamily(
            "litefs_is_primary", "1 if this node holds the primary lease, else 0.", value=int(snap.is_primary)
        )
        yield GaugeMetricFamily(
            "litefs_subscriber_count",
            "Number of change-set subscribers (replica streams and the backup loop).",
            value=snap.subscriber_count,
        )
        yield GaugeMetricFamily(
            "litefs_lag_seconds",
            "Replication lag in seconds (0 on the primary and before the first sync).",
            value=snap.lag_seconds,
        )
        yield GaugeMetricFamily(
            "litefs_http_stream_count", "Number of open /stream connections.", value=snap.stream_count
        )

    def _db_families(self, snap: NodeSnapshot) -> Iterator[Metric]:
        st = self.state
        txid = GaugeMetricFamily("litefs_db_txid", "Current transaction ID.", labels=["db"])
        ltx_count = GaugeMetricFamily("litefs_db_ltx_count", "Number of LTX files on disk.", labels=["db"])
        ltx_bytes = GaugeMetricFamily("litefs_db_ltx_bytes", "Bytes of LTX files on disk.", labels=["db"])
        lag = GaugeMetricFamily(
            "litefs_db_lag_seconds",
            "Apply time minus the timestamp of the last LTX file applied (0 after a local commit).",
            labels=["db"],
        )
        commits = GoCounter("litefs_db_commit_count", "Number of local commits.", ("db",))
        reaped = GoCounter("litefs_db_ltx_reap_count", "Number of LTX files deleted by retention.", ("db",))
        frames = GoCounter(
            "litefs_http_frame_send_count", "Number of frames sent to replicas.", ("db", "type")
        )
        frame_bytes = GoCounter(
            "litefs_http_frame_send_bytes", "Bytes of LTX files sent to replicas.", ("db", "type")
        )
        writes = {name: GoCounter(name, doc, ("db",)) for name, _, doc in WRITE_COUNTERS}
        with st.locked():
            for db in snap.dbs:
                commits.add((db.name,), st.commit_count.get(db.name, 0))
                reaped.add((db.name,), st.ltx_reap_count.get(db.name, 0))
                lag.add_metric([db.name], st.db_lag_seconds.get(db.name, 0.0))
                for ftype in FRAME_TYPES:
                    frames.add((db.name, ftype), st.frame_send_count.get((db.name, ftype), 0))
                    frame_bytes.add((db.name, ftype), st.frame_send_bytes.get((db.name, ftype), 0))
        for db in snap.dbs:
            txid.add_metric([db.name], db.txid)
            n, size = ltx_usage(db.ltx_dir)
            ltx_count.add_metric([db.name], n)
            ltx_bytes.add_metric([db.name], size)
            for name, attr, _ in WRITE_COUNTERS:
                writes[name].add((db.name,), db.writes.get(attr, 0))
        yield from (txid, *writes.values(), commits, ltx_count, ltx_bytes, reaped, lag, frames, frame_bytes)

    def _extension_families(self, snap: NodeSnapshot) -> Iterator[Metric]:
        st = self.state
        names = [db.name for db in snap.dbs]
        pos_primary = GaugeMetricFamily(
            "litefs_db_position_primary",
            "The primary's TXID (on the primary its own; on a replica as last announced by the primary).",
            labels=["db"],
        )
        pos_replica = GaugeMetricFamily(
            "litefs_db_position_replica",
            "A replica's TXID (on the primary one series per connected replica; on a replica its own).",
            labels=["db", "replica"],
        )
        replica_lag = GaugeMetricFamily(
            "litefs_db_replica_lag_seconds",
            "On the primary: how far each connected replica is behind, in seconds.",
            labels=["db", "replica"],
        )
        halt = GaugeMetricFamily("litefs_halt_lock_active", "1 while a HALT lock is held.", labels=["db"])
        latency = HistogramMetricFamily(
            "litefs_db_commit_latency_seconds",
            "Time from the start of a local commit's LTX file to the moment it is durable.",
            labels=["db"],
        )
        snap_count = GoCounter(
            "litefs_db_snapshot_count", "Snapshots sent to or received from the stream.", ("db", "direction")
        )
        snap_bytes = GoCounter(
            "litefs_db_snapshot_bytes", "Bytes of snapshots sent or received.", ("db", "direction")
        )
        primary_changes = GoCounter("litefs_primary_change_count", "Number of role or primary changes seen.")
        connects = GoCounter(
            "litefs_stream_connect_count", "Number of times this replica opened its stream to the primary."
        )
        reconnects = GoCounter(
            "litefs_stream_reconnect_count", "Number of times this replica re-opened its stream."
        )
        renew = HistogramMetricFamily("litefs_lease_renew_seconds", "Duration of lease renewal attempts.")
        renew_failures = GoCounter("litefs_lease_renew_failure_count", "Number of failed lease renewals.")
        proxy_requests = GoCounter(
            "litefs_proxy_request_count",
            "Requests handled by the HTTP proxy, by kind and status.",
            ("kind", "code"),
        )
        proxy_latency = HistogramMetricFamily(
            "litefs_proxy_request_seconds", "Duration of proxied requests, by kind.", labels=["kind"]
        )
        by_name = {db.name: db for db in snap.dbs}
        for db in snap.dbs:
            if db.primary_txid is not None:
                # Until the stream reports it the primary's position is unknown: no sample rather
                # than a 0 that would make `primary - replica` alerts go negative.
                pos_primary.add_metric([db.name], db.primary_txid)
            if not snap.is_primary:
                pos_replica.add_metric([db.name, snap.hostname], db.txid)
            for replica in db.replicas:
                pos_replica.add_metric([db.name, replica.name], replica.txid)
                replica_lag.add_metric([db.name, replica.name], replica.lag_seconds)
        with st.locked():
            for name in names:
                halt.add_metric([name], int(by_name[name].halt))
                for direction in SNAPSHOT_DIRECTIONS:
                    snap_count.add((name, direction), st.snapshot_count.get((name, direction), 0))
                    snap_bytes.add((name, direction), st.snapshot_bytes.get((name, direction), 0))
                hist = st.commit_latency.get(name)
                if hist is not None:
                    latency.add_metric([name], hist.cumulative(), hist.total)
            primary_changes.add((), st.primary_changes)
            connects.add((), st.stream_connects)
            reconnects.add((), st.stream_reconnects)
            renew.add_metric([], st.lease_renew.cumulative(), st.lease_renew.total)
            renew_failures.add((), st.lease_renew_failures)
            for kind, code in sorted(st.proxy_requests):
                proxy_requests.add((kind, code), st.proxy_requests[(kind, code)])
            for kind in PROXY_KINDS:
                hist = st.proxy_latency[kind]
                proxy_latency.add_metric([kind], hist.cumulative(), hist.total)
        yield from (pos_primary, pos_replica, replica_lag, halt, latency, snap_count, snap_bytes)
        yield from (
            primary_changes,
            connects,
            reconnects,
            renew,
            renew_failures,
            proxy_requests,
            proxy_latency,
        )
