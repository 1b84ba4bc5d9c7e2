"""``GET /metrics`` of a real ``litefs mount`` node under a write load."""

from __future__ import annotations

import subprocess
import sys

import httpx
import pytest

from litefs.testing import LiteFSNode

from .metrics_helpers import ltx_on_disk, pos_txid, sample, scrape, write_rows

pytestmark = pytest.mark.fuse

COUNTERS = ("litefs_db_commit_count", "litefs_db_ltx_reap_count", "litefs_primary_change_count")


def test_metrics_match_what_happened(tmp_path) -> None:
    with LiteFSNode(tmp_path) as node:
        before = scrape(node)
        assert sample(before, "litefs_is_primary") == 1
        assert sample(before, "litefs_db_count") == 0
        assert sample(before, "litefs_primary_change_count") == 1  # became primary at startup

        write_rows(node, "app.db", 20)
        write_rows(node, "other.db", 3)
        first = scrape(node)
        assert sample(first, "litefs_db_count") == 2
        for db, commits in (("app.db", 21), ("other.db", 4)):  # CREATE TABLE + one per INSERT
            txid = pos_txid(node, db)
            assert txid == commits
            assert sample(first, "litefs_db_txid", db=db) == txid
            assert sample(first, "litefs_db_position_primary", db=db) == txid
            assert sample(first, "litefs_db_commit_count", db=db) == commits
            hist_count = "litefs_db_commit_latency_seconds_count"
            assert sample(first, "litefs_db_commit_latency_seconds", hist_count, db=db) == commits
            count, size = ltx_on_disk(node, db)
            assert count > 0 and size > 0
            assert sample(first, "litefs_db_ltx_count", db=db) == count
            assert sample(first, "litefs_db_ltx_bytes", db=db) == size
            assert sample(first, "litefs_db_lag_seconds", db=db) == 0
            assert sample(first, "litefs_halt_lock_active", db=db) == 0
        assert sample(first, "litefs_lag_seconds") == 0
        # A commit through FUSE with an fsync'd LTX file takes well under a second here.
        latency_sum = sample(
            first, "litefs_db_commit_latency_seconds", "litefs_db_commit_latency_seconds_sum", db="app.db"
        )
        assert 0 <= latency_sum / 21 < 1.0

        write_rows(node, "app.db", 5)
        second = scrape(node)
        assert sample(second, "litefs_db_commit_count", db="app.db") == 26 == pos_txid(node, "app.db")
        assert sample(second, "litefs_db_txid", db="app.db") == 26
        for name in COUNTERS:
            for s in first[name].samples:
                later = [t.value for t in second[name].samples if t.name == s.name and t.labels == s.labels]
                assert later and later[0] >= s.value, (name, s)
        assert sample(second, "process_cpu_seconds") >= sample(first, "process_cpu_seconds")


def test_metrics_disabled_gives_404(tmp_path) -> None:
    with LiteFSNode(tmp_path, config={"metrics": {"enabled": False}}) as node:
        write_rows(node, "app.db", 1)
        resp = httpx.get(node.url + "/metrics", timeout=10)
        assert resp.status_code == 404
        assert node.get("/info").status_code == 200


_WAL_WRITER = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=10.0)
assert conn.execute("PRAGMA journal_mode=WAL").fetchone()[0] == "wal"
conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
for i in range(5):
    conn.execute("INSERT INTO t (v) VALUES (?)", ("x" * 200,))
conn.close()
"""


def test_write_counters_follow_the_files_written(tmp_path) -> None:
    with LiteFSNode(tmp_path) as node:
        write_rows(node, "rollback.db", 3)
        subprocess.run([sys.executable, "-c", _WAL_WRITER, node.path("wal.db")], check=True, timeout=30)
        fams = scrape(node)
        # Rollback journal mode: pages go to the journal first, then to the database file.
        assert sample(fams, "litefs_db_journal_write_count", db="rollback.db") > 0
        assert sample(fams, "litefs_db_database_write_count", db="rollback.db") > 0
        assert sample(fams, "litefs_db_wal_write_count", db="rollback.db") == 0
        # WAL mode: commits are WAL writes; the closing checkpoint writes the database file.
        assert sample(fams, "litefs_db_wal_write_count", db="wal.db") > 0
        assert sample(fams, "litefs_db_commit_count", db="wal.db") == pos_txid(node, "wal.db")
