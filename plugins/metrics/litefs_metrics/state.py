"""The numbers one node's metrics are made of, fed by hooks and read at scrape time.

Everything pushed by an event lives here (counters, histograms, the last-seen lag per database).
Values the node can be asked for at any moment (TXIDs, role, LTX files on disk, replica positions,
write counters) are read by the collector when Prometheus scrapes, never copied here.

Each ``record_*`` method is what one hook of :mod:`litefs.hookspecs` calls (see ``__init__``).
"""

from __future__ import annotations

import math
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from litefs.events import PrimaryChangeEvent, TxEvent

#: Commit latency buckets (seconds): an fsync'd LTX write takes 0.5-20 ms on local disks.
COMMIT_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
#: Lease renewal buckets (seconds): a Consul/etcd round trip on a LAN to a slow remote store.
LEASE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
#: Proxied request buckets (seconds).
PROXY_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

FRAME_TYPES = ("ltx", "ltx:snapshot")
PROXY_KINDS = ("read", "write", "forwarded", "passthrough", "health")
#: TxEvent kinds LiteFS counts in ``litefs_db_commit_count`` (journal/WAL commits and drops).
COMMIT_KINDS = frozenset({"commit", "drop"})
SNAPSHOT_DIRECTIONS = ("sent", "received")


class MetricsInputError(ValueError):
    """A ``record_*`` call got a value no metric can hold (negative duration, unknown label value)."""


@dataclass
class Histogram:
    """A cumulative Prometheus histogram with fixed upper bounds (``+Inf`` is implicit)."""

    bounds: Sequence[float]
    counts: list[int] = field(init=False)
    total: float = 0.0

    def __post_init__(self) -> None:
        self.counts = [0] * (len(self.bounds) + 1)

    def observe(self, value: float) -> None:
        if math.isnan(value) or value < 0:
            raise MetricsInputError(f"histogram observation must be a number >= 0, got {value!r}")
        for i, bound in enumerate(self.bounds):
            if value <= bound:
                self.counts[i] += 1
                break
        else:
            self.counts[-1] += 1
        self.total += value

    @property
    def count(self) -> int:
        return sum(self.counts)

    def cumulative(self) -> list[tuple[str, int]]:
        """``(le, cumulative count)`` pairs ending with ``+Inf``, as HistogramMetricFamily wants."""
        out: list[tuple[str, int]] = []
        running = 0
        for bound, n in zip([*self.bounds, math.inf], self.counts, strict=True):
            running += n
            out.append(("+Inf" if bound == math.inf else repr(float(bound)), running))
        return out


class NodeMetrics:
    """Counters and histograms of one node. Thread-safe: commits may be reported from FUSE workers."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._lock = threading.Lock()
        self._clock = clock
        # LiteFS §10, keyed by database name.
        self.commit_count: dict[str, int] = defaultdict(int)
        self.db_lag_seconds: dict[str, float] = {}
        self.ltx_reap_count: dict[str, int] = defaultdict(int)
        self.frame_send_count: dict[tuple[str, str], int] = defaultdict(int)
        # Extensions.
        self.frame_send_bytes: dict[tuple[str, str], int] = defaultdict(int)
        self.commit_latency: dict[str, Histogram] = {}
        self.primary_changes = 0
        self.stream_connects = 0
        self.stream_reconnects = 0
        self.snapshot_count: dict[tuple[str, str], int] = defaultdict(int)
        self.snapshot_bytes: dict[tuple[str, str], int] = defaultdict(int)
        self.lease_renew = Histogram(LEASE_BUCKETS)
        self.lease_renew_failures = 0
        #: (kind, status code) -> requests.
        self.proxy_requests: dict[tuple[str, str], int] = defaultdict(int)
        self.proxy_latency: dict[str, Histogram] = {kind: Histogram(PROXY_BUCKETS) for kind in PROXY_KINDS}
        #: Databases with a HALT lock held on this node (``litefs_halt_changed``).
        self.halts_active: set[str] = set()

    def record_tx(self, event: TxEvent) -> None:
        """A transaction became part of ``event.db`` (``litefs_tx_committed``).

        Journal/WAL commits and drops count in ``litefs_db_commit_count`` and the latency histogram,
        as in LiteFS (an import or an LTX file applied from the primary does not); an applied LTX
        file sets ``litefs_db_lag_seconds`` to apply time minus the LTX timestamp, as LiteFS does.
        """
        now = self._clock()
        # The LTX timestamp is taken (in whole ms) just before the file is encoded and fsync'd, and
        # the hook runs right after it is durable: the difference is LiteFS's share of the commit.
        elapsed = max(0.0, now - event.timestamp_ms / 1000.0)
        with self._lock:
            if event.local:
                self.db_lag_seconds[event.db] = 0.0
            else:
                self.db_lag_seconds[event.db] = elapsed
            if event.kind in COMMIT_KINDS:
                self.commit_count[event.db] += 1
                hist = self.commit_latency.get(event.db)
                if hist is None:
                    hist = self.commit_latency[event.db] = Histogram(COMMIT_BUCKETS)
                hist.observe(elapsed)

    def record_primary_change(self, event: PrimaryChangeEvent) -> None:
        """The role or the known primary changed (``litefs_primary_changed``)."""
        with self._lock:
            self.primary_changes += 1

    def record_halt(self, db: str, held: bool) -> None:
        """A HALT lock was taken or released on this node (``litefs_halt_changed``)."""
        with self._lock:
            if held:
                self.halts_active.add(db)
            else:
                self.halts_active.discard(db)

    def record_frame_sent(self, db: str, frame_type: str, nbytes: int = 0) -> None:
        """The primary sent one LTX frame of ``db`` to a replica (``ltx`` or ``ltx:snapshot``)."""
        if frame_type not in FRAME_TYPES:
            raise MetricsInputError(f"frame type must be one of {FRAME_TYPES}, got {frame_type!r}")
        with self._lock:
            self.frame_send_count[(db, frame_type)] += 1
            self.frame_send_bytes[(db, frame_type)] += nbytes
            if frame_type == "ltx:snapshot":
                self.snapshot_count[(db, "sent")] += 1
                self.snapshot_bytes[(db, "sent")] += nbytes

    def record_snapshot_received(self, db: str, nbytes: int) -> None:
        """A replica restored ``db`` from a snapshot of ``nbytes`` bytes."""
        with self._lock:
            self.snapshot_count[(db, "received")] += 1
            self.snapshot_bytes[(db, "received")] += nbytes

    def record_ltx_reaped(self, db: str, files: int) -> None:
        """Retention deleted ``files`` LTX files of ``db``."""
        with self._lock:
            self.ltx_reap_count[db] += files

    def record_stream_connect(self, reconnect: bool) -> None:
        """This replica opened its stream to the primary (``reconnect``: not the first time)."""
        with self._lock:
            self.stream_connects += 1
            if reconnect:
                self.stream_reconnects += 1

    def record_lease_renewal(self, seconds: float, ok: bool) -> None:
        """One lease renewal attempt took ``seconds``; ``ok`` False counts a failure."""
        with self._lock:
            self.lease_renew.observe(seconds)
            if not ok:
                self.lease_renew_failures += 1

    def record_proxy_request(self, kind: str, seconds: float, status: int = 0) -> None:
        """The proxy handled one request of ``kind`` (see :data:`PROXY_KINDS`) answered with
        ``status`` (0: the client went away before an answer)."""
        if kind not in PROXY_KINDS:
            raise MetricsInputError(f"proxy request kind must be one of {PROXY_KINDS}, got {kind!r}")
        code = str(status) if status else "none"
        with self._lock:
            self.proxy_latency[kind].observe(seconds)
            self.proxy_requests[(kind, code)] += 1

    # -- for the collector ---------------------------------------------------------------------

    def locked(self) -> threading.Lock:
        """Hold this while reading several fields so one scrape sees one consistent state."""
        return self._lock
