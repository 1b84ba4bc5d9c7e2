"""Replication of a database in WAL mode (the primary's committed WAL frames are not yet in its
database file, so snapshots must read the logical pages)."""

from __future__ import annotations

from .conftest import Cluster, same_pos, wait_until


def test_wal_database_replicates_by_snapshot_and_incrementally(cluster: Cluster) -> None:
    primary = cluster.primary()
    w = cluster.connect(primary.path("db"), journal_mode="wal")
    w.execute("PRAGMA wal_autocheckpoint=0")  # keep everything in the WAL: the snapshot must see it
    w.execute("CREATE TABLE t (x)")
    w.execute("INSERT INTO t VALUES (100)")

    replica = cluster.replica()
    wait_until(lambda: same_pos(primary, replica, "db"), what="replica catch-up by snapshot")
    r = cluster.connect(replica.path("db"))
    assert r.execute("SELECT sum(x) FROM t") == [[100]]
    r.close()

    w.execute("INSERT INTO t VALUES (200)")
    wait_until(lambda: same_pos(primary, replica, "db"), what="incremental WAL transaction")
    r2 = cluster.connect(replica.path("db"))
    assert r2.execute("SELECT sum(x) FROM t") == [[300]]
    assert r2.execute("PRAGMA integrity_check") == [["ok"]]
