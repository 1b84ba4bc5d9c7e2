"""HALT write forwarding between real ``litefs mount`` processes (LiteFS §7, TestMultiNode_Halt)."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import threading
import time

import httpx
import pytest

from litefs.client import halt as client_halt

from .conftest import Cluster, SQLConn, SQLError, same_pos, wait_until

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


def halt_gauge(node, db: str = "db") -> float:
    """``litefs_halt_lock_active{db=...}`` from the node's /metrics (metrics plugin)."""
    prefix = f'litefs_halt_lock_active{{db="{db}"}} '
    for line in node.get("/metrics").text.splitlines():
        if line.startswith(prefix):
            return float(line[len(prefix) :])
    raise AssertionError(f"no {prefix.strip()} sample on {node.name}")


@pytest.mark.parametrize("mode", MODES)
def test_api_halt_write_on_replica(cluster: Cluster, mode: str) -> None:
    primary, replica, w = setup_pair(cluster, mode)
    other = cluster.replica("other")  # a third node: the forwarded rows reach it too
    wait_until(lambda: same_pos(primary, other, "db"), what="second replica catch-up")
    r = cluster.connect(replica.path("db"))
    with pytest.raises(SQLError):
        r.execute("INSERT INTO t VALUES (1)")

    resp = httpx.post(replica.url + "/api/v1/dbs/db/halt", timeout=30)
    assert resp.status_code == 200, resp.text
    lock = resp.json()
    assert set(lock) == {"id", "pos", "expires"}
    assert lock["pos"]["TXID"] == replica.pos("db").split("/")[0]
    # Both nodes report the lock: the primary holds it for the replica, the replica holds it.
    assert halt_gauge(primary) == 1 and halt_gauge(replica) == 1
    r.execute("INSERT INTO t VALUES (200)")
    r.execute("INSERT INTO t VALUES (300)")
    resp = httpx.delete(replica.url + "/api/v1/dbs/db/halt", timeout=30)
    assert resp.status_code == 200, resp.text

    wait_until(lambda: same_pos(primary, replica, "db"), what="positions converge")
    wait_until(lambda: same_pos(primary, other, "db"), what="the third node converges")
    wait_until(lambda: halt_gauge(primary) == 0 and halt_gauge(replica) == 0, what="halt gauges back to 0")
    assert w.execute("SELECT sum(x) FROM t") == [[600]]
    assert r.execute("SELECT sum(x) FROM t") == [[600]]
    assert cluster.connect(other.path("db")).execute("SELECT sum(x) FROM t") == [[600]]
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
    # The extra FUSE worker of the lock-file open does not keep the nodes from stopping cleanly.
    r.close()
    w.close()
    assert replica.stop() == 0
    assert primary.stop() == 0


def test_lock_file_attributes(cluster: Cluster) -> None:
    primary, replica, _ = setup_pair(cluster, "delete")
    for node in (primary, replica):
        st = os.stat(node.path("db-lock"))
        assert oct(st.st_mode & 0o777) == oct(0o444) and st.st_size == 0
        assert "db-lock" not in os.listdir(node.mount_dir)
        with open(node.path("db-lock"), "rb") as f:
            assert f.read() == b""
    # On the primary opening it for writing (even with O_TRUNC) is a no-op; writes are EIO (LiteFS).
    fd = os.open(primary.path("db-lock"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    try:
        with pytest.raises(OSError) as info:
            os.write(fd, b"x")
        assert info.value.errno == errno.EIO
    finally:
        os.close(fd)


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


@pytest.mark.parametrize("mode", MODES)
def test_halt_rollback(cluster: Cluster, mode: str) -> None:
    """TestMultiNode_Halt/Rollback: a rolled-back transaction under HALT changes nothing anywhere."""
    primary, replica, w = setup_pair(cluster, mode)
    r = cluster.connect(replica.path("db"))
    with client_halt(replica.path("db")):
        r.execute("BEGIN")
        r.execute("INSERT INTO t VALUES (200)")
        r.execute("ROLLBACK")
        assert r.execute("SELECT sum(x) FROM t") == [[100]]
        r.execute("INSERT INTO t VALUES (300)")
    wait_until(lambda: same_pos(primary, replica, "db"), what="positions converge")
    assert w.execute("SELECT sum(x) FROM t") == [[400]]
    assert r.execute("SELECT sum(x) FROM t") == [[400]]


SPILL = (
    "WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < 400) "
    "INSERT INTO big SELECT randomblob(3000) FROM c"
)


@pytest.mark.parametrize("mode", MODES)
def test_halt_rollback_with_written_pages(cluster: Cluster, mode: str) -> None:
    """TestMultiNode_Halt/RollbackWithWrittenWAL: a transaction big enough to spill pages (to the WAL,
    or to the database file in rollback mode) is rolled back under HALT; the next one commits."""
    primary, replica, w = setup_pair(cluster, mode)
    w.execute("CREATE TABLE big (b)")
    wait_until(lambda: same_pos(primary, replica, "db"), what="replica catch-up")
    r = cluster.connect(replica.path("db"))
    r.execute("PRAGMA cache_size = 10")
    with client_halt(replica.path("db")):
        r.execute("BEGIN")
        r.execute(SPILL)
        assert r.execute("SELECT count(*) FROM big") == [[400]]
        r.execute("ROLLBACK")
        assert r.execute("SELECT count(*) FROM big") == [[0]]
        r.execute("INSERT INTO t VALUES (300)")
    wait_until(lambda: same_pos(primary, replica, "db"), what="positions converge")
    for conn in (w, r):
        assert conn.execute("SELECT sum(x) FROM t") == [[400]]
        assert conn.execute("SELECT count(*) FROM big") == [[0]]
        assert conn.execute("PRAGMA integrity_check") == [["ok"]]


@pytest.mark.parametrize("mode", MODES)
def test_halt_lost_while_replica_writes(cluster: Cluster, mode: str) -> None:
    """The primary drops the lock (as when it expires) while the replica still writes: the replica's
    commit fails cleanly, nothing is half-applied, and both nodes converge."""
    primary, replica, w = setup_pair(cluster, mode)
    r = cluster.connect(replica.path("db"))
    lock = httpx.post(replica.url + "/api/v1/dbs/db/halt", timeout=30).json()
    r.execute("INSERT INTO t VALUES (200)")
    wait_until(lambda: same_pos(primary, replica, "db"), what="first forwarded commit")
    replica_id = replica.get("/info").headers["Litefs-Id"]
    resp = httpx.delete(
        primary.url + "/halt", params={"name": "db", "id": str(lock["id"])}, headers={"Litefs-Id": replica_id}
    )
    assert resp.status_code == 200
    before = replica.pos("db")
    r.execute("BEGIN")
    r.execute("INSERT INTO t VALUES (400)")
    with pytest.raises(SQLError, match="disk I/O error|readonly"):
        r.execute("COMMIT")
    r.close()
    assert replica.pos("db") == before
    assert "primary refused transaction" in replica.log()
    # The primary writes again; the replica follows and has nothing of the failed transaction.
    w.execute("INSERT INTO t VALUES (1000)")
    wait_until(lambda: same_pos(primary, replica, "db"), what="positions converge")
    r2 = cluster.connect(replica.path("db"))
    assert w.execute("SELECT sum(x) FROM t") == [[1300]]
    assert r2.execute("SELECT sum(x) FROM t") == [[1300]]
    assert r2.execute("PRAGMA integrity_check") == [["ok"]]
    with pytest.raises(SQLError):
        r2.execute("INSERT INTO t VALUES (1)")


@pytest.mark.parametrize("mode", MODES)
def test_functional_both_nodes_write_under_halt(cluster: Cluster, mode: str) -> None:
    """TestFunctional_OK: both nodes write under HALT every 100 ms for a while, retention 2 s."""
    retention = {"data": {"retention": "2s", "retention-monitor-interval": "500ms"}}
    primary = cluster.primary(config=retention)
    w = cluster.connect(primary.path("db"), journal_mode=mode)
    w.execute("CREATE TABLE t (node, n)")
    replica = cluster.replica(config=retention)
    wait_until(lambda: same_pos(primary, replica, "db"), what="replica catch-up")
    errors: list[BaseException] = []
    done: dict[str, int] = {}

    def writer(node, label: str) -> None:
        conn = SQLConn(node.path("db"))
        try:
            conn.execute("PRAGMA busy_timeout = 20000")
            deadline = time.monotonic() + 10
            n = 0
            while time.monotonic() < deadline:
                with client_halt(node.path("db")):
                    conn.execute("INSERT INTO t VALUES (?, ?)", [label, n])
                n += 1
                time.sleep(0.1)
            done[label] = n
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)
        finally:
            conn.close()

    threads = [threading.Thread(target=writer, args=(n, n.name)) for n in (primary, replica)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    assert done["primary"] > 10 and done["replica"] > 10
    wait_until(lambda: same_pos(primary, replica, "db"), what="positions converge")
    r = cluster.connect(replica.path("db"))
    total = done["primary"] + done["replica"]
    for conn in (w, r):
        assert conn.execute("SELECT count(*) FROM t") == [[total]]
        assert conn.execute("SELECT count(*) FROM t WHERE node = 'replica'") == [[done["replica"]]]
    assert primary.pos("db") == replica.pos("db")
    # Page for page the same database (exports hold the committed pages, WAL frames included).
    exports = [node.get("/export", params={"name": "db"}).content for node in (primary, replica)]
    assert exports[0] == exports[1] and len(exports[0]) > 0
    # Retention kept pruning while the transactions came from both nodes.
    assert len(primary.ltx_files("db")) < total


def test_litefs_run_with_halt_lock_on(cluster: Cluster, litefs_bin: str) -> None:
    primary, replica, w = setup_pair(cluster, "delete")
    db = replica.path("db")
    out = subprocess.run(
        [
            litefs_bin,
            "run",
            "-with-halt-lock-on",
            db,
            "--",
            "sh",
            "-c",
            f"readlink /proc/self/fd/3 && sqlite3 {db} 'INSERT INTO t VALUES (200)'",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().endswith("db-lock")
    wait_until(lambda: same_pos(primary, replica, "db"), what="positions converge")
    assert w.execute("SELECT sum(x) FROM t") == [[300]]
    # Released when the command ended: the replica is read-only again.
    wait_until(lambda: httpx.get(replica.url + "/metrics").status_code == 200, what="metrics")
    failed = subprocess.run(["sqlite3", db, "INSERT INTO t VALUES (1)"], capture_output=True, text=True)
    assert failed.returncode != 0

    missing = subprocess.run(
        [litefs_bin, "run", "-with-halt-lock-on", replica.path("nope"), "--", "true"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert missing.returncode == 1 and "database does not exist" in missing.stderr
    plain = os.path.join(cluster.root, "plain.db")
    open(plain, "wb").close()
    notmount = subprocess.run(
        [litefs_bin, "run", "-with-halt-lock-on", plain, "--", "true"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert notmount.returncode == 1
    assert (
        "lock file not available, are you sure" in notmount.stderr and "is a LiteFS mount?" in notmount.stderr
    )


def test_halt_released_when_holder_dies(cluster: Cluster) -> None:
    """The kernel releases the lock file's handle of a killed process: the HALT goes with it."""
    primary, replica, w = setup_pair(cluster, "delete")
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import os, sys, time; fd = os.open(sys.argv[1], os.O_RDWR); print('held', flush=True); time.sleep(600)",
            replica.path("db-lock"),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        assert halt_gauge(replica) == 1 and halt_gauge(primary) == 1
    finally:
        holder.kill()
        holder.wait()
        if holder.stdout is not None:
            holder.stdout.close()
    wait_until(lambda: halt_gauge(primary) == 0 and halt_gauge(replica) == 0, what="halt released")
    w.execute("INSERT INTO t VALUES (200)")  # the primary's writers are free again
    wait_until(lambda: same_pos(primary, replica, "db"), what="positions converge")


@pytest.mark.parametrize("mode", MODES)
def test_halt_waits_for_the_replica_to_catch_up(cluster: Cluster, mode: str) -> None:
    """The lock is taken right after a primary commit: the open of ``<db>-lock`` returns only once
    the replica has applied it (the mount keeps serving that apply while the open waits)."""
    primary, replica, w = setup_pair(cluster, mode)
    r = cluster.connect(replica.path("db"))
    for _ in range(5):
        w.execute("INSERT INTO t VALUES (1)")
        with client_halt(replica.path("db")):
            assert replica.pos("db") == primary.pos("db")
            r.execute("INSERT INTO t VALUES (1000)")
    wait_until(lambda: same_pos(primary, replica, "db"), what="positions converge")
    assert w.execute("SELECT sum(x) FROM t") == [[5105]]
    assert r.execute("SELECT sum(x) FROM t") == [[5105]]
