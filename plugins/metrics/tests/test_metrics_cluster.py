"""Metrics of a three-node cluster (static lease) under a write load: one primary, replicas in sync."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from litefs.testing import LiteFSNode

from .metrics_helpers import pos_txid, sample, scrape, write_rows

pytestmark = pytest.mark.fuse


def wait_until(cond, timeout: float = 15.0) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.02)


def test_three_nodes_report_one_primary_and_equal_txids(tmp_path: Path) -> None:
    primary = LiteFSNode(tmp_path, name="n1")
    replicas = [
        LiteFSNode(
            tmp_path,
            name=name,
            candidate=False,
            config={"lease": {"hostname": "n1", "advertise-url": primary.url}},
        )
        for name in ("n2", "n3")
    ]
    nodes = [primary, *replicas]
    try:
        primary.start()
        for replica in replicas:
            replica.start()
        write_rows(primary, "db", 5)
        wait_until(lambda: all(pos_txid(n, "db") == pos_txid(primary, "db") for n in replicas))
        before = {n.name: scrape(n) for n in nodes}
        write_rows(primary, "db", 3)
        wait_until(lambda: all(pos_txid(n, "db") == pos_txid(primary, "db") for n in replicas))
        after = {n.name: scrape(n) for n in nodes}

        assert [sample(after[n.name], "litefs_is_primary") for n in nodes] == [1.0, 0.0, 0.0]
        for node in nodes:
            fams = after[node.name]
            assert sample(fams, "litefs_db_txid", db="db") == pos_txid(node, "db")
            assert sample(fams, "litefs_db_count") == 1.0
            # Counters only go up between scrapes.
            assert sample(fams, "litefs_db_commit_count", db="db") >= sample(
                before[node.name], "litefs_db_commit_count", db="db"
            )
        # Lag near zero once in sync (heartbeats every second).
        for replica in replicas:
            assert sample(after[replica.name], "litefs_lag_seconds") < 5.0
        assert sample(after["n1"], "litefs_lag_seconds") == 0.0
    finally:
        for node in nodes:
            node.stop()
