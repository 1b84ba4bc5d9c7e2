"""Snapshots: late join and rejoin after retention, divergent positions, another cluster's node."""

from __future__ import annotations

import os

import pytest

from litefs.testing import LiteFSNode

from .conftest import Cluster, same_pos, wait_until

pytestmark = [pytest.mark.cluster, pytest.mark.fuse]


def write_rows(cluster: Cluster, node: LiteFSNode, *values: int, create: bool = False) -> None:
    conn = cluster.connect(node.path("db"), journal_mode="delete")
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


def set_role(node: LiteFSNode, primary: LiteFSNode | None) -> None:
    """Reconfigure a stopped node: its own static primary (None) or a replica of ``primary``."""
    if primary is None:
        node.config["lease"].update({"candidate": True, "hostname": node.name, "advertise-url": node.url})
    else:
        node.config["lease"].update(
            {"candidate": False, "hostname": primary.name, "advertise-url": primary.url}
        )


def test_late_join_with_snapshot(cluster: Cluster) -> None:
    primary = cluster.primary()
    write_rows(cluster, primary, 100, 200, 300, create=True)
    assert primary.pos("db").startswith("0000000000000004/")
    drop_old_ltx(primary)
    assert primary.ltx_files("db") == ["0000000000000004-0000000000000004.ltx"]

    replica = cluster.replica()
    wait_until(lambda: same_pos(primary, replica, "db"), what="snapshot")
    assert replica.ltx_files("db") == ["0000000000000001-0000000000000004.ltx"]
    assert total(cluster, replica) == 600


def test_rejoin_with_snapshot(cluster: Cluster) -> None:
    primary = cluster.primary()
    write_rows(cluster, primary, 100, create=True)
    replica = cluster.replica()
    wait_until(lambda: same_pos(primary, replica, "db"), what="first catch-up")
    assert replica.stop() == 0

    write_rows(cluster, primary, 200, 300)
    drop_old_ltx(primary)
    replica.start()
    wait_until(lambda: same_pos(primary, replica, "db"), what="snapshot on rejoin")
    assert replica.ltx_files("db") == ["0000000000000001-0000000000000004.ltx"]
    assert total(cluster, replica) == 600

    # Incremental replication continues after the snapshot.
    write_rows(cluster, primary, 400)
    wait_until(lambda: same_pos(primary, replica, "db"), what="incremental after snapshot")
    assert total(cluster, replica) == 1000


@pytest.mark.parametrize(
    ("diverged", "primary_more", "case"),
    [
        (2, 0, "replica with higher TXID"),
        (1, 1, "same TXID, checksum mismatch"),
        (1, 2, "pre-apply checksum mismatch"),
    ],
)
def test_position_mismatch_recovery(cluster: Cluster, diverged: int, primary_more: int, case: str) -> None:
    primary = cluster.primary()
    write_rows(cluster, primary, 100, create=True)
    old = cluster.replica("old")
    wait_until(lambda: same_pos(primary, old, "db"), what="first catch-up")
    assert old.stop() == 0

    # The node runs on its own as primary and takes writes the cluster never sees.
    set_role(old, None)
    old.start()
    write_rows(cluster, old, *[5] * diverged)
    assert old.stop() == 0
    write_rows(cluster, primary, *[1000] * primary_more)

    set_role(old, primary)
    old.start()
    wait_until(lambda: same_pos(primary, old, "db"), what=f"recovery ({case})")
    assert total(cluster, old) == 100 + 1000 * primary_more
    assert "sending snapshot" in primary.log()


def test_cluster_id_mismatch(cluster: Cluster) -> None:
    primary = cluster.primary()
    write_rows(cluster, primary, 100, create=True)

    # A node of another cluster: it was primary of its own, with its own data.
    stranger = LiteFSNode(cluster.root, name="stranger")
    cluster.nodes.append(stranger)
    stranger.start()
    write_rows(cluster, stranger, 7, create=True)
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


def test_snapshot_timeout_aborts_a_slow_snapshot_and_frees_writers(cluster: Cluster) -> None:
    # The primary holds SQLite's SHARED lock while a snapshot streams; http.snapshot-timeout bounds
    # that. A 1 ms limit cannot stream 8 MB: every attempt is aborted, the lock is released, and
    # writes on the primary go on.
    primary = cluster.primary(config={"http": {"snapshot-timeout": "1ms"}})
    conn = cluster.connect(primary.path("db"), journal_mode="delete")
    conn.execute("CREATE TABLE t (x)")
    conn.execute(
        "INSERT INTO t WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 2000) "
        "SELECT randomblob(4000) FROM n"
    )
    replica = cluster.replica(start=False)
    replica.start(wait=False)
    wait_until(lambda: "not sent within" in primary.log(), timeout=30, what="an aborted snapshot")
    conn.execute("INSERT INTO t VALUES (1)")  # not blocked by a snapshot's lock
    assert primary.pos("db").startswith("0000000000000003/")
    assert not os.path.exists(replica.path("db"))  # no half snapshot was ever applied
