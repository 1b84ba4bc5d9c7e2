"""Restarts, crashes and startup recovery of a single node (LiteFS §4.10, §12.2 single-node cases)."""

from __future__ import annotations

import os
import random
import threading
import time

import pytest

from litefs.fuse.mount import mount_entries
from litefs.ltx import Decoder
from litefs.testing import LiteFSNode

from .conftest import JOURNAL_MODES, SQLConn, SQLError, backing_checksum

pytestmark = pytest.mark.fuse


def series(n: int, expr: str) -> str:
    return (
        f"WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < {n}) SELECT {expr} FROM s"
    )


def db_file(node: LiteFSNode, db: str = "db") -> str:
    return os.path.join(node.data_dir, "dbs", db, "database")


def last_ltx(node: LiteFSNode, db: str = "db") -> str:
    return os.path.join(node.ltx_dir(db), node.ltx_files(db)[-1])


@pytest.fixture
def plain_node(tmp_path) -> LiteFSNode:
    """A node with uncompressed LTX files (so tests can damage page bytes precisely)."""
    n = LiteFSNode(tmp_path, config={"data": {"compress": False}, "strict-verify": True})
    try:
        yield n
    finally:
        n.stop()


def test_sigterm_unmounts_and_restart_keeps_position(plain_node: LiteFSNode, connect) -> None:
    node = plain_node.start()
    with SQLConn(node.path("db"), journal_mode="delete") as c:
        c.execute("CREATE TABLE t (x)")
        c.execute("INSERT INTO t VALUES (1)")
    pos = node.pos("db")
    assert node.stop() == 0
    assert mount_entries(node.mount_dir) == 0
    node.start()
    assert node.pos("db") == pos
    c = connect(node.path("db"))
    assert c.execute("SELECT x FROM t") == [[1]]
    c.execute("INSERT INTO t VALUES (2)")
    assert node.pos("db").startswith(f"{3:016x}/")


def test_stale_mount_after_sigkill_is_cleaned_up(plain_node: LiteFSNode) -> None:
    node = plain_node.start()
    node.kill()
    assert mount_entries(node.mount_dir) == 1  # the dead mount stays behind
    node.start()
    assert mount_entries(node.mount_dir) == 1  # replaced, not stacked
    assert node.info()["isPrimary"] is True


def test_corrupt_last_ltx_refuses_to_start(plain_node: LiteFSNode) -> None:
    node = plain_node.start()
    with SQLConn(node.path("db"), journal_mode="delete") as c:
        c.execute("CREATE TABLE t (x)")
        c.execute("INSERT INTO t VALUES (100)")
    node.stop()
    path = last_ltx(node)
    with open(path, "r+b") as f:
        f.seek(200)
        b = f.read(4)
        f.seek(200)
        f.write(bytes(x ^ 0xFF for x in b))
    node.start(wait=False)
    assert node.wait_exit() == 1
    assert "sync wal to ltx: validate ltx: close reader: file checksum mismatch" in node.log()


def test_damaged_page_in_last_ltx_is_repaired(plain_node: LiteFSNode, connect) -> None:
    node = plain_node.start()
    with SQLConn(node.path("db"), journal_mode="delete") as c:
        c.execute("CREATE TABLE t (x)")
        c.execute("INSERT INTO t VALUES (100)")
    pos = node.pos("db")
    node.stop()
    with open(last_ltx(node), "rb") as f:
        pages = [p for p, _ in Decoder(f).pages()]
    damaged = pages[-1]
    with open(db_file(node), "r+b") as f:
        f.seek((damaged - 1) * 4096 + 1000)
        f.write(b"\xde\xad\xbe\xef")
    node.start()
    assert node.pos("db") == pos
    c = connect(node.path("db"))
    assert c.execute("PRAGMA integrity_check") == [["ok"]]
    assert c.execute("SELECT x FROM t") == [[100]]


def test_damaged_page_outside_last_ltx_refuses_to_start(plain_node: LiteFSNode) -> None:
    node = plain_node.start()
    with SQLConn(node.path("db"), journal_mode="delete") as c:
        c.execute("CREATE TABLE t (x)")
        c.execute("CREATE TABLE u (y)")
        c.execute("INSERT INTO u " + series(100, "randomblob(100)"))
        c.execute("INSERT INTO t VALUES (1)")
    node.stop()
    with open(last_ltx(node), "rb") as f:
        in_last = {p for p, _ in Decoder(f).pages()}
    size = os.path.getsize(db_file(node)) // 4096
    victim = next(p for p in range(1, size + 1) if p not in in_last)
    with open(db_file(node), "r+b") as f:
        f.seek((victim - 1) * 4096 + 2000)
        f.write(b"\xde\xad\xbe\xef")
    node.start(wait=False)
    assert node.wait_exit() == 1
    log = node.log()
    assert "recover ltx: database checksum " in log
    assert f"on TXID {4:016x} does not match LTX post-apply checksum " in log


@pytest.mark.parametrize("mode", JOURNAL_MODES)
def test_uncommitted_spilled_tx_rolled_back_at_startup(plain_node: LiteFSNode, connect, mode: str) -> None:
    node = plain_node.start()
    c = SQLConn(node.path("db"), journal_mode=mode)
    c.execute("PRAGMA cache_size=10")
    c.execute("CREATE TABLE t (x)")
    c.execute("INSERT INTO t VALUES (1)")
    pos = node.pos("db")
    c.execute("BEGIN")
    c.execute("INSERT INTO t " + series(500, "randomblob(300)"))  # spills into the database file
    node.kill()
    c.proc.kill()
    c.close()
    node.start()
    assert node.pos("db") == pos
    r = connect(node.path("db"))
    assert r.execute("SELECT x FROM t") == [[1]]
    assert r.execute("PRAGMA integrity_check") == [["ok"]]
    assert node.pos("db").split("/")[1] == backing_checksum(node, "db")


@pytest.mark.parametrize("mode", JOURNAL_MODES)
def test_sigkill_during_commits_loses_nothing(tmp_path, mode: str) -> None:
    """Kill the node at random moments of a stream of commits; every acknowledged row survives."""
    node = LiteFSNode(tmp_path, config={"strict-verify": False})
    rng = random.Random(1234)
    acknowledged: list[int] = []
    try:
        node.start()
        with SQLConn(node.path("db"), journal_mode=mode) as c:
            c.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB)")
        next_id = 1
        for _ in range(6):
            c = SQLConn(node.path("db"), journal_mode=mode)
            c.execute("PRAGMA synchronous=FULL")
            killer = threading.Timer(rng.uniform(0.05, 0.4), node.kill)
            killer.start()
            try:
                deadline = time.monotonic() + 5
                while time.monotonic() < deadline:
                    try:
                        c.execute("INSERT INTO t VALUES (?, randomblob(?))", [next_id, rng.randint(10, 3000)])
                    except SQLError:
                        break
                    acknowledged.append(next_id)
                    next_id += 1
            finally:
                killer.join()
                c.proc.kill()
                c.close()
            node.start()
            with SQLConn(node.path("db")) as r:
                ids = {row[0] for row in r.execute("SELECT id FROM t")}
                assert r.execute("PRAGMA integrity_check") == [["ok"]]
            missing = [i for i in acknowledged if i not in ids]
            assert not missing, f"acknowledged rows lost: {missing[:10]}"
            assert node.pos("db").split("/")[1] == backing_checksum(node, "db")
            next_id = max(ids) + 1 if ids else 1
        assert len(acknowledged) > 6
    finally:
        node.stop()


def test_commit_failure_exits_99_and_restart_drops_the_tx(plain_node: LiteFSNode) -> None:
    """An LTX file that cannot be written is fatal (exit 99); SQLite saw an error, and after a
    restart the transaction is rolled back from its journal (LiteFS TestSingleNode_ErrCommitWAL)."""
    node = plain_node.start()
    c = SQLConn(node.path("db"), journal_mode="delete")
    c.execute("CREATE TABLE t (x)")
    c.execute("INSERT INTO t VALUES (1)")
    pos = node.pos("db")
    ltx = node.ltx_dir("db")
    os.rename(ltx, ltx + ".away")
    with open(ltx, "w") as f:  # a file where the LTX directory should be: the commit cannot write
        f.write("x")
    with pytest.raises(SQLError):
        c.execute("INSERT INTO t VALUES (2)")
    assert node.wait_exit() == 99
    c.proc.kill()
    c.close()
    os.unlink(ltx)
    os.rename(ltx + ".away", ltx)
    node.start()
    assert node.pos("db") == pos
    with SQLConn(node.path("db")) as r:
        assert r.execute("SELECT x FROM t") == [[1]]
        assert r.execute("PRAGMA integrity_check") == [["ok"]]


def test_ltx_file_left_under_a_spare_name_is_restored(plain_node: LiteFSNode, connect) -> None:
    """Rollback commits write into pre-made spare files and rename them without a directory sync
    (store/spares.py): after a crash the newest LTX file may still carry its spare name."""
    node = plain_node.start()
    with SQLConn(node.path("db"), journal_mode="truncate") as c:
        c.execute("CREATE TABLE t (x)")
        for i in range(5):
            c.execute("INSERT INTO t VALUES (?)", [i])
    pos = node.pos("db")
    assert node.stop() == 0
    ltx = node.ltx_dir("db")
    newest = last_ltx(node)
    older = os.path.join(ltx, node.ltx_files("db")[-3])
    os.rename(newest, os.path.join(ltx, ".spare-1"))  # the rename that did not reach the disk
    with open(older, "rb") as src, open(os.path.join(ltx, ".spare-2"), "wb") as dst:
        dst.write(src.read())  # an older transaction: must not come back
    with open(os.path.join(ltx, ".spare-3"), "wb") as f:
        f.write(b"LTX1 but not really")  # damaged: deleted
    open(os.path.join(ltx, ".spare-4"), "wb").close()  # empty: deleted
    node.start()
    assert node.pos("db") == pos
    assert os.path.exists(newest)
    assert not {".spare-1", ".spare-2", ".spare-3", ".spare-4"} & set(os.listdir(ltx))
    c = connect(node.path("db"))
    assert c.execute("SELECT count(*) FROM t") == [[5]]
    assert c.execute("PRAGMA integrity_check") == [["ok"]]
