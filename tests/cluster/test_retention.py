"""Retention on real nodes: old LTX files go, the newest stays, a late replica catches up by snapshot and
prunes its own files too (LiteFS TestMultiNode_EnforceRetention/Expiry, §5.7)."""

from __future__ import annotations

from typing import Any

import pytest

from litefs.testing import LiteFSNode

from .conftest import Cluster, assert_snapshot_record, same_pos, wait_until

RETENTION = {"data": {"retention": "1s", "retention-monitor-interval": "200ms"}}


def txid(node: LiteFSNode) -> int:
    return int(node.pos("db").split("/")[0], 16)


def only_file(node: LiteFSNode, name: str) -> bool:
    return node.ltx_files("db") == [name]


def write_until(conn: Any, node: LiteFSNode, target: int) -> int:
    """Insert rows 1, 2, 3, ... one transaction each until the node's TXID is ``target``; return the sum."""
    total, value = 0, 0
    while txid(node) < target:
        value += 1
        conn.execute("INSERT INTO t VALUES (?)", [value])
        total += value
    assert txid(node) == target
    return total


@pytest.mark.parametrize("mode", ["delete", "wal"])
def test_retention_prunes_primary_and_replica(cluster: Cluster, mode: str) -> None:
    primary = cluster.primary(config=RETENTION)
    w = cluster.connect(primary.path("db"), journal_mode=mode)
    w.execute("CREATE TABLE t (x)")
    expected = write_until(w, primary, 10)

    # Only the newest file survives; it is kept however old it gets.
    wait_until(lambda: only_file(primary, "000000000000000a-000000000000000a.ltx"), what="primary retention")

    # A replica started now cannot be sent LTX 1: it gets a snapshot.
    replica = cluster.replica(config=RETENTION)
    wait_until(lambda: same_pos(primary, replica, "db"), what="replica catch-up")
    assert "sending snapshot" in primary.log()
    assert_snapshot_record(replica, 0xA)  # LiteFS keeps ltx/0000000000000001-000000000000000a.ltx
    r = cluster.connect(replica.path("db"))
    assert r.execute("SELECT sum(x) FROM t") == [[expected]]
    r.close()

    # Incremental replication goes on; the replica prunes its own files, keeping the newest.
    for value in (1000, 2000, 3000):
        w.execute("INSERT INTO t VALUES (?)", [value])
    expected += 6000
    wait_until(lambda: same_pos(primary, replica, "db"), what="incremental catch-up")
    assert txid(replica) == 13
    wait_until(lambda: only_file(replica, "000000000000000d-000000000000000d.ltx"), what="replica retention")
    wait_until(
        lambda: only_file(primary, "000000000000000d-000000000000000d.ltx"), what="primary retention again"
    )
    r = cluster.connect(replica.path("db"))
    assert r.execute("SELECT sum(x) FROM t") == [[expected]]
    assert r.execute("PRAGMA integrity_check") == [["ok"]]
    r.close()

    # Both nodes still work after everything older was pruned: a write replicates incrementally.
    w.execute("INSERT INTO t VALUES (4000)")
    wait_until(lambda: same_pos(primary, replica, "db"), what="replication after pruning")
    assert txid(replica) == 14
    assert primary.log().count("sending snapshot at txid") == 1
    expected += 4000

    # A replica that was away longer than retention finds its next file gone: a snapshot again.
    assert replica.stop() == 0
    for value in (1, 2, 3):
        w.execute("INSERT INTO t VALUES (?)", [value])
    expected += 6
    wait_until(
        lambda: only_file(primary, "0000000000000011-0000000000000011.ltx"), what="primary retention (away)"
    )
    replica.start()
    wait_until(lambda: same_pos(primary, replica, "db"), what="rejoin catch-up")
    assert "ltx file for txid 000000000000000f is gone" in primary.log()
    assert_snapshot_record(replica, 0x11)
    r = cluster.connect(replica.path("db"))
    assert r.execute("SELECT sum(x) FROM t") == [[expected]]
    r.close()
