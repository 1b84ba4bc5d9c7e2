"""Metrics of a three-node cluster (static lease) under a write load: one primary, replicas in sync,
frames and snapshots counted on both ends, positions matching the ``-pos`` files, retention counted,
replicas reconnecting after a restart of the primary."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from litefs.testing import LiteFSNode

from .metrics_helpers import ltx_on_disk, pos_txid, sample, scrape, write_rows

pytestmark = [pytest.mark.fuse, pytest.mark.cluster]

#: Short retention everywhere, so the reap counter moves and a replica away for a while needs a snapshot.
RETENTION = {"retention": "1s", "retention-monitor-interval": "200ms"}


def wait_until(cond: Callable[[], Any], timeout: float = 20.0, what: str = "condition") -> Any:
    """Poll ``cond`` until it is truthy; OSError counts as "not yet" (a database created on the
    primary reaches a replica's mount a moment later: its ``-pos`` file is missing until then)."""
    deadline = time.monotonic() + timeout
    last: OSError | None = None
    while True:
        try:
            result = cond()
        except OSError as exc:
            last, result = exc, None
        if result:
            return result
        assert time.monotonic() < deadline, f"{what} not reached after {timeout}s (last error: {last!r})"
        time.sleep(0.05)


def in_sync(primary: LiteFSNode, replicas: list[LiteFSNode], db: str = "db") -> None:
    want = pos_txid(primary, db)
    wait_until(lambda: all(pos_txid(n, db) == want for n in replicas), what="replicas in sync")


def snapshots(fams: dict[str, Any], direction: str) -> tuple[float, float]:
    return (
        sample(fams, "litefs_db_snapshot_count", db="db", direction=direction),
        sample(fams, "litefs_db_snapshot_bytes", db="db", direction=direction),
    )


def replica_label(node: LiteFSNode) -> str:
    """The ``replica`` label of a static-lease replica: its node ID (its lease.hostname is the
    primary's), as the primary and the replica itself both report it."""
    return node.get("/info").headers["Litefs-Id"]


def positions_settled(primary: LiteFSNode, replicas: list[LiteFSNode]) -> dict[str, dict[str, Any]] | None:
    """Scrapes of every node once each shows ``position_primary - position_replica == 0`` for every
    replica it lists, with the TXIDs of the ``-pos`` files (None while not yet so)."""
    scrapes = {n.name: scrape(n) for n in [primary, *replicas]}
    txid = pos_txid(primary, "db")
    for node in [primary, *replicas]:
        fams = scrapes[node.name]
        if sample(fams, "litefs_db_position_primary", db="db") != txid:
            return None
        for replica in replicas:
            if node is primary or node is replica:
                got = sample(fams, "litefs_db_position_replica", db="db", replica=replica_label(replica))
                if got != pos_txid(replica, "db") or got != txid:
                    return None
    return scrapes


def test_three_nodes_report_replication_as_it_happens(tmp_path: Path) -> None:
    primary = LiteFSNode(tmp_path, name="n1", config={"data": RETENTION})
    replicas = [
        LiteFSNode(
            tmp_path,
            name=name,
            candidate=False,
            config={"data": RETENTION, "lease": {"hostname": "n1", "advertise-url": primary.url}},
        )
        for name in ("n2", "n3")
    ]
    nodes = [primary, *replicas]
    try:
        primary.start()
        for replica in replicas:
            replica.start()
        write_rows(primary, "db", 5)
        in_sync(primary, replicas)
        before = {n.name: scrape(n) for n in nodes}
        write_rows(primary, "db", 20)
        in_sync(primary, replicas)
        after = wait_until(lambda: positions_settled(primary, replicas), what="positions settled")
        txid = pos_txid(primary, "db")
        assert txid == 26  # CREATE TABLE + 25 INSERTs

        assert [sample(after[n.name], "litefs_is_primary") for n in nodes] == [1.0, 0.0, 0.0]
        p = after["n1"]
        for node in nodes:
            fams = after[node.name]
            assert sample(fams, "litefs_db_txid", db="db") == pos_txid(node, "db") == txid
            assert sample(fams, "litefs_db_count") == 1.0
            assert sample(fams, "litefs_db_commit_count", db="db") >= sample(
                before[node.name], "litefs_db_commit_count", db="db"
            )
        # Local commits on the primary; applied LTX files are not commits on replicas.
        assert sample(p, "litefs_db_commit_count", db="db") == txid
        hist_count = "litefs_db_commit_latency_seconds_count"
        assert sample(p, "litefs_db_commit_latency_seconds", hist_count, db="db") == txid
        assert sample(p, "litefs_db_database_write_count", db="db") > 0
        assert sample(p, "litefs_db_journal_write_count", db="db") > 0
        for replica in replicas:
            fams = after[replica.name]
            assert sample(fams, "litefs_db_commit_count", db="db") == 0
            assert fams["litefs_db_commit_latency_seconds"].samples == []  # no commit to time
            assert sample(fams, "litefs_db_database_write_count", db="db") == 0
            assert sample(fams, "litefs_db_journal_write_count", db="db") == 0
            assert sample(fams, "litefs_stream_connect_count") == 1
            assert sample(fams, "litefs_stream_reconnect_count") == 0
            # Lag near zero once in sync (heartbeats every second).
            assert sample(fams, "litefs_lag_seconds") < 5.0
        assert sample(p, "litefs_lag_seconds") == 0.0
        assert sample(p, "litefs_http_stream_count") == 2
        assert sample(p, "litefs_subscriber_count") == 2

        # Frames: every transaction reached each replica as an LTX frame or inside a snapshot; the
        # first one always as a snapshot (LiteFS never sends TXID 1 incrementally).
        ltx_frames = sample(p, "litefs_http_frame_send_count", db="db", type="ltx")
        snap_frames = sample(p, "litefs_http_frame_send_count", db="db", type="ltx:snapshot")
        assert ltx_frames > sample(before["n1"], "litefs_http_frame_send_count", db="db", type="ltx")
        assert snap_frames >= 2 and ltx_frames + snap_frames <= 2 * txid
        ltx_bytes = sample(p, "litefs_http_frame_send_bytes", db="db", type="ltx")
        assert ltx_bytes > sample(before["n1"], "litefs_http_frame_send_bytes", db="db", type="ltx")
        # Snapshots counted on both ends, with the same bytes.
        sent = snapshots(p, "sent")
        received = [snapshots(after[r.name], "received") for r in replicas]
        assert sent[0] == snap_frames == sum(r[0] for r in received)
        assert sent[1] == sample(p, "litefs_http_frame_send_bytes", db="db", type="ltx:snapshot")
        assert sent[1] == sum(r[1] for r in received) > 0
        # Per replica, as the primary sees it: in sync, so no lag.
        for replica in replicas:
            assert sample(p, "litefs_db_replica_lag_seconds", db="db", replica=replica_label(replica)) == 0

        # Retention removes the primary's old files; every file it wrote is on disk or reaped.
        def reaped() -> bool:
            fams = scrape(primary)
            return sample(fams, "litefs_db_ltx_reap_count", db="db") + ltx_on_disk(primary, "db")[
                0
            ] == txid and (sample(fams, "litefs_db_ltx_reap_count", db="db") > 0)

        wait_until(reaped, what="retention counted")

        # The static primary renews its lease too (at most every 5 s).
        wait_until(
            lambda: (
                sample(scrape(primary), "litefs_lease_renew_seconds", "litefs_lease_renew_seconds_count") > 0
            ),
            what="lease renewals",
        )
        assert sample(scrape(primary), "litefs_lease_renew_failure_count") == 0

        # A replica away longer than retention comes back to a snapshot.
        n3 = replicas[1]
        n3.kill()
        first_missing = pos_txid(primary, "db") + 1
        write_rows(primary, "db", 5)
        gone = f"{first_missing:016x}-{first_missing:016x}.ltx"
        wait_until(lambda: gone not in primary.ltx_files("db"), what="retention of the file n3 needs")
        sent_before = snapshots(scrape(primary), "sent")
        n3.start()
        in_sync(primary, replicas)
        wait_until(lambda: positions_settled(primary, replicas), what="positions settled after restart")
        n3_fams = scrape(n3)
        got = snapshots(n3_fams, "received")
        assert got[0] >= 1 and got[1] > 0
        sent_after = snapshots(scrape(primary), "sent")
        assert sent_after[0] - sent_before[0] == got[0]
        assert sent_after[1] - sent_before[1] == got[1]
        assert sample(n3_fams, "litefs_stream_connect_count") == 1
        assert sample(n3_fams, "litefs_db_commit_count", db="db") == 0

        # The primary restarts: both replicas reconnect, and the counters say so.
        primary.stop()
        primary.start()
        write_rows(primary, "db", 3)
        in_sync(primary, replicas)
        final = wait_until(
            lambda: positions_settled(primary, replicas), what="positions settled after failover"
        )
        for replica in replicas:
            assert sample(final[replica.name], "litefs_stream_reconnect_count") >= 1
            assert sample(final[replica.name], "litefs_stream_connect_count") >= 2
        assert sample(final["n1"], "litefs_db_commit_count", db="db") == 3  # a new process
    finally:
        for node in nodes:
            node.stop()
