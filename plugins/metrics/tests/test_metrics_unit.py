"""The metrics plugin against a stand-in node: exposition, names, feeds, per-node registries."""

from __future__ import annotations

import json
import math
import os
import re
import time
from types import SimpleNamespace
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

import litefs_metrics
from litefs.events import (
    LeaseRenewEvent,
    LTXReapEvent,
    LTXReceivedEvent,
    LTXSentEvent,
    PrimaryChangeEvent,
    ReplicaPosition,
    StreamEvent,
    TxEvent,
)
from litefs.plugins import load_plugins
from litefs_metrics import MetricsInputError, ltx_usage, metrics_for, registry_for, render

from .metrics_helpers import DASHBOARD, dashboard_queries

LITEFS_METRICS = {
    # name: (type, labels) from reference §10, with LiteFS's fixes (reap count is a counter).
    "litefs_db_count": ("gauge", set()),
    "litefs_is_primary": ("gauge", set()),
    "litefs_subscriber_count": ("gauge", set()),
    "litefs_lag_seconds": ("gauge", set()),
    "litefs_db_txid": ("gauge", {"db"}),
    "litefs_db_database_write_count": ("counter", {"db"}),
    "litefs_db_journal_write_count": ("counter", {"db"}),
    "litefs_db_wal_write_count": ("counter", {"db"}),
    "litefs_db_shm_write_count": ("counter", {"db"}),
    "litefs_db_commit_count": ("counter", {"db"}),
    "litefs_db_ltx_count": ("gauge", {"db"}),
    "litefs_db_ltx_bytes": ("gauge", {"db"}),
    "litefs_db_ltx_reap_count": ("counter", {"db"}),
    "litefs_db_lag_seconds": ("gauge", {"db"}),
    "litefs_http_stream_count": ("gauge", set()),
    "litefs_http_frame_send_count": ("counter", {"db", "type"}),
}


class FakeNode:
    """Just enough of NodeHandle for the collector."""

    def __init__(self, data_dir: str, *, primary: bool = True, enabled: bool = True, hostname: str = "n1"):
        section = SimpleNamespace(enabled=enabled)
        self.config = SimpleNamespace(
            data=SimpleNamespace(dir=data_dir),
            lease=SimpleNamespace(hostname=hostname),
            section=lambda path: section,
        )
        self.node_id = 0xABCDEF
        self.is_primary = primary
        self.txids: dict[str, int] = {"db": 3}
        self.lag = 0.0
        self.replicas: dict[str, list[ReplicaPosition]] = {}
        self.primary_txids: dict[str, int] = {}

    def database_names(self) -> list[str]:
        return sorted(self.txids)

    def database_txid(self, name: str) -> int:
        return self.txids.get(name, 0)

    def lag_seconds(self) -> float:
        return self.lag

    def primary_position(self, name: str) -> int | None:
        return self.txids.get(name, 0) if self.is_primary else self.primary_txids.get(name)

    def replica_positions(self, name: str) -> list[ReplicaPosition]:
        return self.replicas.get(name, [])


def scrape(node: Any) -> tuple[str, dict[str, Any]]:
    text = render(registry_for(node)).decode()
    return text, {f.name: f for f in text_string_to_metric_families(text)}


def value(families: dict[str, Any], family: str, sample: str | None = None, **labels: str) -> float:
    """One sample's value; the parser names counter samples ``<family>_total``."""
    fam = families[family]
    want = sample or (family + "_total" if fam.type == "counter" else family)
    found = [s.value for s in fam.samples if s.name == want and s.labels == labels]
    assert len(found) == 1, (family, labels, fam.samples)
    return found[0]


def tx(db: str, txid: int, *, local: bool = True, age: float = 0.0) -> TxEvent:
    ts = int((time.time() - age) * 1000)
    return TxEvent(db, txid, 0x1234, 4096, 2, ts, f"/nowhere/{txid}.ltx", local)


def test_every_litefs_metric_has_its_name_type_and_labels(tmp_path) -> None:
    node = FakeNode(str(tmp_path))
    text, families = scrape(node)
    for name, (typ, labels) in LITEFS_METRICS.items():
        assert name in families, name
        assert families[name].type == typ, name
        for sample in families[name].samples:
            assert set(sample.labels) == labels, (name, sample)
    # LiteFS (Go client) names counters without "_total": queries written for it must keep working.
    assert '\nlitefs_db_commit_count{db="db"} 0.0\n' in text
    assert "# TYPE litefs_db_ltx_reap_count counter\n" in text
    assert "_total" not in "".join(line for line in text.splitlines() if line.startswith("litefs_"))
    assert "_created" not in text
    # The process and platform collectors, as LiteFS's default registry has Go/process ones.
    assert "process_cpu_seconds" in families
    assert "python_info" in families
    assert value(families, "litefs_http_frame_send_count", db="db", type="ltx:snapshot") == 0


def test_commits_count_and_time_local_transactions_only(tmp_path) -> None:
    node = FakeNode(str(tmp_path))
    state = metrics_for(node)
    for txid in (1, 2, 3):
        state.record_tx(tx("db", txid))
    state.record_tx(tx("db", 4, local=False, age=2.0))
    _, families = scrape(node)
    assert value(families, "litefs_db_commit_count", db="db") == 3
    assert (
        value(families, "litefs_db_commit_latency_seconds", "litefs_db_commit_latency_seconds_count", db="db")
        == 3
    )
    assert 1.9 < value(families, "litefs_db_lag_seconds", db="db") < 10
    state.record_tx(tx("db", 5))
    _, families = scrape(node)
    assert value(families, "litefs_db_lag_seconds", db="db") == 0


def test_primary_and_replica_positions(tmp_path) -> None:
    primary = FakeNode(str(tmp_path / "p"), hostname="p")
    replica = FakeNode(str(tmp_path / "r"), primary=False, hostname="r1")
    replica.txids["db"] = 2
    _, fam = scrape(primary)
    assert value(fam, "litefs_db_position_primary", db="db") == 3
    assert fam["litefs_db_position_replica"].samples == []  # no replica connected yet
    primary.replicas = {"db": [ReplicaPosition("00000000000000AB", "r1", 2, 0x99, 1, 0.25)]}
    _, fam = scrape(primary)
    assert value(fam, "litefs_db_position_replica", db="db", replica="r1") == 2
    assert value(fam, "litefs_db_replica_lag_seconds", db="db", replica="r1") == 0.25
    # A replica that sent no hostname is named by its node ID.
    primary.replicas = {"db": [ReplicaPosition("00000000000000AB", "", 3, 0x99, 0, 0.0)]}
    _, fam = scrape(primary)
    assert value(fam, "litefs_db_position_replica", db="db", replica="00000000000000AB") == 3
    primary.replicas = {}
    _, fam = scrape(primary)
    assert fam["litefs_db_position_replica"].samples == []

    _, fam = scrape(replica)
    assert value(fam, "litefs_db_position_replica", db="db", replica="r1") == 2
    # Unknown until the stream says so: no sample, so `primary - replica` never goes negative.
    assert fam["litefs_db_position_primary"].samples == []
    replica.primary_txids["db"] = 3
    _, fam = scrape(replica)
    assert value(fam, "litefs_db_position_primary", db="db") == 3
    assert value(fam, "litefs_is_primary") == 0


def test_hooks_feed_their_metrics(tmp_path) -> None:
    node = FakeNode(str(tmp_path))
    for event in (
        LTXSentEvent("db", "00000000000000AB", "r1", 4, 4, 100, snapshot=False),
        LTXSentEvent("db", "00000000000000AB", "", 5, 5, 50, snapshot=False),
        LTXSentEvent("db", "00000000000000AB", "r1", 1, 5, 8192, snapshot=True),
    ):
        litefs_metrics.litefs_ltx_sent(node=node, event=event)
    litefs_metrics.litefs_ltx_received(node=node, event=LTXReceivedEvent("db", 1, 5, 4096, True, "p"))
    litefs_metrics.litefs_ltx_received(node=node, event=LTXReceivedEvent("db", 6, 6, 77, False, "p"))
    litefs_metrics.litefs_ltx_reaped(node=node, event=LTXReapEvent("db", 5))
    for reconnect in (False, True, True):
        litefs_metrics.litefs_stream_connected(node=node, event=StreamEvent("p", "http://p", reconnect))
    litefs_metrics.litefs_lease_renewed(node=node, event=LeaseRenewEvent(0.003, True))
    litefs_metrics.litefs_lease_renewed(node=node, event=LeaseRenewEvent(1.5, False, "timeout"))
    litefs_metrics.litefs_proxy_request(node=node, kind="forwarded", status=200, seconds=0.02)
    litefs_metrics.litefs_proxy_request(node=node, kind="read", status=504, seconds=5.0)
    litefs_metrics.litefs_proxy_request(node=node, kind="read", status=0, seconds=0.1)
    litefs_metrics.litefs_primary_changed(node=node, event=PrimaryChangeEvent(True, "n1"))
    _, fam = scrape(node)
    assert value(fam, "litefs_http_frame_send_count", db="db", type="ltx") == 2
    assert value(fam, "litefs_http_frame_send_bytes", db="db", type="ltx") == 150
    assert value(fam, "litefs_http_frame_send_count", db="db", type="ltx:snapshot") == 1
    assert value(fam, "litefs_db_snapshot_count", db="db", direction="sent") == 1
    assert value(fam, "litefs_db_snapshot_bytes", db="db", direction="sent") == 8192
    assert value(fam, "litefs_db_snapshot_count", db="db", direction="received") == 1
    assert value(fam, "litefs_db_snapshot_bytes", db="db", direction="received") == 4096
    assert value(fam, "litefs_db_ltx_reap_count", db="db") == 5
    assert value(fam, "litefs_stream_connect_count") == 3
    assert value(fam, "litefs_stream_reconnect_count") == 2
    assert value(fam, "litefs_lease_renew_failure_count") == 1
    assert value(fam, "litefs_lease_renew_seconds", "litefs_lease_renew_seconds_count") == 2
    assert value(fam, "litefs_lease_renew_seconds", "litefs_lease_renew_seconds_bucket", le="0.005") == 1
    assert value(fam, "litefs_proxy_request_count", kind="forwarded", code="200") == 1
    assert value(fam, "litefs_proxy_request_count", kind="read", code="504") == 1
    assert value(fam, "litefs_proxy_request_count", kind="read", code="none") == 1
    assert value(fam, "litefs_proxy_request_seconds", "litefs_proxy_request_seconds_count", kind="read") == 2
    assert value(fam, "litefs_primary_change_count") == 1


def test_commit_count_follows_litefs_kinds(tmp_path) -> None:
    node = FakeNode(str(tmp_path))
    for kind in ("commit", "commit", "drop", "import", "apply", "snapshot"):
        event = TxEvent("db", 1, 0x1234, 4096, 2, int(time.time() * 1000), "/nowhere/1.ltx", kind=kind)
        litefs_metrics.litefs_tx_committed(node=node, event=event)
    _, fam = scrape(node)
    # LiteFS counts journal/WAL commits and drops; never imports or LTX files from the primary.
    assert value(fam, "litefs_db_commit_count", db="db") == 3
    hist_count = "litefs_db_commit_latency_seconds_count"
    assert value(fam, "litefs_db_commit_latency_seconds", hist_count, db="db") == 3


def test_bad_feeds_raise_clear_errors(tmp_path) -> None:
    state = metrics_for(FakeNode(str(tmp_path)))
    with pytest.raises(MetricsInputError, match="frame type"):
        state.record_frame_sent("db", "wal")
    with pytest.raises(MetricsInputError, match="proxy request kind"):
        state.record_proxy_request("sideways", 0.1, 200)
    with pytest.raises(MetricsInputError, match=">= 0"):
        state.record_lease_renewal(-1.0, ok=True)
    with pytest.raises(MetricsInputError):
        state.record_lease_renewal(math.nan, ok=True)


def test_core_extensions_are_used_when_present(tmp_path) -> None:
    node = FakeNode(str(tmp_path))
    node.database_stats = lambda name: SimpleNamespace(
        database_writes=7, journal_writes=3, wal_writes=0, shm_writes=1
    )
    node.subscriber_count = 2
    node.stream_count = 1
    litefs_metrics.litefs_halt_changed(node=node, event=SimpleNamespace(db="db", held=True))
    _, fam = scrape(node)
    assert value(fam, "litefs_db_database_write_count", db="db") == 7
    assert value(fam, "litefs_db_journal_write_count", db="db") == 3
    assert value(fam, "litefs_db_shm_write_count", db="db") == 1
    assert value(fam, "litefs_halt_lock_active", db="db") == 1
    assert value(fam, "litefs_subscriber_count") == 2
    assert value(fam, "litefs_http_stream_count") == 1


def test_each_node_has_its_own_registry(tmp_path) -> None:
    a, b = FakeNode(str(tmp_path / "a")), FakeNode(str(tmp_path / "b"))
    metrics_for(a).record_tx(tx("db", 1))
    assert registry_for(a) is not registry_for(b)
    assert value(scrape(a)[1], "litefs_db_commit_count", db="db") == 1
    assert value(scrape(b)[1], "litefs_db_commit_count", db="db") == 0


def test_disabled_metrics_register_no_route_and_record_nothing(tmp_path) -> None:
    node = FakeNode(str(tmp_path), enabled=False)
    routes: list[str] = []
    litefs_metrics.litefs_http_routes(
        node=node, register=lambda rule, view, methods=("GET",): routes.append(rule)
    )
    litefs_metrics.litefs_tx_committed(node=node, event=tx("db", 1))
    assert routes == []
    assert metrics_for(node) is None and registry_for(node) is None
    enabled = FakeNode(str(tmp_path))
    litefs_metrics.litefs_http_routes(
        node=enabled, register=lambda rule, view, methods=("GET",): routes.append(rule)
    )
    assert routes == ["/metrics"]


def test_ltx_usage_counts_finished_files_only(tmp_path) -> None:
    assert ltx_usage(str(tmp_path / "missing")) == (0, 0)
    (tmp_path / "0000000000000001-0000000000000001.ltx").write_bytes(b"x" * 100)
    (tmp_path / "0000000000000002-0000000000000002.ltx").write_bytes(b"x" * 50)
    (tmp_path / "0000000000000003-0000000000000003.ltx.tmp").write_bytes(b"x" * 7)
    assert ltx_usage(str(tmp_path)) == (2, 150)
    node = FakeNode(str(tmp_path / "data"))
    ltx = tmp_path / "data" / "dbs" / "db" / "ltx"
    ltx.mkdir(parents=True)
    os.rename(
        tmp_path / "0000000000000001-0000000000000001.ltx", ltx / "0000000000000001-0000000000000001.ltx"
    )
    _, fam = scrape(node)
    assert value(fam, "litefs_db_ltx_count", db="db") == 1
    assert value(fam, "litefs_db_ltx_bytes", db="db") == 100


def test_plugin_is_found_through_its_entry_point() -> None:
    registry = load_plugins()
    assert ("metrics", litefs_metrics) in registry.pm.list_name_plugin()
    assert registry.sections["metrics"] is litefs_metrics.MetricsConfig


def test_dashboard_uses_only_exported_metrics(tmp_path) -> None:
    node = FakeNode(str(tmp_path))
    metrics_for(node).record_tx(tx("db", 1))
    _, families = scrape(node)
    samples = {s.name for f in families.values() for s in f.samples} | set(families)
    used = {m for q in dashboard_queries() for m in re.findall(r"\blitefs_[a-z_]+", q)}
    assert used, DASHBOARD
    assert used <= samples, used - samples
    dash = json.loads(DASHBOARD.read_text())
    titles = " ".join(p["title"].lower() for p in dash["panels"])
    for topic in ("lag", "txid", "commits per second", "primary changes"):
        assert topic in titles, topic
