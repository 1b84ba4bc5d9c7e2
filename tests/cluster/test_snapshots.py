"""Snapshots: late join and rejoin after retention, divergent positions, another cluster's node."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys

import httpx
import pytest

from litefs.testing import LiteFSNode

from .conftest import Cluster, assert_snapshot_record, insert_random_rows, same_pos, wait_until

pytestmark = [pytest.mark.cluster, pytest.mark.fuse]


MODES = pytest.mark.parametrize("mode", ["delete", "wal"])


def write_rows(
    cluster: Cluster, node: LiteFSNode, *values: int, create: bool = False, mode: str = "delete"
) -> None:
    conn = cluster.connect(node.path("db"), journal_mode=mode)
    if create:
        conn.execute("CREATE TABLE t (x)")
    for v in values:
        conn.execute("INSERT INTO t VALUES (?)", [v])
    conn.close()


def total(cluster: Cluster, node: LiteFSNode) -> int:
    conn = cluster.connect(node.path("db"))
    (row,) = conn.execute("SELECT sum(x) FROM t")
    conn.close()
    return row[0]


def drop_old_ltx(node: LiteFSNode) -> None:
    """What retention does: every LTX file but the newest goes."""
    for name in node.ltx_files("db")[:-1]:
        os.unlink(os.path.join(node.ltx_dir("db"), name))


def primary_with_random_rows(cluster: Cluster, mode: str, rows: int) -> LiteFSNode:
    """A primary whose table ``t`` holds ``rows`` incompressible 4000-byte rows (one transaction)."""
    primary = cluster.primary()
    conn = cluster.connect(primary.path("db"), journal_mode=mode)
    conn.execute("CREATE TABLE t (x)")
    insert_random_rows(conn, rows, 4000)
    conn.close()
    return primary


def set_role(node: LiteFSNode, primary: LiteFSNode | None) -> None:
    """Reconfigure a stopped node: its own static primary (None) or a replica of ``primary``."""
    if primary is None:
        node.config["lease"].update({"candidate": True, "hostname": node.name, "advertise-url": node.url})
    else:
        node.config["lease"].update(
            {"candidate": False, "hostname": primary.name, "advertise-url": primary.url}
        )


def last_txid(mode: str, rows: int) -> int:
    """TXID after CREATE TABLE and ``rows`` inserts; switching to WAL is one more (LiteFS: N = 4 or 5)."""
    return 1 + rows + (1 if mode == "wal" else 0)


@MODES
def test_late_join_with_snapshot(cluster: Cluster, mode: str) -> None:
    primary = cluster.primary()
    write_rows(cluster, primary, 100, 200, 300, create=True, mode=mode)
    n = last_txid(mode, 3)
    assert primary.pos("db").startswith(f"{n:016x}/")
    drop_old_ltx(primary)
    assert primary.ltx_files("db") == [f"{n:016x}-{n:016x}.ltx"]

    replica = cluster.replica()
    wait_until(lambda: same_pos(primary, replica, "db"), what="snapshot")
    # LiteFS keeps the snapshot as ltx/0000000000000001-<n>.ltx; the replica keeps only the
    # database file and a record of the snapshot's position (litefs.store.snaprecord).
    assert_snapshot_record(replica, n)
    assert total(cluster, replica) == 600

    # A restart resumes from the record: the database file is checked, not written again (LiteFS
    # re-applies the whole snapshot LTX file at every start).
    backing = os.path.join(replica.data_dir, "dbs", "db", "database")
    before = os.stat(backing)
    assert replica.stop() == 0
    replica.start()
    wait_until(lambda: same_pos(primary, replica, "db"), what="restart after the snapshot")
    after = os.stat(backing)
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert total(cluster, replica) == 600
    assert replica.log().count("applied snapshot") == 1  # the restart needed no second snapshot


@MODES
def test_rejoin_with_snapshot(cluster: Cluster, mode: str) -> None:
    primary = cluster.primary()
    write_rows(cluster, primary, 100, create=True, mode=mode)
    replica = cluster.replica()
    wait_until(lambda: same_pos(primary, replica, "db"), what="first catch-up")
    assert replica.stop() == 0

    write_rows(cluster, primary, 200, 300, mode=mode)
    drop_old_ltx(primary)
    replica.start()
    wait_until(lambda: same_pos(primary, replica, "db"), what="snapshot on rejoin")
    n = last_txid(mode, 3)
    assert_snapshot_record(replica, n)
    assert total(cluster, replica) == 600

    # Incremental replication continues after the snapshot, and a restart resumes from it.
    write_rows(cluster, primary, 400, mode=mode)
    wait_until(lambda: same_pos(primary, replica, "db"), what="incremental after snapshot")
    assert replica.ltx_files("db") == [f"{n + 1:016x}-{n + 1:016x}.ltx"]
    assert total(cluster, replica) == 1000
    assert replica.stop() == 0
    replica.start()
    wait_until(lambda: same_pos(primary, replica, "db"), what="restart after snapshot")
    assert total(cluster, replica) == 1000


@MODES
@pytest.mark.parametrize(
    ("diverged", "primary_more", "case"),
    [
        (2, 0, "replica with higher TXID"),
        (1, 1, "same TXID, checksum mismatch"),
        (1, 2, "pre-apply checksum mismatch"),
    ],
)
def test_position_mismatch_recovery(
    cluster: Cluster, diverged: int, primary_more: int, case: str, mode: str
) -> None:
    primary = cluster.primary()
    write_rows(cluster, primary, 100, create=True, mode=mode)
    old = cluster.replica("old")
    wait_until(lambda: same_pos(primary, old, "db"), what="first catch-up")
    assert old.stop() == 0

    # The node runs on its own as primary and takes writes the cluster never sees.
    set_role(old, None)
    old.start()
    write_rows(cluster, old, *[5] * diverged, mode=mode)
    assert old.stop() == 0
    write_rows(cluster, primary, *[1000] * primary_more, mode=mode)

    set_role(old, primary)
    old.start()
    wait_until(lambda: same_pos(primary, old, "db"), what=f"recovery ({case})")
    assert total(cluster, old) == 100 + 1000 * primary_more
    assert "sending snapshot" in primary.log()


@MODES
def test_cluster_id_mismatch(cluster: Cluster, mode: str) -> None:
    primary = cluster.primary()
    write_rows(cluster, primary, 100, create=True, mode=mode)

    # A node of another cluster: it was primary of its own, with its own data.
    stranger = LiteFSNode(cluster.root, name="stranger")
    cluster.nodes.append(stranger)
    stranger.start()
    write_rows(cluster, stranger, 7, create=True, mode=mode)
    own_pos = stranger.pos("db")
    assert stranger.stop() == 0

    set_role(stranger, primary)
    stranger.start()
    wait_until(lambda: "different cluster id" in stranger.log(), what="mismatch refusal")
    assert "caught up with primary" not in stranger.log()
    assert stranger.pos("db") == own_pos
    assert total(cluster, stranger) == 7
    assert stranger.info()["clusterID"] != primary.info()["clusterID"]
    assert stranger.stop() == 0


def test_snapshot_slower_than_snapshot_timeout_is_abandoned_and_retried(cluster: Cluster) -> None:
    # About 24 MB of incompressible rows: a snapshot that takes many reads to arrive.
    primary = primary_with_random_rows(cluster, "delete", 6000)

    replica = cluster.replica(config={"http": {"snapshot-timeout": "1ms"}}, start=False)
    replica.start(wait=False)
    wait_until(
        lambda: replica.log().count("http.snapshot-timeout") >= 2,
        timeout=60,
        what="the snapshot abandoned, then abandoned again after reconnecting",
    )
    assert "not received within 0.001s" in replica.log()
    assert replica.log().count("connected to primary") >= 2
    assert "caught up with primary" not in replica.log()
    # Nothing half-received is left behind.
    ltx_dir = replica.ltx_dir("db")
    assert not os.path.isdir(ltx_dir) or not [n for n in os.listdir(ltx_dir) if n.endswith(".tmp")]
    assert replica.stop() == 0

    # With the default (data.retention) the same snapshot arrives.
    del replica.config["http"]["snapshot-timeout"]
    replica.start()
    wait_until(lambda: same_pos(primary, replica, "db"), timeout=60, what="snapshot with the default timeout")
    r = cluster.connect(replica.path("db"))
    assert r.execute("SELECT count(*) FROM t") == [[6000]]


def test_snapshot_timeout_aborts_a_slow_snapshot_and_frees_writers(cluster: Cluster) -> None:
    # The primary holds SQLite's SHARED lock while a snapshot streams; http.snapshot-timeout bounds
    # that. A 1 ms limit cannot stream 8 MB: every attempt is aborted, the lock is released, and
    # writes on the primary go on.
    primary = cluster.primary(config={"http": {"snapshot-timeout": "1ms"}})
    conn = cluster.connect(primary.path("db"), journal_mode="delete")
    conn.execute("CREATE TABLE t (x)")
    insert_random_rows(conn, 2000, 4000)
    replica = cluster.replica(start=False)
    replica.start(wait=False)
    wait_until(lambda: "not sent within" in primary.log(), timeout=30, what="an aborted snapshot")
    conn.execute("INSERT INTO t VALUES (1)")  # not blocked by a snapshot's lock
    assert primary.pos("db").startswith("0000000000000003/")
    assert not os.path.exists(replica.path("db"))  # no half snapshot was ever applied


@MODES
def test_open_reader_on_a_replica_sees_a_snapshot_without_reopening(
    cluster: Cluster, mode: str, tmp_path
) -> None:
    primary = cluster.primary()
    write_rows(cluster, primary, 100, create=True, mode=mode)
    replica = cluster.replica()
    wait_until(lambda: same_pos(primary, replica, "db"), what="first catch-up")
    reader = cluster.connect(replica.path("db"))
    assert reader.execute("SELECT sum(x) FROM t") == [[100]]

    # A database with another page size replaces it: the primary's TXID starts again at 1, so the
    # replica receives the whole database as a snapshot while the reader stays open.
    src = str(tmp_path / "src.db")
    conn = sqlite3.connect(src, isolation_level=None)
    conn.execute("PRAGMA page_size=8192")
    conn.execute(f"PRAGMA journal_mode={mode}")
    conn.execute("CREATE TABLE t (x)")
    conn.executemany("INSERT INTO t VALUES (?)", [(i,) for i in range(1, 2001)])
    conn.close()
    with open(src, "rb") as f:
        httpx.post(primary.url + "/import", params={"name": "db"}, content=f, timeout=60).raise_for_status()
    wait_until(lambda: same_pos(primary, replica, "db"), what="snapshot")
    assert_snapshot_record(replica, 1)
    assert not [n for n in os.listdir(replica.ltx_dir("db")) if n.endswith(".tmp")]
    assert reader.execute("SELECT sum(x), count(*) FROM t") == [[2001000, 2000]]
    assert reader.execute("PRAGMA page_size") == [[8192]]
    assert reader.execute("PRAGMA integrity_check") == [["ok"]]


WRITER = r"""
import sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=10)
conn.execute("PRAGMA wal_autocheckpoint=20")
end = time.monotonic() + float(sys.argv[2])
while time.monotonic() < end:
    conn.execute("INSERT INTO t VALUES (randomblob(3000))")
"""


def test_snapshot_of_a_wal_database_survives_checkpoints_while_it_streams(cluster: Cluster) -> None:
    # A checkpoint copies WAL frames into the database file while pages are read for a snapshot.
    # The primary holds SQLite's WAL read locks while a snapshot streams, so no checkpoint copies a
    # frame meanwhile: a snapshot under steady writes with frequent automatic checkpoints completes
    # on the first attempt, where it used to be aborted and retried for as long as the writes went on.
    primary = primary_with_random_rows(cluster, "wal", 10000)
    writer = subprocess.Popen([sys.executable, "-c", WRITER, primary.path("db"), "5"])
    try:
        replica = cluster.replica(start=False)
        replica.start(wait=False)
        wait_until(lambda: "applied snapshot" in replica.log(), timeout=60, what="the snapshot applied")
    finally:
        writer.wait(30)
    assert writer.returncode == 0
    wait_until(lambda: same_pos(primary, replica, "db"), timeout=30, what="the replica caught up")
    assert "a checkpoint ran while" not in primary.log()
    assert primary.log().count("sending snapshot") == 1
    r = cluster.connect(replica.path("db"))
    p = cluster.connect(primary.path("db"))
    assert r.execute("SELECT count(*), sum(length(x)) FROM t") == p.execute(
        "SELECT count(*), sum(length(x)) FROM t"
    )


@MODES
def test_a_replica_killed_while_a_snapshot_arrives_restarts_and_catches_up(
    cluster: Cluster, mode: str
) -> None:
    primary = cluster.primary()
    write_rows(cluster, primary, 100, create=True, mode=mode)
    replica = cluster.replica()
    wait_until(lambda: same_pos(primary, replica, "db"), what="first catch-up")
    old_pos = replica.pos("db")
    assert replica.stop() == 0
    # While the replica is away: 40 MB more, and retention takes the LTX files it would need.
    conn = cluster.connect(primary.path("db"))
    insert_random_rows(conn, 5000, 4000)
    insert_random_rows(conn, 5000, 4000)
    conn.close()
    drop_old_ltx(primary)

    logged = len(replica.log())
    replica.start(wait=False)
    ltx = replica.ltx_dir("db")

    def building() -> bool:
        return os.path.isdir(ltx) and any(n.endswith(".db.tmp") for n in os.listdir(ltx))

    wait_until(building, timeout=30, what="the snapshot's database file being built")
    replica.kill()  # mid-snapshot: the new database file is half written
    assert "applied snapshot" not in replica.log()[logged:]

    # Startup drops the half-built file; the replica serves its old state, then gets the snapshot.
    replica.start(wait=False)
    wait_until(lambda: same_pos(primary, replica, "db"), timeout=60, what="catch-up after the crash")
    assert "applied snapshot" in replica.log()[logged:] and old_pos != replica.pos("db")
    assert_snapshot_record(replica, int(primary.pos("db").split("/")[0], 16))
    assert not [n for n in os.listdir(ltx) if n.endswith(".tmp")]
    r = cluster.connect(replica.path("db"))
    assert r.execute("SELECT count(*) FROM t") == [[10001]]
    assert r.execute("PRAGMA integrity_check") == [["ok"]]
