"""Failover with a real lease service: nodes elect a primary through etcd, the primary is killed,
a candidate takes over, and the old primary rejoins as a replica and converges."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from litefs.testing import LiteFSNode
from litefs.testing_services import ConsulAgent, EtcdCluster, ServiceUnavailable

from .conftest import SQLConn, SQLError, wait_until

pytestmark = pytest.mark.services


@pytest.fixture(scope="module", params=["etcd", "consul"])
def service(request: pytest.FixtureRequest) -> Iterator[tuple[str, dict, float]]:
    """(lease type, its litefs.yml section, TTL) of a real lease service started for the module."""
    key = f"litefs-test/{uuid.uuid4().hex[:12]}"
    try:
        if request.param == "etcd":
            service = EtcdCluster(1).start()
            section, ttl = {"endpoints": service.endpoints, "key": "/" + key, "ttl": "2s"}, 2.0
        else:
            service = ConsulAgent().start()
            section, ttl = {"url": service.url, "key": key, "ttl": "10s", "lock-delay": "1s"}, 10.0
    except ServiceUnavailable as exc:
        pytest.skip(f"!!! {request.param.upper()} UNAVAILABLE -- failover tests SKIPPED: {exc}")
    try:
        yield request.param, section, ttl
    finally:
        service.stop()


@pytest.fixture
def backend(service: tuple[str, dict, float]) -> tuple[str, dict, float]:
    """The module's lease service with a key of this test's own (a cluster ID stays on a key)."""
    lease_type, section, ttl = service
    prefix = "/" if lease_type == "etcd" else ""
    return lease_type, {**section, "key": f"{prefix}litefs-test/{uuid.uuid4().hex[:12]}"}, ttl


def lease_node(
    root: Path, name: str, backend: tuple[str, dict, float], *, candidate: bool = True
) -> LiteFSNode:
    lease_type, section, _ = backend
    node = LiteFSNode(root, name=name, candidate=candidate)
    node.config["lease"] = {
        "type": lease_type,
        "candidate": candidate,
        "hostname": name,
        "advertise-url": node.url,
        "reconnect-delay": "100ms",
        lease_type: section,
    }
    return node


def sql(node: LiteFSNode, statement: str) -> str:
    out = subprocess.run(
        ["sqlite3", "-cmd", ".timeout 5000", node.path("db"), statement],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    if out.returncode != 0:
        raise OSError(out.stderr.strip())
    return out.stdout.strip()


def test_primary_killed_candidate_takes_over_and_old_primary_rejoins(tmp_path: Path, backend) -> None:
    ttl = backend[2]
    a = lease_node(tmp_path, "a", backend)
    b = lease_node(tmp_path, "b", backend)
    c = lease_node(tmp_path, "c", backend, candidate=False)
    try:
        a.start()
        wait_until(lambda: a.info()["isPrimary"], what="a to become primary")
        b.start()
        c.start()
        assert not b.info()["isPrimary"] and not c.info()["isPrimary"]
        sql(a, "CREATE TABLE t (x); INSERT INTO t VALUES (1)")
        wait_until(lambda: b.pos("db") == a.pos("db") == c.pos("db"), what="replicas to catch up")
        with pytest.raises(OSError, match="readonly"):
            sql(b, "INSERT INTO t VALUES (99)")

        killed_at = time.monotonic()
        a.kill()
        # Consul may invalidate a session up to 2 x TTL after its last renewal, then adds lock-delay.
        wait_until(lambda: b.info()["isPrimary"], timeout=ttl * 3, what="b to take over")
        wait_until(lambda: sql(b, "INSERT INTO t VALUES (2); SELECT count(*) FROM t") == "2", timeout=10)
        failover = time.monotonic() - killed_at
        assert failover < ttl * 2.5 + 2, failover
        print(f"{backend[0]}: kill of the primary to first write on the new primary: {failover:.1f}s")
        assert not c.info()["isPrimary"]  # the non-candidate never promotes
        wait_until(lambda: c.pos("db") == b.pos("db"), what="c to follow the new primary")
        assert read_primary(c) == "b"

        a.start()
        wait_until(lambda: a.pos("db") == b.pos("db"), what="old primary to converge")
        assert not a.info()["isPrimary"]
        assert sql(a, "SELECT group_concat(x) FROM t") == "1,2"
        for node in (a, b, c):
            assert sql(node, "PRAGMA integrity_check") == "ok"
    finally:
        for node in (a, b, c):
            node.stop()


def start_in_sync(a: LiteFSNode, b: LiteFSNode) -> None:
    """Start ``a`` (it becomes primary) then ``b``; write one row and wait until ``b`` has it."""
    a.start()
    wait_until(lambda: a.info()["isPrimary"], what="a to become primary")
    b.start()
    sql(a, "CREATE TABLE t (x); INSERT INTO t VALUES (1)")
    wait_until(lambda: b.pos("db") == a.pos("db"), what="b to catch up")


def read_primary(node: LiteFSNode) -> str:
    with open(node.path(".primary")) as f:
        return f.read().strip()


def test_handoff_and_promote_move_the_primary_at_once(tmp_path: Path, backend) -> None:
    a = lease_node(tmp_path, "a", backend)
    b = lease_node(tmp_path, "b", backend)
    try:
        start_in_sync(a, b)

        started = time.monotonic()
        resp = httpx.post(b.url + "/promote", timeout=30)
        assert resp.status_code == 200, resp.text
        took = time.monotonic() - started
        assert b.info()["isPrimary"] and not a.info()["isPrimary"]
        assert took < 3.0, took  # no TTL wait: the lease moved with the handoff
        print(f"{backend[0]}: handoff by POST /promote took {took * 1000:.0f} ms")
        sql(b, "INSERT INTO t VALUES (2)")
        wait_until(lambda: a.pos("db") == b.pos("db"), what="a to follow b")
        with pytest.raises(OSError, match="readonly"):
            sql(a, "INSERT INTO t VALUES (3)")

        # Promote errors: a non-primary cannot hand off; an unknown node is not connected.
        resp = httpx.post(a.url + "/handoff", params={"nodeID": f"{1:016X}"})
        assert (resp.status_code, resp.text) == (500, "cannot handoff: node is not currently primary\n")
        resp = httpx.post(b.url + "/handoff", params={"nodeID": f"{1:016X}"})
        assert (resp.status_code, resp.text) == (
            500,
            "cannot handoff: target node is not currently connected\n",
        )
        resp = httpx.post(b.url + "/handoff", params={"nodeID": "xyz"})
        assert (resp.status_code, resp.text) == (400, "invalid node id\n")
    finally:
        for node in (a, b):
            node.stop()


def test_auto_promotion(tmp_path: Path, backend) -> None:
    """``lease.promote`` happens before plugin services start (LiteFS order): the app that exec
    starts on the promoting node sees it as primary."""
    seen = tmp_path / "app-saw"
    a = lease_node(tmp_path, "a", backend)
    b = lease_node(tmp_path, "b", backend)
    b.config["lease"]["promote"] = True
    b.config["exec"] = (
        f'{sys.executable} -c "import os, time; '
        f"open('{seen}', 'w').write(os.environ['LITEFS_PRIMARY']); time.sleep(600)\""
    )
    try:
        a.start()
        wait_until(lambda: a.info()["isPrimary"], what="a to become primary")
        b.start()
        wait_until(lambda: b.info()["isPrimary"], timeout=15, what="b to promote itself")
        assert not a.info()["isPrimary"]
        wait_until(seen.exists, what="the app to start")
        assert seen.read_text() == "1"
    finally:
        for node in (a, b):
            node.stop()


def test_clean_shutdown_hands_over_quickly_and_flip_flop_keeps_data(tmp_path: Path, backend) -> None:
    a = lease_node(tmp_path, "a", backend)
    b = lease_node(tmp_path, "b", backend)
    try:
        a.start()
        wait_until(lambda: a.info()["isPrimary"], what="a to become primary")
        b.start()
        sql(a, "CREATE TABLE t (x)")
        # Flip-flop: move the primary back and forth with writes in between.
        primary, replica = a, b
        for i in range(4):
            sql(primary, f"INSERT INTO t VALUES ({i})")
            wait_until(lambda: replica.pos("db") == primary.pos("db"), what="catch up")  # noqa: B023
            resp = httpx.post(replica.url + "/promote", timeout=30)
            assert resp.status_code == 200, resp.text
            primary, replica = replica, primary
        wait_until(lambda: replica.pos("db") == primary.pos("db"), what="catch up")
        for node in (a, b):
            assert sql(node, "PRAGMA integrity_check") == "ok"
            assert sql(node, "SELECT group_concat(x) FROM t") == "0,1,2,3"

        # Forced re-election: a clean shutdown releases the lease, so the other candidate takes over
        # without waiting for the TTL.
        stopped_at = time.monotonic()
        assert primary.stop() == 0
        wait_until(lambda: replica.info()["isPrimary"], timeout=5, what="re-election")
        assert time.monotonic() - stopped_at < 5
    finally:
        for node in (a, b):
            node.stop()


def test_frozen_primary_never_writes_after_its_lease_expired(tmp_path: Path, backend) -> None:
    ttl = backend[2]
    a = lease_node(tmp_path, "a", backend)
    b = lease_node(tmp_path, "b", backend)
    try:
        start_in_sync(a, b)
        assert a.proc is not None
        a.proc.send_signal(signal.SIGSTOP)  # the whole node freezes: no renewals, no FUSE
        try:
            wait_until(lambda: b.info()["isPrimary"], timeout=ttl * 3, what="b to take over")
            sql(b, "INSERT INTO t VALUES (2)")
        finally:
            a.proc.send_signal(signal.SIGCONT)
        # The moment a runs again, its lease is known to be stale: a write is refused.
        with pytest.raises(OSError, match="readonly"):
            sql(a, "INSERT INTO t VALUES (666)")
        wait_until(lambda: a.pos("db") == b.pos("db"), timeout=ttl * 2, what="a to rejoin as a replica")
        assert sql(a, "SELECT group_concat(x) FROM t") == "1,2"
    finally:
        for node in (a, b):
            node.stop()


def test_api_v1_on_the_primary_lists_replicas_with_their_positions(tmp_path: Path, backend) -> None:
    a = lease_node(tmp_path, "a", backend)
    b = lease_node(tmp_path, "b", backend)
    try:
        start_in_sync(a, b)
        doc = a.get("/api/v1/dbs/db").json()
        txid, checksum = b.pos("db").split("/")
        assert doc["role"] == "primary"
        assert doc["replicas"] == [
            {
                "nodeID": doc["replicas"][0]["nodeID"],
                "hostname": "b",
                "txid": txid,
                "checksum": checksum,
                "lag": 0,
            }
        ]
        replica_doc = b.get("/api/v1/dbs/db").json()
        assert replica_doc["role"] == "replica"
        assert replica_doc["primary"] == {"hostname": "a", "advertiseURL": a.url}
        assert (b.get("/primary").text, a.get("/primary").text) == ("a\n", "a\n")
        assert httpx.post(b.url + "/promote", timeout=30).status_code == 200
        assert b.get("/primary").text == "b\n"
        wait_until(lambda: a.get("/primary").text == "b\n", what="a to learn the new primary")
    finally:
        for node in (a, b):
            node.stop()


def backing_wal_size(node: LiteFSNode) -> int:
    try:
        return os.path.getsize(os.path.join(node.data_dir, "dbs", "db", "wal"))
    except FileNotFoundError:
        return 0


def wal_writer(node: LiteFSNode) -> SQLConn:
    """A SQLite connection in WAL mode that never checkpoints: committed frames stay in the WAL."""
    conn = SQLConn(node.path("db"), journal_mode="wal")
    conn.execute("PRAGMA wal_autocheckpoint=0")
    return conn


def test_demoted_wal_primary_checkpoints_its_frames(tmp_path: Path, backend) -> None:
    """After a handoff the old primary's WAL frames (all replicated) go into its database file: its
    WAL is empty, the connection still open on it reads the new primary's writes."""
    a = lease_node(tmp_path, "a", backend)
    b = lease_node(tmp_path, "b", backend)
    conn = None
    try:
        a.start()
        wait_until(lambda: a.info()["isPrimary"], what="a to become primary")
        b.start()
        conn = wal_writer(a)
        conn.execute("CREATE TABLE t (x)")
        for i in range(5):
            conn.execute("INSERT INTO t VALUES (?)", [i])
        wait_until(lambda: b.pos("db") == a.pos("db"), what="b to catch up")
        assert backing_wal_size(a) > 32

        assert httpx.post(b.url + "/promote", timeout=30).status_code == 200
        wait_until(lambda: "recovered after role change" in a.log(), what="a to recover")
        assert "checkpointed" in a.log()
        assert backing_wal_size(a) == 0
        sql(b, "INSERT INTO t VALUES (5)")
        wait_until(lambda: a.pos("db") == b.pos("db"), what="a to follow b")
        assert conn.execute("SELECT group_concat(x) FROM t") == [["0,1,2,3,4,5"]]
        with pytest.raises(SQLError):
            conn.execute("INSERT INTO t VALUES (666)")
        assert conn.execute("PRAGMA integrity_check") == [["ok"]]
        assert "replica WAL holds frames" not in a.log()
    finally:
        if conn is not None:
            conn.close()
        for node in (a, b):
            node.stop()


def test_demoted_wal_primary_discards_frames_the_new_primary_lacks(tmp_path: Path, backend) -> None:
    """The old primary committed transactions (in its WAL and LTX files) that never reached the new
    primary: on demotion they are checkpointed locally, then the new primary's snapshot replaces them."""
    ttl = backend[2]
    a = lease_node(tmp_path, "a", backend)
    b = lease_node(tmp_path, "b", backend)
    conn = None
    try:
        a.start()
        wait_until(lambda: a.info()["isPrimary"], what="a to become primary")
        b.start()
        conn = wal_writer(a)
        conn.execute("CREATE TABLE t (x)")
        conn.execute("INSERT INTO t VALUES (1)")
        wait_until(lambda: b.pos("db") == a.pos("db"), what="b to catch up")
        assert b.stop() == 0
        for i in range(100, 104):  # b never gets these
            conn.execute("INSERT INTO t VALUES (?)", [i])
        assert a.proc is not None
        a.proc.send_signal(signal.SIGSTOP)
        try:
            b.start(wait=False)
            b.wait_ready(timeout=ttl * 3 + 15)
            wait_until(lambda: b.info()["isPrimary"], timeout=ttl * 3 + 10, what="b to take over")
            sql(b, "INSERT INTO t VALUES (2)")
        finally:
            a.proc.send_signal(signal.SIGCONT)
        wait_until(lambda: a.pos("db") == b.pos("db"), timeout=ttl * 2 + 10, what="a to converge to b")
        assert "checkpointed" in a.log()
        # The position is visible a moment before the line is logged.
        wait_until(lambda: "applied snapshot" in a.log(), what="a's snapshot log line")
        assert backing_wal_size(a) == 0
        assert conn.execute("SELECT group_concat(x) FROM t") == [["1,2"]]
        assert conn.execute("PRAGMA integrity_check") == [["ok"]]
        assert sql(a, "SELECT group_concat(x) FROM t") == "1,2"
    finally:
        if conn is not None:
            conn.close()
        for node in (a, b):
            node.stop()


def test_etcd_watch_tells_replicas_of_a_new_primary(tmp_path: Path, backend) -> None:
    """With etcd the replicas watch the lease key: a handoff and a released lease reach a
    non-candidate replica as watch events (in its log), and it follows the new primary."""
    if backend[0] != "etcd":
        pytest.skip("the lease watch is an etcd feature")
    a = lease_node(tmp_path, "a", backend)
    b = lease_node(tmp_path, "b", backend)
    c = lease_node(tmp_path, "c", backend, candidate=False)
    try:
        start_in_sync(a, b)
        c.start()
        wait_until(lambda: c.pos("db") == a.pos("db"), what="c to catch up")
        assert "lease watch: primary is now a" in c.log()

        assert httpx.post(b.url + "/promote", timeout=30).status_code == 200
        wait_until(lambda: "lease watch: primary is now b" in c.log(), what="c to see the handoff")
        sql(b, "INSERT INTO t VALUES (2)")
        wait_until(lambda: c.pos("db") == b.pos("db"), what="c to follow b")
        assert read_primary(c) == "b"

        assert b.stop() == 0  # releases the lease: the key is deleted
        wait_until(lambda: "lease watch: primary is now nobody" in c.log(), what="c to see the release")
    finally:
        for node in (a, b, c):
            node.stop()


def test_demoted_primary_rolls_back_a_hot_journal(tmp_path: Path, backend) -> None:
    """A write transaction that spilled pages into the database file is cut off by a handoff: its
    rollback is refused on the (now) replica, so the journal stays hot. Recovery after the role
    change rolls it back, and the old primary then follows the new one with consistent data."""
    a = lease_node(tmp_path, "a", backend)
    b = lease_node(tmp_path, "b", backend)
    writer = None
    try:
        start_in_sync(a, b)
        writer = SQLConn(a.path("db"))
        writer.execute("PRAGMA cache_size=5")  # spill to the database file mid-transaction
        writer.execute("BEGIN")
        for _ in range(40):
            writer.execute("INSERT INTO t VALUES (randomblob(3000))")
        journal = os.path.join(a.data_dir, "dbs", "db", "journal")
        assert os.path.getsize(journal) > 0

        assert httpx.post(b.url + "/promote", timeout=30).status_code == 200
        try:
            writer.execute("ROLLBACK")  # its writes back into the database file are refused now
        except SQLError:
            pass
        writer.close()
        writer = None
        wait_until(lambda: "rolled back a hot journal" in a.log(), what="a to roll back the journal")
        assert not os.path.exists(journal)
        sql(b, "INSERT INTO t VALUES (2)")
        wait_until(lambda: a.pos("db") == b.pos("db"), what="a to follow b")
        assert sql(a, "SELECT group_concat(x) FROM t") == "1,2"
        assert sql(a, "PRAGMA integrity_check") == "ok"
    finally:
        if writer is not None:
            writer.close()
        for node in (a, b):
            node.stop()
