"""An open reader on a WAL-mode replica sees applied transactions without reopening (LiteFS §4.8).

The replica writes pages straight into its database file; a reader that keeps its connection open
trusts its WAL index in ``-shm`` and would keep serving its cached pages unless the node rewrites that
index (new change counter) after each apply.
"""

from __future__ import annotations

import os

from litefs.sqlite.shm import SHM_BLOCK_SIZE, WAL_INDEX_HEADER_REGION, parse_wal_index_header

from .conftest import Cluster, same_pos, wait_until


def test_open_wal_reader_on_replica_sees_each_apply(cluster: Cluster) -> None:
    primary = cluster.primary()
    w = cluster.connect(primary.path("db"), journal_mode="wal")
    w.execute("CREATE TABLE t (x)")
    w.execute("INSERT INTO t VALUES (100)")

    replica = cluster.replica()
    wait_until(lambda: same_pos(primary, replica, "db"), what="replica catch-up")
    r = cluster.connect(replica.path("db"))
    assert r.execute("PRAGMA journal_mode") == [["wal"]]
    assert r.execute("SELECT sum(x) FROM t") == [[100]]

    total = 100
    for i in range(1, 6):
        w.execute("INSERT INTO t VALUES (?)", [i * 1000])
        total += i * 1000
        wait_until(lambda: same_pos(primary, replica, "db"), what=f"transaction {i} on the replica")
        # The SAME connection, kept open since before the apply.
        assert r.execute("SELECT sum(x) FROM t") == [[total]]
        assert r.execute("SELECT count(*) FROM t") == [[i + 1]]

    # A transaction that grows the database by several pages is seen too.
    w.execute("INSERT INTO t SELECT zeroblob(3000) FROM (SELECT 1 UNION ALL SELECT 2 UNION ALL SELECT 3)")
    wait_until(lambda: same_pos(primary, replica, "db"), what="multi-page transaction")
    assert r.execute("SELECT count(*) FROM t") == [[9]]
    assert r.execute("PRAGMA integrity_check") == [["ok"]]

    # The replica's WAL stays empty: applies go into the database file.
    wal = replica.path("db-wal")
    assert not os.path.exists(wal) or os.path.getsize(wal) == 0
    shm = replica.path("db-shm")
    assert os.path.getsize(shm) == SHM_BLOCK_SIZE
    with open(shm, "rb") as f:
        index = parse_wal_index_header(f.read(WAL_INDEX_HEADER_REGION))
    assert index.valid and index.max_frame == 0 and index.n_backfill == 0
    assert [[index.page_count]] == r.execute("PRAGMA page_count")

    # A new connection agrees with the old one.
    r2 = cluster.connect(replica.path("db"))
    assert r2.execute("SELECT sum(x), count(*) FROM t") == r.execute("SELECT sum(x), count(*) FROM t")
    assert r2.execute("PRAGMA integrity_check") == [["ok"]]


def test_open_read_transaction_keeps_its_snapshot_then_sees_the_apply(cluster: Cluster) -> None:
    primary = cluster.primary()
    w = cluster.connect(primary.path("db"), journal_mode="wal")
    w.execute("CREATE TABLE t (x)")
    w.execute("INSERT INTO t VALUES (100)")
    replica = cluster.replica()
    wait_until(lambda: same_pos(primary, replica, "db"), what="replica catch-up")
    r = cluster.connect(replica.path("db"))
    assert r.execute("SELECT sum(x) FROM t") == [[100]]

    # A read transaction in progress holds back the apply (it waits for the WAL read lock) and keeps
    # seeing its own snapshot; once it ends, the apply goes through and the same connection sees it.
    r.execute("BEGIN")
    assert r.execute("SELECT sum(x) FROM t") == [[100]]
    w.execute("INSERT INTO t VALUES (200)")
    primary_pos = primary.pos("db")
    assert r.execute("SELECT sum(x) FROM t") == [[100]]
    r.execute("COMMIT")
    wait_until(lambda: replica.pos("db") == primary_pos, what="apply after the read transaction")
    assert r.execute("SELECT sum(x) FROM t") == [[300]]
    assert r.execute("PRAGMA integrity_check") == [["ok"]]


def test_reads_during_a_stream_of_applies_are_consistent(cluster: Cluster) -> None:
    primary = cluster.primary()
    w = cluster.connect(primary.path("db"), journal_mode="wal")
    w.execute("CREATE TABLE t (x)")
    w.execute("INSERT INTO t VALUES (1)")
    replica = cluster.replica()
    wait_until(lambda: same_pos(primary, replica, "db"), what="replica catch-up")
    r = cluster.connect(replica.path("db"))

    for i in range(2, 41):
        w.execute("INSERT INTO t VALUES (?)", [i])
        # No waiting: each read sees some whole transaction (rows 1..n), never part of one.
        ((n, total),) = r.execute("SELECT count(*), sum(x) FROM t")
        assert total == n * (n + 1) // 2
    wait_until(lambda: same_pos(primary, replica, "db"), what="replica catch-up")
    assert r.execute("SELECT count(*), sum(x) FROM t") == [[40, 820]]
    assert r.execute("PRAGMA integrity_check") == [["ok"]]
