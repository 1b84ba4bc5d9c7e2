"""Replication between real ``litefs mount`` processes (LiteFS §12.2 multi-node cases)."""

from __future__ import annotations

import os

import pytest

from .conftest import Cluster, read, same_pos, wait_until

pytestmark = [pytest.mark.cluster, pytest.mark.fuse]


def test_simple_catch_up_and_open_reader(cluster: Cluster) -> None:
    primary = cluster.primary()
    w = cluster.connect(primary.path("db"), journal_mode="delete")
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
    assert primary.pos("db").startswith("0000000000000003/")

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
