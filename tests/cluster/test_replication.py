"""Replication between real ``litefs mount`` processes (LiteFS §12.2 multi-node cases)."""

from __future__ import annotations

import os

import pytest

from .conftest import Cluster, SQLError, read, same_pos, wait_until

pytestmark = [pytest.mark.cluster, pytest.mark.fuse]


@pytest.mark.parametrize("mode", ["delete", "truncate", "persist", "wal"])
def test_simple_catch_up_and_open_reader(cluster: Cluster, mode: str) -> None:
    primary = cluster.primary()
    w = cluster.connect(primary.path("db"), journal_mode=mode)
    w.execute("CREATE TABLE t (x)")
    w.execute("INSERT INTO t VALUES (100)")

    replica = cluster.replica()
    wait_until(lambda: same_pos(primary, replica, "db"), what="replica catch-up")
    r = cluster.connect(replica.path("db"))
    assert r.execute("SELECT sum(x) FROM t") == [[100]]

    # The open replica connection sees new rows without reopening.
    w.execute("INSERT INTO t VALUES (200)")
    wait_until(lambda: same_pos(primary, replica, "db"), what="second transaction")
    assert r.execute("SELECT sum(x) FROM t") == [[300]]
    # Switching to WAL mode is a transaction of its own (LiteFS: "one extra initial tx").
    assert primary.pos("db").startswith(f"{4 if mode == 'wal' else 3:016x}/")

    assert read(replica.path(".primary")) == "primary\n"
    assert not os.path.exists(primary.path(".primary"))
    lag = int(read(replica.path(".lag")))
    assert 0 <= lag < 5000
    assert read(primary.path(".lag")) == "+000000000\n"
    assert replica.info()["clusterID"] == primary.info()["clusterID"]
    assert "caught up with primary; node is ready" in replica.log()

    # Both stop cleanly while the stream is open.
    assert replica.stop() == 0
    assert primary.stop() == 0


def setup_pair(cluster: Cluster, mode: str = "delete", **replica_kwargs: object) -> tuple:
    """A primary with ``t`` holding 100, a replica caught up with it, and a writer connection."""
    primary = cluster.primary()
    w = cluster.connect(primary.path("db"), journal_mode=mode)
    w.execute("CREATE TABLE t (x)")
    w.execute("INSERT INTO t VALUES (100)")
    replica = cluster.replica(**replica_kwargs)  # type: ignore[arg-type]
    wait_until(lambda: same_pos(primary, replica, "db"), what="replica catch-up")
    return primary, replica, w


@pytest.mark.parametrize("mode", ["delete", "truncate", "persist", "wal"])
def test_replica_is_read_only(cluster: Cluster, mode: str) -> None:
    primary, replica, _ = setup_pair(cluster, mode)
    before = replica.pos("db")
    r = cluster.connect(replica.path("db"))
    # Rollback modes: SQLite's own read-only error. WAL mode: SQLite only learns of the refusal
    # when writing the -wal file, so it reports an I/O error (as with LiteFS, §4.9).
    expected = "disk I/O error" if mode == "wal" else "attempt to write a readonly database"
    with pytest.raises(SQLError, match=expected):
        r.execute("INSERT INTO t VALUES (1)")
    assert r.execute("SELECT sum(x) FROM t") == [[100]]
    assert replica.pos("db") == before == primary.pos("db")
    assert not os.path.exists(os.path.join(replica.data_dir, "dbs", "db", "journal"))
    if mode == "wal":
        wal = os.path.join(replica.data_dir, "dbs", "db", "wal")
        assert not os.path.exists(wal) or os.path.getsize(wal) == 0
        wait_until(lambda: "wal error: read only replica" in replica.log(), what="the refusal in the log")
    # The replica still follows the primary after the refused write.
    w = cluster.connect(primary.path("db"))
    w.execute("INSERT INTO t VALUES (5)")
    wait_until(lambda: same_pos(primary, replica, "db"), what="catch-up after the refused write")
    assert r.execute("SELECT sum(x) FROM t") == [[105]]
    assert r.execute("PRAGMA integrity_check") == [["ok"]]


@pytest.mark.parametrize("mode", ["delete", "wal"])
def test_non_standard_page_size(cluster: Cluster, mode: str) -> None:
    primary = cluster.primary()
    w = cluster.connect(primary.path("db"), page_size=512, journal_mode=mode)
    w.execute("CREATE TABLE t (x)")
    for _ in range(20):
        w.execute("INSERT INTO t VALUES (?)", [os.urandom(200).hex()])
    replica = cluster.replica()
    wait_until(lambda: same_pos(primary, replica, "db"), what="replica catch-up")
    r = cluster.connect(replica.path("db"))
    assert r.execute("PRAGMA page_size") == [[512]]
    assert r.execute("SELECT count(*) FROM t") == [[20]]
    w.execute("INSERT INTO t VALUES ('more')")
    wait_until(lambda: same_pos(primary, replica, "db"), what="incremental")
    assert r.execute("SELECT count(*) FROM t") == [[21]]
    assert r.execute("PRAGMA integrity_check") == [["ok"]]


def test_primary_notices_a_replica_that_goes_away(cluster: Cluster) -> None:
    primary, replica, w = setup_pair(cluster)
    replica.kill()
    wait_until(lambda: "stream disconnected" in primary.log(), timeout=5, what="stream end on the primary")
    w.execute("INSERT INTO t VALUES (1)")  # the primary keeps working
    replica.start()
    wait_until(lambda: same_pos(primary, replica, "db"), what="catch-up after restart")


def test_replica_reconnects_after_primary_restart(cluster: Cluster) -> None:
    primary, replica, w = setup_pair(cluster)
    w.close()
    assert primary.stop() == 0
    primary.start()
    w = cluster.connect(primary.path("db"))
    w.execute("INSERT INTO t VALUES (1)")
    wait_until(lambda: same_pos(primary, replica, "db"), what="catch-up after reconnect")
    r = cluster.connect(replica.path("db"))
    assert r.execute("SELECT sum(x) FROM t") == [[101]]
    assert replica.log().count("connected to primary") >= 2


def test_replica_stops_cleanly_while_applying(cluster: Cluster) -> None:
    primary, replica, w = setup_pair(cluster)
    r = cluster.connect(replica.path("db"))
    for round_ in range(3):
        for i in range(60):
            w.execute("INSERT INTO t VALUES (?)", [i])
            if i == 40:
                r.execute("SELECT count(*) FROM t")
        # SIGTERM lands while LTX files are still arriving and being applied.
        assert replica.stop(timeout=10) == 0, f"round {round_}: {replica.log()[-2000:]}"
        r.close()
        replica.start()
        wait_until(lambda: same_pos(primary, replica, "db"), what="catch-up after restart")
        r = cluster.connect(replica.path("db"))
