"""An open reader on a WAL-mode replica sees applied transactions without reopening (LiteFS §4.8).

The replica writes pages straight into its database file; a reader that keeps its connection open
trusts its WAL index in ``-shm`` and would keep serving its cached pages unless the node rewrites that
index (new change counter) after each apply.
"""

from __future__ import annotations

import os

from litefs.sqlite.shm import SHM_BLOCK_SIZE

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

    # A new connection agrees with the old one.
    r2 = cluster.connect(replica.path("db"))
    assert r2.execute("SELECT sum(x), count(*) FROM t") == r.execute("SELECT sum(x), count(*) FROM t")
    assert r2.execute("PRAGMA integrity_check") == [["ok"]]
