"""Replication of a database in WAL mode (the primary's committed WAL frames are not yet in its
database file, so snapshots must read the logical pages)."""

from __future__ import annotations

import threading

from .conftest import Cluster, SQLConn, insert_random_rows, same_pos, wait_until


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


def test_snapshot_of_a_wal_database_while_the_primary_keeps_committing(cluster: Cluster) -> None:
    """WAL writers do not need the database file's SHARED lock that keeps rollback-mode writers out
    of a snapshot: the snapshot must still be exactly one transaction's pages."""
    primary = cluster.primary()
    w = cluster.connect(primary.path("db"), journal_mode="wal")
    w.execute("CREATE TABLE t (x)")
    insert_random_rows(w, 500, 3000)
    stop = threading.Event()
    errors: list[BaseException] = []

    def write() -> None:
        conn = SQLConn(primary.path("db"))
        try:
            conn.execute("PRAGMA wal_autocheckpoint=50")
            while not stop.is_set():
                conn.execute("INSERT INTO t VALUES (randomblob(3000))")
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            conn.close()

    writer = threading.Thread(target=write)
    writer.start()
    try:
        # Several replicas join while commits (and checkpoints) go on: each gets a snapshot.
        replicas = [cluster.replica(f"replica{i}") for i in range(2)]
    finally:
        stop.set()
        writer.join(30)
    assert not errors, errors
    for replica in replicas:
        wait_until(lambda r=replica: same_pos(primary, r, "db"), timeout=30, what="catch-up after the writes")
        r = cluster.connect(replica.path("db"))
        assert r.execute("SELECT count(*) FROM t") == w.execute("SELECT count(*) FROM t")
        assert r.execute("PRAGMA integrity_check") == [["ok"]]
    assert "Error in ASGI Framework" not in primary.log()
    assert primary.log().count("sending snapshot at txid") >= 2
