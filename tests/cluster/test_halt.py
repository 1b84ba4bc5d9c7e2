"""HALT write forwarding between real ``litefs mount`` processes (LiteFS §7, TestMultiNode_Halt)."""

from __future__ import annotations

import os

import httpx
import pytest

from .conftest import Cluster, SQLError, same_pos, wait_until

pytestmark = [pytest.mark.cluster, pytest.mark.fuse]

MODES = ["delete", "wal"]


def setup_pair(cluster: Cluster, mode: str) -> tuple:
    primary = cluster.primary()
    w = cluster.connect(primary.path("db"), journal_mode=mode)
    w.execute("PRAGMA busy_timeout = 20000")
    w.execute("CREATE TABLE t (x)")
    w.execute("INSERT INTO t VALUES (100)")
    replica = cluster.replica()
    wait_until(lambda: same_pos(primary, replica, "db"), what="replica catch-up")
    return primary, replica, w


def count(conn, table: str = "t") -> int:
    return conn.execute(f"SELECT count(*) FROM {table}")[0][0]


@pytest.mark.parametrize("mode", MODES)
def test_api_halt_write_on_replica(cluster: Cluster, mode: str) -> None:
    primary, replica, w = setup_pair(cluster, mode)
    r = cluster.connect(replica.path("db"))
    with pytest.raises(SQLError):
        r.execute("INSERT INTO t VALUES (1)")

    resp = httpx.post(replica.url + "/api/v1/dbs/db/halt", timeout=30)
    assert resp.status_code == 200, resp.text
    lock = resp.json()
    assert set(lock) == {"id", "pos", "expires"}
    assert lock["pos"]["TXID"] == replica.pos("db").split("/")[0]
    r.execute("INSERT INTO t VALUES (200)")
    r.execute("INSERT INTO t VALUES (300)")
    resp = httpx.delete(replica.url + "/api/v1/dbs/db/halt", timeout=30)
    assert resp.status_code == 200, resp.text

    wait_until(lambda: same_pos(primary, replica, "db"), what="positions converge")
    assert w.execute("SELECT sum(x) FROM t") == [[600]]
    assert r.execute("SELECT sum(x) FROM t") == [[600]]
    # Read-only again, and the primary writes again.
    with pytest.raises(SQLError):
        r.execute("INSERT INTO t VALUES (1)")
    w.execute("INSERT INTO t VALUES (400)")
    wait_until(lambda: same_pos(primary, replica, "db"), what="primary write replicates")
    assert r.execute("SELECT sum(x) FROM t") == [[1000]]
    # The forwarded transactions were stored once on each node, with the same file names.
    assert (
        primary.ltx_files("db") == replica.ltx_files("db")
        or primary.ltx_files("db")[-1] == (replica.ltx_files("db")[-1])
    )


@pytest.mark.parametrize("mode", MODES)
def test_halt_commit_and_implicit_unhalt(cluster: Cluster, mode: str) -> None:
    """TestMultiNode_Halt/Commit and /ImplicitUnhalt: the lock file's handle holds the HALT."""
    primary, replica, w = setup_pair(cluster, mode)
    r = cluster.connect(replica.path("db"))
    fd = os.open(replica.path("db-lock"), os.O_RDWR)
    try:
        r.execute("INSERT INTO t VALUES (200)")
        assert r.execute("SELECT sum(x) FROM t") == [[300]]
        wait_until(lambda: same_pos(primary, replica, "db"), what="forwarded commit on the primary")
    finally:
        os.close(fd)  # implicit unhalt
    assert w.execute("SELECT sum(x) FROM t") == [[300]]
    w.execute("INSERT INTO t VALUES (400)")
    wait_until(lambda: same_pos(primary, replica, "db"), what="primary write replicates")
    assert r.execute("SELECT sum(x) FROM t") == [[700]]
    with pytest.raises(SQLError):
        r.execute("INSERT INTO t VALUES (1)")


def test_lock_file_attributes(cluster: Cluster) -> None:
    primary, replica, _ = setup_pair(cluster, "delete")
    for node in (primary, replica):
        st = os.stat(node.path("db-lock"))
        assert oct(st.st_mode & 0o777) == oct(0o444) and st.st_size == 0
        assert "db-lock" not in os.listdir(node.mount_dir)
        with open(node.path("db-lock"), "rb") as f:
            assert f.read() == b""


def test_halt_on_primary_is_noop(cluster: Cluster) -> None:
    primary, replica, w = setup_pair(cluster, "delete")
    fd = os.open(primary.path("db-lock"), os.O_RDWR)
    try:
        w.execute("INSERT INTO t VALUES (200)")  # not blocked
    finally:
        os.close(fd)
    resp = httpx.post(primary.url + "/api/v1/dbs/db/halt", timeout=30)
    assert resp.status_code == 200
    assert resp.json()["pos"]["TXID"] == primary.pos("db").split("/")[0]
    w.execute("INSERT INTO t VALUES (300)")
    assert httpx.delete(primary.url + "/api/v1/dbs/db/halt", timeout=30).status_code == 200
    assert w.execute("SELECT sum(x) FROM t") == [[600]]


def test_halt_bad_requests(cluster: Cluster) -> None:
    primary, replica, _ = setup_pair(cluster, "delete")
    own = primary.get("/info").headers["Litefs-Id"]
    other = {"Litefs-Id": "0123456789ABCDEF"}
    resp = httpx.post(primary.url + "/halt", params={"name": "db"}, headers=other)
    assert (resp.status_code, resp.text) == (400, "invalid id\n")
    resp = httpx.post(primary.url + "/halt", params={"name": "db", "id": "x"}, headers=other)
    assert (resp.status_code, resp.text) == (400, "invalid id\n")
    resp = httpx.post(primary.url + "/halt", params={"name": "db", "id": "1"}, headers={"Litefs-Id": own})
    assert (resp.status_code, resp.text) == (400, "cannot remotely halt self\n")
    resp = httpx.delete(primary.url + "/halt", params={"name": "nope", "id": "1"}, headers=other)
    assert resp.status_code == 404
    resp = httpx.delete(primary.url + "/halt", params={"name": "db", "id": "1"}, headers=other)
    assert resp.status_code == 200  # idempotent
    resp = httpx.post(primary.url + "/tx", params={"name": "db", "lockID": "1"}, headers=other, content=b"x")
    assert resp.status_code == 409 and "halt lock not held" in resp.text
    resp = httpx.post(primary.url + "/tx", params={"name": "nope", "lockID": "1"}, headers=other)
    assert resp.status_code == 404
    resp = httpx.delete(replica.url + "/api/v1/dbs/nope/halt")
    assert resp.status_code == 404 and "database not found" in resp.json()["error"]

    # A real lock, then a /tx with the wrong lock ID and one that does not continue the position.
    resp = httpx.post(primary.url + "/halt", params={"name": "db", "id": "7"}, headers=other, timeout=30)
    assert resp.status_code == 200, resp.text
    assert resp.json()["id"] == 7
    again = httpx.post(primary.url + "/halt", params={"name": "db", "id": "7"}, headers=other, timeout=30)
    assert again.json() == resp.json()  # same ID: the same lock
    resp = httpx.post(primary.url + "/tx", params={"name": "db", "lockID": "8"}, headers=other, content=b"x")
    assert resp.status_code == 409 and "lock id mismatch" in resp.text
    resp = httpx.post(primary.url + "/tx", params={"name": "db", "lockID": "7"}, headers=other, content=b"x")
    assert resp.status_code == 400 and "invalid ltx" in resp.text
    assert (
        httpx.delete(primary.url + "/halt", params={"name": "db", "id": "7"}, headers=other).status_code
        == 200
    )
