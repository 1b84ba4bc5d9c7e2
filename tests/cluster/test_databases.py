"""Database lifecycle on replicas: new databases, drops, the database filter, ``/events``."""

from __future__ import annotations

import json
import os
import threading

import httpx
import pytest

from litefs.testing import LiteFSNode

from .conftest import Cluster, same_pos, wait_until

pytestmark = [pytest.mark.cluster, pytest.mark.fuse]


def store_pos(node: LiteFSNode, db: str) -> tuple[str, str]:
    info = node.get("/debug/vars").json()["store"]["dbs"][db]
    return info["txid"], info["checksum"]


MODES = pytest.mark.parametrize("mode", ["delete", "wal"])


@MODES
def test_new_database_appears_and_drop_propagates(cluster: Cluster, mode: str) -> None:
    primary = cluster.primary()
    replica = cluster.replica()
    w = cluster.connect(primary.path("db2"), journal_mode=mode)
    w.execute("CREATE TABLE t (x)")
    w.execute("INSERT INTO t VALUES (1)")
    wait_until(lambda: same_pos(primary, replica, "db2"), what="new database on the replica")
    assert "db2" in os.listdir(replica.mount_dir)
    r = cluster.connect(replica.path("db2"))
    assert r.execute("SELECT x FROM t") == [[1]]
    r.close()
    w.close()

    os.unlink(primary.path("db2"))
    wait_until(lambda: "db2" not in os.listdir(replica.mount_dir), what="drop on the replica")
    assert not os.path.exists(os.path.join(replica.data_dir, "dbs", "db2", "database"))
    # `-pos` is gone with the database file: compare the store positions.
    assert store_pos(replica, "db2") == store_pos(primary, "db2")
    assert store_pos(replica, "db2")[1] == "8000000000000000"

    # Re-creating the database replicates again.
    w = cluster.connect(primary.path("db2"), journal_mode=mode)
    w.execute("CREATE TABLE u (y)")
    w.execute("INSERT INTO u VALUES (2)")
    wait_until(lambda: same_pos(primary, replica, "db2"), what="re-created database")
    r = cluster.connect(replica.path("db2"))
    assert r.execute("SELECT y FROM u") == [[2]]


@MODES
def test_database_filter(cluster: Cluster, mode: str) -> None:
    primary = cluster.primary()
    replica = cluster.replica(config={"lease": {"databases": ["x.db"]}})
    for name in ("y.db", "x.db"):
        c = cluster.connect(primary.path(name), journal_mode=mode)
        c.execute("CREATE TABLE t (x)")
        c.close()
    wait_until(lambda: same_pos(primary, replica, "x.db"), what="x.db on the replica")
    assert "y.db" not in os.listdir(replica.mount_dir)
    assert not os.path.exists(os.path.join(replica.data_dir, "dbs", "y.db"))


@MODES
def test_event_stream_on_replica(cluster: Cluster, mode: str) -> None:
    primary = cluster.primary()
    replica = cluster.replica()
    lines: list[dict] = []
    stop = threading.Event()

    def listen() -> None:
        try:
            with httpx.stream("GET", replica.url + "/events", timeout=httpx.Timeout(10.0, read=None)) as resp:
                for line in resp.iter_lines():
                    if line:
                        lines.append(json.loads(line))
                    if stop.is_set():
                        return
        except httpx.HTTPError:
            pass  # the node stopped at teardown

    t = threading.Thread(target=listen, daemon=True)
    t.start()
    wait_until(lambda: lines, what="init event")
    assert lines[0]["type"] == "init"
    assert lines[0]["data"]["isPrimary"] is False

    w = cluster.connect(primary.path("db"), journal_mode=mode)
    w.execute("CREATE TABLE t (x)")
    # Switching to WAL is a transaction of its own (LiteFS: one extra initial tx in WAL mode).
    first = 2 if mode == "wal" else 1
    assert primary.pos("db").startswith(f"{first:016x}/")
    # The first transaction reaches a new replica as a snapshot; let it land before the next
    # commits, or one snapshot covers them all and the replica reports a single tx.
    wait_until(lambda: same_pos(primary, replica, "db"), what="first transaction on the replica")
    w.execute("INSERT INTO t VALUES (1)")
    w.execute("INSERT INTO t VALUES (2)")
    last = first + 2

    def tx_ids() -> list[int]:
        return [int(e["data"]["txID"], 16) for e in lines if e["type"] == "tx"]

    wait_until(lambda: last in tx_ids(), what="tx events")
    txs = [e for e in lines if e["type"] == "tx"]
    ids = tx_ids()
    assert ids[-3:] == [first, first + 1, last]
    assert ids == sorted(set(ids)) and ids[0] >= 1
    if mode == "delete":
        assert ids == [1, 2, 3]
    assert all(e["db"] == "db" for e in txs)
    assert txs[-1]["data"]["postApplyChecksum"] == replica.pos("db").split("/")[1]
    stop.set()
    replica.stop()
    t.join(10)
