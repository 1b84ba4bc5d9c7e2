"""WAL mode: startup recovery from the WAL, lost LTX files rebuilt, crashes (LiteFS §4.10 step 4, further)."""

from __future__ import annotations

import os
import random
import threading
import time

import pytest

from litefs.ltx import Decoder
from litefs.sqlite.wal import WALHeader, scan_wal_transactions
from litefs.testing import LiteFSNode
from litefs.testing_services import wait_until

from .conftest import SQLConn, SQLError
from .test_wal import assert_consistent, checksum_of, export_bytes, wal_path

pytestmark = pytest.mark.fuse


@pytest.fixture
def wal_node(tmp_path) -> LiteFSNode:
    n = LiteFSNode(tmp_path, config={"strict-verify": True})
    try:
        yield n
    finally:
        n.stop()


def post_checksums(node: LiteFSNode) -> dict[int, int]:
    out = {}
    for name in node.ltx_files("db"):
        with open(os.path.join(node.ltx_dir("db"), name), "rb") as f:
            dec = Decoder(f)
            out[dec.header.max_txid] = dec.verify().post_apply_checksum
    return out


def write_and_abandon(node: LiteFSNode, n: int) -> SQLConn:
    """Commit n inserts in WAL mode (auto-checkpoint off) and SIGKILL the SQLite process: the WAL stays."""
    c = SQLConn(node.path("db"), journal_mode="wal")
    c.execute("PRAGMA wal_autocheckpoint=0")
    c.execute("CREATE TABLE IF NOT EXISTS t (x)")
    for i in range(n):
        c.execute("INSERT INTO t VALUES (?)", [i])
    c.proc.kill()
    c.close()
    return c


def test_restart_with_commits_only_in_the_wal(wal_node: LiteFSNode, connect) -> None:
    node = wal_node.start()
    write_and_abandon(node, 10)
    pos = node.pos("db")
    assert os.path.getsize(wal_path(node)) > 32
    assert node.stop() == 0
    node.start()
    assert node.pos("db") == pos
    assert not os.path.exists(wal_path(node))  # checkpointed into the database file at startup
    c = connect(node.path("db"))
    assert c.execute("SELECT count(*) FROM t") == [[10]]
    assert_consistent(node, c)
    c.execute("INSERT INTO t VALUES (1)")
    assert node.pos("db").startswith(f"{int(pos[:16], 16) + 1:016x}/")


@pytest.mark.parametrize("lost", [1, 3])
def test_lost_ltx_files_are_rebuilt_from_the_wal(wal_node: LiteFSNode, connect, lost: int) -> None:
    """LTX files of WAL commits are not fsynced: after a power loss recovery rebuilds them from the WAL."""
    node = wal_node.start()
    write_and_abandon(node, 8)
    pos = node.pos("db")
    expected = post_checksums(node)
    node.kill()
    names = node.ltx_files("db")
    for name in names[-lost:]:
        os.unlink(os.path.join(node.ltx_dir("db"), name))
    node.start()
    assert node.pos("db") == pos
    assert node.ltx_files("db") == names
    assert post_checksums(node) == expected
    c = connect(node.path("db"))
    assert c.execute("SELECT count(*) FROM t") == [[8]]
    assert_consistent(node, c)


def test_torn_or_invalid_wal_frames_are_dropped(wal_node: LiteFSNode, connect) -> None:
    node = wal_node.start()
    write_and_abandon(node, 3)
    pos = node.pos("db")
    node.kill()
    path = wal_path(node)
    size = os.path.getsize(path)
    with open(path, "r+b") as f:
        # A copy of the last frame with its commit field set but a broken checksum, then a torn frame.
        f.seek(size - (4096 + 24))
        frame = bytearray(f.read(4096 + 24))
        frame[20] ^= 0xFF
        f.seek(size)
        f.write(frame)
        f.write(frame[:100])
    node.start()
    assert node.pos("db") == pos
    c = connect(node.path("db"))
    assert c.execute("SELECT count(*) FROM t") == [[3]]
    assert_consistent(node, c)


def test_ltx_write_failure_exits_99_and_recovery_keeps_the_acknowledged_tx(wal_node: LiteFSNode) -> None:
    """LiteFS TestSingleNode_ErrCommitWAL, adapted: WAL-mode LTX files are written in the background.

    LiteFS fails the commit whose LTX file cannot be written. Here that file is written just after
    SQLite was told the transaction committed (it is safe in the WAL), so the insert succeeds, the
    node then stops with exit code 99 instead of running without the file, and the restart writes
    the missing LTX file from the WAL: the acknowledged row is kept, the position matches it.
    """
    node = wal_node.start()
    c = SQLConn(node.path("db"), journal_mode="wal")
    c.execute("PRAGMA synchronous=FULL")
    c.execute("CREATE TABLE t (x)")
    c.execute("INSERT INTO t VALUES (1)")
    txid = int(node.pos("db").split("/")[0], 16)
    ltx = node.ltx_dir("db")
    os.rename(ltx, ltx + ".away")
    with open(ltx, "w") as f:
        f.write("x")
    try:
        c.execute("INSERT INTO t VALUES (2)")
    except SQLError:
        pass  # the node may already be going away when SQLite touches the WAL index afterwards
    assert node.wait_exit() == 99
    assert "cannot write" in node.log()
    c.proc.kill()
    c.close()
    os.unlink(ltx)
    os.rename(ltx + ".away", ltx)
    node.start()
    with SQLConn(node.path("db")) as r:
        assert r.execute("SELECT x FROM t") == [[1], [2]]
        assert r.execute("PRAGMA integrity_check") == [["ok"]]
    assert node.pos("db").startswith(f"{txid + 1:016x}/")
    assert node.ltx_files("db")[-1] == f"{txid + 1:016x}-{txid + 1:016x}.ltx"


def test_a_killed_ltx_writer_process_stops_the_node_and_loses_nothing(wal_node: LiteFSNode) -> None:
    """The node's LTX writer process dies: the node exits 99, the restart keeps every acknowledged row."""
    node = wal_node.start()
    (writer_pid,) = node.child_pids("ltxwriter_process")
    c = SQLConn(node.path("db"), journal_mode="wal")
    c.execute("PRAGMA synchronous=FULL")
    c.execute("CREATE TABLE t (x)")
    acknowledged = []
    for i in range(5):
        c.execute("INSERT INTO t VALUES (?)", [i])
        acknowledged.append(i)
    os.kill(writer_pid, 9)
    try:
        for i in range(5, 50):
            c.execute("INSERT INTO t VALUES (?)", [i])
            acknowledged.append(i)
    except SQLError:
        pass  # the node went away under SQLite
    assert node.wait_exit() == 99
    assert "writer process exited" in node.log()
    c.proc.kill()
    c.close()
    node.start()
    with SQLConn(node.path("db")) as r:
        rows = [row[0] for row in r.execute("SELECT x FROM t ORDER BY x")]
        assert rows[: len(acknowledged)] == acknowledged
        assert_consistent(node, r)


def test_a_wal_syncer_process_killed_between_commits_only_ends_early_syncs(wal_node: LiteFSNode) -> None:
    """The process that runs SQLite's early WAL fdatasyncs (store/syncproc.py) dies while no sync is
    in flight: the node keeps running, syncs the plain way, and every acknowledged row survives a
    restart. (One that dies with a sync in flight stops the node: tests/unit/test_syncproc.py and
    test_wal_sync.py.)"""
    node = wal_node.start()
    if not node.child_pids("syncproc_process"):
        pytest.skip("one CPU: the node uses Linux AIO, not the syncer process")
    (syncer_pid,) = node.child_pids("syncproc_process")
    c = SQLConn(node.path("db"), journal_mode="wal")
    c.execute("PRAGMA synchronous=FULL")
    c.execute("CREATE TABLE t (x)")
    for i in range(20):
        c.execute("INSERT INTO t VALUES (?)", [i])
    os.kill(syncer_pid, 9)
    wait_until(lambda: _state(syncer_pid) in ("Z", None), 10, "the syncer process to exit")
    for i in range(20, 60):
        c.execute("INSERT INTO t VALUES (?)", [i])
    assert node.proc is not None and node.proc.poll() is None
    assert "WAL syncer process lost" in node.log()
    c.close()
    node.stop()
    node.start()
    with SQLConn(node.path("db")) as r:
        assert [row[0] for row in r.execute("SELECT x FROM t ORDER BY x")] == list(range(60))
        assert_consistent(node, r)


def _state(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return None


@pytest.mark.parametrize("sync", ["FULL", "NORMAL"])
def test_sigkill_during_wal_commits(tmp_path, sync: str) -> None:
    """Kill the node at random moments of a stream of WAL commits (with checkpoints in between).

    Under FULL no acknowledged row may be lost; under both the position must equal the content's
    checksum after every restart and integrity_check must pass.
    """
    node = LiteFSNode(tmp_path, config={"strict-verify": False})
    rng = random.Random(4321 if sync == "FULL" else 99)
    acknowledged: list[int] = []
    try:
        node.start()
        with SQLConn(node.path("db"), journal_mode="wal") as c:
            c.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB)")
        next_id = 1
        for _ in range(6):
            c = SQLConn(node.path("db"))
            c.execute(f"PRAGMA synchronous={sync}")
            c.execute(f"PRAGMA wal_autocheckpoint={rng.choice([0, 20, 100])}")
            killer = threading.Timer(rng.uniform(0.1, 0.6), node.kill)
            killer.start()
            try:
                deadline = time.monotonic() + 5
                while time.monotonic() < deadline:
                    try:
                        c.execute("INSERT INTO t VALUES (?, randomblob(?))", [next_id, rng.randint(10, 6000)])
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
                data = export_bytes(node)
                assert node.pos("db").split("/")[1] == checksum_of(data, 4096)
            missing = [i for i in acknowledged if i not in ids]
            assert not missing, f"acknowledged rows lost: {missing[:10]}"
            next_id = max(ids) + 1 if ids else 1
        assert len(acknowledged) > 20
    finally:
        node.stop()


@pytest.mark.parametrize("kept", [0, 4])
def test_wal_frames_lost_but_ltx_files_kept(wal_node: LiteFSNode, connect, kept: int) -> None:
    """Power loss under synchronous=NORMAL: the newest WAL frames never reached the disk, their LTX
    files did. Startup re-applies every LTX file past the content (checked), nothing is lost."""
    node = wal_node.start()
    write_and_abandon(node, 10)
    pos = node.pos("db")
    node.wait_ltx_written()  # the premise: every LTX file reached the disk, only WAL frames did not
    node.kill()
    path = wal_path(node)
    with open(path, "rb") as f:
        hdr = WALHeader.parse(f.read(32))
        txns = scan_wal_transactions(f, header=hdr)
    assert len(txns) == 11  # CREATE TABLE + 10 inserts
    # Cut the WAL back to the end of an earlier commit frame (or to its header alone).
    os.truncate(path, txns[kept - 1].end_offset if kept else 32)
    names = node.ltx_files("db")
    node.start()
    assert node.pos("db") == pos
    assert node.ltx_files("db") == names
    assert "re-applying" in node.log()
    c = connect(node.path("db"))
    assert c.execute("SELECT count(*) FROM t") == [[10]]
    assert c.execute("SELECT x FROM t ORDER BY rowid") == [[i] for i in range(10)]
    assert_consistent(node, c)
    c.execute("INSERT INTO t VALUES (10)")
    assert node.pos("db").startswith(f"{int(pos[:16], 16) + 1:016x}/")
