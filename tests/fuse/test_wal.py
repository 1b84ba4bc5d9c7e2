"""Single node in WAL mode: commits read from the WAL, checkpoints, readers and writers in other processes."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import tempfile
import textwrap
import time

import httpx
import pytest

from litefs.ltx import Decoder, database_checksum
from litefs.sqlite.wal import WALHeader
from litefs.testing import LiteFSNode

from .conftest import SQLConn

pytestmark = pytest.mark.fuse


def series(n: int, expr: str) -> str:
    return (
        f"WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < {n}) SELECT {expr} FROM s"
    )


def txid(node: LiteFSNode, db: str = "db") -> int:
    return int(node.pos(db).split("/")[0], 16)


def export_bytes(node: LiteFSNode, db: str = "db") -> bytes:
    r = node.get(f"/export?name={db}")
    assert r.status_code == 200, r.text
    return r.content


def checksum_of(data: bytes, page_size: int) -> str:
    with tempfile.NamedTemporaryFile() as f:
        f.write(data)
        f.flush()
        return f"{database_checksum(f.name, page_size, len(data) // page_size):016x}"


def assert_consistent(node: LiteFSNode, conn: SQLConn, db: str = "db") -> None:
    """integrity_check ok, and -pos == the checksum of the exported (logical) database."""
    assert conn.execute("PRAGMA integrity_check") == [["ok"]]
    data = export_bytes(node, db)
    page_size = struct.unpack(">H", data[16:18])[0]
    page_size = 65536 if page_size == 1 else page_size
    assert node.pos(db).split("/")[1] == checksum_of(data, page_size)


def ltx_headers(node: LiteFSNode, db: str = "db") -> list:
    out = []
    for name in node.ltx_files(db):
        with open(os.path.join(node.ltx_dir(db), name), "rb") as f:
            dec = Decoder(f)
            dec.verify()
            out.append(dec.header)
    return out


def wal_path(node: LiteFSNode, db: str = "db") -> str:
    return os.path.join(node.data_dir, "dbs", db, "wal")


def test_golden_positions(node: LiteFSNode, connect) -> None:
    """LiteFS's WAL golden positions (4 KB pages, content written by SQLite 3.39.2: byte 96 patched)."""
    c = connect(node.path("db"), journal_mode="wal")
    assert txid(node) == 1  # switching an empty database to WAL is a rollback-journal transaction
    golden = {2: "95af056ca07d8ad1", 3: "f0f79787d8602c29"}
    for i, sql in ((2, "CREATE TABLE t (x)"), (3, "INSERT INTO t VALUES (100)")):
        c.execute(sql)
        assert node.pos("db").startswith(f"{i:016x}/")
        data = bytearray(export_bytes(node))
        data[96:100] = struct.pack(">I", 3039002)
        assert checksum_of(bytes(data), 4096) == golden[i]
        assert_consistent(node, c)
    assert os.path.getsize(wal_path(node)) > 0  # the commits are still only in the WAL


@pytest.mark.parametrize("page_size", [512, 4096])
def test_ltx_headers_carry_wal_position(node: LiteFSNode, connect, page_size: int) -> None:
    c = connect(node.path("db"), page_size=page_size, journal_mode="wal")
    c.execute("CREATE TABLE t (x)")
    for i in range(5):
        c.execute("INSERT INTO t VALUES (?)", [i])
    with open(wal_path(node), "rb") as f:
        wal = WALHeader.parse(f.read(32))
    headers = ltx_headers(node)
    assert [h.max_txid for h in headers] == list(range(1, 8))
    assert headers[0].wal_size == 0  # the journal-mode switch
    expected_offset = 32
    for h in headers[1:]:
        assert (h.wal_salt1, h.wal_salt2) == wal.salts
        assert h.wal_offset == expected_offset and h.wal_size % (page_size + 24) == 0
        expected_offset += h.wal_size
        assert h.page_size == page_size
    assert os.path.getsize(wal_path(node)) == expected_offset
    # A one-row insert is one frame: one page in the LTX file.
    with open(os.path.join(node.ltx_dir("db"), node.ltx_files("db")[-1]), "rb") as f:
        assert len(list(Decoder(f).pages())) == 1
    assert c.execute("SELECT count(*) FROM t") == [[5]]
    assert_consistent(node, c)


@pytest.mark.parametrize("mode", ["PASSIVE", "FULL", "RESTART", "TRUNCATE"])
def test_checkpoint_modes(node: LiteFSNode, connect, mode: str) -> None:
    c = connect(node.path("db"), journal_mode="wal")
    c.execute("PRAGMA wal_autocheckpoint=0")
    c.execute("CREATE TABLE t (x)")
    c.execute("INSERT INTO t " + series(100, "randomblob(100)"))
    pos = node.pos("db")
    busy, log_frames, ckpt = c.execute(f"PRAGMA wal_checkpoint({mode})")[0]
    assert busy == 0 and log_frames == ckpt
    assert node.pos("db") == pos  # a checkpoint copies pages, it does not change the database
    assert_consistent(node, c)
    if mode == "TRUNCATE":
        assert os.path.getsize(wal_path(node)) == 0
    with open(wal_path(node), "rb") as f:
        before = f.read(32)
    c.execute("INSERT INTO t VALUES (1)")
    c.execute("UPDATE t SET x = 2 WHERE rowid = 1")
    assert txid(node) == int(pos.split("/")[0], 16) + 2
    if mode in ("RESTART", "TRUNCATE"):
        with open(wal_path(node), "rb") as f:
            assert f.read(32) != before  # a new WAL generation (new salts)
        last = ltx_headers(node)[-2]
        assert last.wal_offset == 32
    assert c.execute("SELECT count(*) FROM t") == [[101]]
    assert_consistent(node, c)


def test_autocheckpoint_and_journal_size_limit(node: LiteFSNode, connect) -> None:
    c = connect(node.path("db"), journal_mode="wal")
    c.execute("PRAGMA wal_autocheckpoint=5")
    c.execute("PRAGMA journal_size_limit=0")
    c.execute("CREATE TABLE t (x)")
    salts = set()
    for _ in range(60):
        c.execute("INSERT INTO t VALUES (randomblob(700))")
        if os.path.getsize(wal_path(node)) >= 32:
            with open(wal_path(node), "rb") as f:
                salts.add(f.read(32)[16:24])
    assert len(salts) > 3  # the WAL restarted several times
    assert txid(node) == 62
    headers = ltx_headers(node)
    assert len({(h.wal_salt1, h.wal_salt2) for h in headers if h.wal_size}) > 3
    assert c.execute("SELECT count(*) FROM t") == [[60]]
    assert_consistent(node, c)


def test_switch_between_delete_and_wal(node: LiteFSNode, connect) -> None:
    c = connect(node.path("db"), journal_mode="delete")
    c.execute("CREATE TABLE t (x)")
    n = 0
    for mode in ("wal", "delete", "wal", "truncate", "wal"):
        assert c.execute(f"PRAGMA journal_mode={mode}") == [[mode]]
        for _ in range(3):
            c.execute("INSERT INTO t VALUES (?)", [n])
            n += 1
        assert_consistent(node, c)
        if mode != "wal":
            assert not os.path.exists(wal_path(node))
    assert c.execute("SELECT count(*) FROM t") == [[n]]
    # The TXIDs have no gaps: one LTX file per transaction.
    assert [h.max_txid for h in ltx_headers(node)] == list(range(1, txid(node) + 1))
    c.close()
    r = SQLConn(node.path("db"))
    try:
        assert r.execute("SELECT count(*) FROM t") == [[n]]
    finally:
        r.close()


def test_exclusive_locking_mode(node: LiteFSNode, connect) -> None:
    """locking_mode=EXCLUSIVE keeps the WAL index in heap memory; commits still come from the WAL."""
    c = connect(node.path("db"))
    c.execute("PRAGMA locking_mode=EXCLUSIVE")
    assert c.execute("PRAGMA journal_mode=wal") == [["wal"]]
    c.execute("CREATE TABLE t (x)")
    for i in range(20):
        c.execute("INSERT INTO t VALUES (?)", [i])
    assert not os.path.exists(node.path("db-shm"))
    assert txid(node) == 22
    assert c.execute("PRAGMA integrity_check") == [["ok"]]
    pos = node.pos("db")
    c.close()  # the exclusive lock keeps every other reader out, /export included
    assert node.pos("db") == pos
    assert pos.split("/")[1] == checksum_of(export_bytes(node), 4096)


def test_vacuum_shrinks_and_spilled_transactions(node: LiteFSNode, connect) -> None:
    c = connect(node.path("db"), journal_mode="wal")
    c.execute("PRAGMA cache_size=10")  # pages spill into the WAL mid-transaction and are rewritten in place
    c.execute("CREATE TABLE t (x)")
    start = txid(node)
    c.execute("INSERT INTO t " + series(400, "randomblob(300)"))
    c.execute("UPDATE t SET x = randomblob(300)")
    assert txid(node) == start + 2
    assert_consistent(node, c)
    # A rolled-back transaction that spilled frames into the WAL makes no LTX file.
    pos = node.pos("db")
    c.execute("BEGIN")
    c.execute("INSERT INTO t " + series(400, "randomblob(300)"))
    c.execute("ROLLBACK")
    assert node.pos("db") == pos
    c.execute("INSERT INTO t VALUES (1)")
    assert_consistent(node, c)
    c.execute("DELETE FROM t WHERE rowid > 10")
    c.execute("VACUUM")
    pages = c.execute("PRAGMA page_count")[0][0]
    assert ltx_headers(node)[-1].commit == pages
    assert_consistent(node, c)
    c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    assert os.path.getsize(node.path("db")) == pages * 4096
    assert_consistent(node, c)


def test_events_stream_with_wal(node: LiteFSNode, connect) -> None:
    with httpx.stream("GET", node.url + "/events", timeout=10) as r:
        lines = r.iter_lines()
        assert json.loads(next(lines))["type"] == "init"
        c = connect(node.path("db"), journal_mode="wal")
        c.execute("CREATE TABLE t (x)")
        c.execute("INSERT INTO t VALUES (1)")
        events = [json.loads(next(lines)) for _ in range(3)]
    assert [e["type"] for e in events] == ["tx"] * 3  # WAL mode has one extra initial tx
    assert [e["data"]["txID"] for e in events] == [f"{i:016x}" for i in (1, 2, 3)]
    assert node.pos("db") == f"{events[2]['data']['txID']}/{events[2]['data']['postApplyChecksum']}"


BANK = textwrap.dedent(
    """
    import sqlite3, sys, time
    path, role, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
    deadline = time.monotonic() + seconds
    def conn():
        c = sqlite3.connect(path, isolation_level=None, timeout=10)
        c.execute("PRAGMA busy_timeout=10000")
        return c
    if role == "writer":
        import random
        c = conn(); n = 0
        while time.monotonic() < deadline:
            a, b = random.randrange(100), random.randrange(100)
            c.execute("BEGIN IMMEDIATE")
            c.execute("UPDATE acct SET bal = bal - 7 WHERE id = ?", (a,))
            c.execute("UPDATE acct SET bal = bal + 7 WHERE id = ?", (b,))
            c.execute("UPDATE counter SET n = n + 1")
            c.execute("COMMIT")
            n += 1
        print(n)
    else:
        c = conn(); reads = 0; last = -1; bad = 0
        while time.monotonic() < deadline + 1.0:
            if role == "reconnect":
                c.close(); c = conn()
            c.execute("BEGIN")
            total = c.execute("SELECT sum(bal) FROM acct").fetchone()[0]
            n = c.execute("SELECT n FROM counter").fetchone()[0]
            c.execute("COMMIT")
            if total != 100000 or n < last:
                bad += 1
            last = n; reads += 1
        print(reads, bad, last)
    """
)


def test_readers_in_other_processes_never_see_a_torn_commit(node: LiteFSNode, connect, tmp_path) -> None:
    c = connect(node.path("db"), journal_mode="wal")
    c.execute("CREATE TABLE acct (id INTEGER PRIMARY KEY, bal INTEGER)")
    c.execute("CREATE TABLE counter (n INTEGER)")
    c.execute("INSERT INTO counter VALUES (0)")
    c.execute("INSERT INTO acct " + series(100, "i - 1, 1000"))
    c.close()
    script = tmp_path / "bank.py"
    script.write_text(BANK)
    procs = {
        role: subprocess.Popen(
            [sys.executable, str(script), node.path("db"), role, "3"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for role in ("writer", "persistent", "reconnect")
    }
    try:
        out = {role: p.communicate(timeout=60) for role, p in procs.items()}
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.kill()
                p.wait()
    for role, (_stdout, stderr) in out.items():
        assert procs[role].returncode == 0, f"{role}: {stderr}"
    writes = int(out["writer"][0])
    assert writes > 50
    for role in ("persistent", "reconnect"):
        reads, bad, last = map(int, out[role][0].split())
        assert bad == 0 and reads > 10
        assert last == writes  # every reader saw the final commit
    r = connect(node.path("db"))
    assert r.execute("SELECT n FROM counter") == [[writes]]
    assert_consistent(node, r)


def test_two_writer_processes_take_turns(node: LiteFSNode, connect, tmp_path) -> None:
    c = connect(node.path("db"), journal_mode="wal")
    c.execute("CREATE TABLE t (who TEXT, i INTEGER)")
    start = txid(node)
    script = tmp_path / "writer.py"
    script.write_text(
        textwrap.dedent(
            """
            import sqlite3, sys
            c = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=20)
            for i in range(int(sys.argv[3])):
                c.execute("INSERT INTO t VALUES (?, ?)", (sys.argv[2], i))
            """
        )
    )
    n = 300
    procs = [
        subprocess.Popen([sys.executable, str(script), node.path("db"), who, str(n)], stderr=subprocess.PIPE)
        for who in ("a", "b")
    ]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    assert c.execute("SELECT who, count(*) FROM t GROUP BY who") == [["a", n], ["b", n]]
    assert txid(node) == start + 2 * n
    assert_consistent(node, c)


def test_wal_file_deleted_on_last_close_and_reopened(node: LiteFSNode, connect) -> None:
    c = connect(node.path("db"), journal_mode="wal")
    c.execute("CREATE TABLE t (x)")
    c.execute("INSERT INTO t VALUES (1)")
    pos = node.pos("db")
    c.close()  # the last connection checkpoints and deletes the WAL
    deadline = time.monotonic() + 10
    while os.path.exists(wal_path(node)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not os.path.exists(wal_path(node))
    assert node.pos("db") == pos
    c2 = connect(node.path("db"))
    c2.execute("INSERT INTO t VALUES (2)")
    assert c2.execute("SELECT sum(x) FROM t") == [[3]]
    assert_consistent(node, c2)
