"""Single node, rollback-journal modes, real mount, SQLite in other processes (LiteFS §12.2 fuse cases)."""

from __future__ import annotations

import errno
import os
import stat
import struct
import subprocess
import time

import pytest

from litefs.ltx import Decoder, database_checksum
from litefs.testing import LiteFSNode

from .conftest import JOURNAL_MODES, PAGE_SIZES, SQLConn, backing_checksum

pytestmark = pytest.mark.fuse

MODES = [pytest.param(m, p, id=f"{m}-{p}") for m in JOURNAL_MODES for p in PAGE_SIZES]


def series(n: int, expr: str) -> str:
    """SELECT of n rows of expr (generate_series is not compiled into every SQLite)."""
    return (
        f"WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < {n}) SELECT {expr} FROM s"
    )


def txid(node: LiteFSNode, db: str) -> int:
    return int(node.pos(db).split("/")[0], 16)


def assert_consistent(node: LiteFSNode, conn: SQLConn, db: str = "db") -> None:
    """integrity_check ok and -pos checksum == checksum of the committed content."""
    assert conn.execute("PRAGMA integrity_check") == [["ok"]]
    assert node.pos(db).split("/")[1] == backing_checksum(node, db)


@pytest.mark.parametrize("mode,page_size", MODES)
def test_ok_write_read_and_ltx(node: LiteFSNode, connect, mode: str, page_size: int) -> None:
    c = connect(node.path("db"), journal_mode=mode, page_size=page_size)
    c.execute("CREATE TABLE t (x)")
    assert txid(node, "db") == 1
    c.execute("INSERT INTO t VALUES (100)")
    assert txid(node, "db") == 2
    c.execute("INSERT INTO t VALUES (200)")
    assert txid(node, "db") == 3
    assert c.execute("SELECT sum(x) FROM t") == [[300]]
    # One LTX file per transaction, each with the pre-apply checksum of the one before.
    assert node.ltx_files("db") == [f"{i:016x}-{i:016x}.ltx" for i in (1, 2, 3)]
    prev = 0
    for name in node.ltx_files("db"):
        with open(os.path.join(node.ltx_dir("db"), name), "rb") as f:
            dec = Decoder(f)
            trailer = dec.verify()
            assert dec.header.page_size == page_size
            assert dec.header.pre_apply_checksum == prev
            prev = trailer.post_apply_checksum
    assert node.pos("db") == f"{3:016x}/{prev:016x}"
    assert_consistent(node, c)
    # A second process (the sqlite3 CLI) sees the data.
    out = subprocess.run(
        ["sqlite3", node.path("db"), "SELECT count(*) FROM t"], capture_output=True, text=True
    )
    assert out.stdout.strip() == "2", out.stderr


@pytest.mark.parametrize("mode", JOURNAL_MODES)
def test_golden_positions(node: LiteFSNode, connect, mode: str) -> None:
    """LiteFS's golden positions (4 KB pages), which were produced by SQLite 3.39.2.

    The database bytes differ only in the "SQLite version" header field when another SQLite wrote
    them, so the golden checksums are checked against the exported content with that field set to
    3039002, and -pos is checked against the content as written.
    """
    c = connect(node.path("db"), journal_mode=mode)
    golden = {1: "f630f5ae3060002c", 2: "b765dce8249e9b4b"}
    for i, sql in ((1, "CREATE TABLE t (x)"), (2, "INSERT INTO t VALUES (100)")):
        c.execute(sql)
        path = os.path.join(node.data_dir, "dbs", "db", "database")
        with open(path, "rb") as f:
            data = bytearray(f.read())
        data[96:100] = struct.pack(">I", 3039002)
        patched = path + ".golden"
        with open(patched, "wb") as f:
            f.write(data)
        assert f"{database_checksum(patched, 4096, len(data) // 4096):016x}" == golden[i]
        os.unlink(patched)
        assert node.pos("db").startswith(f"{i:016x}/")
        assert_consistent(node, c)


@pytest.mark.parametrize("mode,page_size", MODES)
def test_rollback_without_spill_makes_no_tx(node: LiteFSNode, connect, mode: str, page_size: int) -> None:
    c = connect(node.path("db"), journal_mode=mode, page_size=page_size)
    c.execute("CREATE TABLE t (x)")
    c.execute("INSERT INTO t VALUES (1)")
    before = node.pos("db")
    c.execute("BEGIN")
    c.execute("INSERT INTO t VALUES (2)")
    c.execute("ROLLBACK")
    assert node.pos("db") == before
    # BEGIN IMMEDIATE; COMMIT with no write: no journal, no TXID.
    c.execute("BEGIN IMMEDIATE")
    c.execute("COMMIT")
    assert node.pos("db") == before
    assert c.execute("SELECT x FROM t") == [[1]]
    assert_consistent(node, c)


@pytest.mark.parametrize("mode,page_size", MODES)
def test_rollback_after_spill(node: LiteFSNode, connect, mode: str, page_size: int) -> None:
    """A rollback that already wrote to the database file: content restored, position consistent."""
    c = connect(node.path("db"), journal_mode=mode, page_size=page_size)
    c.execute("PRAGMA cache_size=10")
    c.execute("CREATE TABLE t (x)")
    c.execute("INSERT INTO t VALUES (1)")
    c.execute("BEGIN")
    c.execute("INSERT INTO t " + series(500, "randomblob(200)"))
    c.execute("ROLLBACK")
    assert c.execute("SELECT x FROM t") == [[1]]
    assert_consistent(node, c)
    c.execute("INSERT INTO t VALUES (2)")
    assert_consistent(node, c)


@pytest.mark.parametrize("mode,page_size", MODES)
def test_multiple_journal_segments(node: LiteFSNode, connect, mode: str, page_size: int) -> None:
    c = connect(node.path("db"), journal_mode=mode, page_size=page_size)
    c.execute("PRAGMA cache_size=10")
    c.execute("CREATE TABLE t (x)")
    start = txid(node, "db")
    c.execute("INSERT INTO t " + series(400, "randomblob(300)"))
    c.execute("UPDATE t SET x = randomblob(300)")
    assert txid(node, "db") == start + 2
    assert c.execute("SELECT count(*) FROM t") == [[400]]
    assert_consistent(node, c)


@pytest.mark.parametrize("mode,page_size", MODES)
def test_vacuum_shrinks(node: LiteFSNode, connect, mode: str, page_size: int) -> None:
    c = connect(node.path("db"), journal_mode=mode, page_size=page_size)
    c.execute("CREATE TABLE t (x)")
    c.execute("INSERT INTO t " + series(200, "randomblob(500)"))
    big = os.path.getsize(node.path("db"))
    c.execute("DELETE FROM t WHERE rowid > 10")
    c.execute("VACUUM")
    assert os.path.getsize(node.path("db")) < big
    db_pages = c.execute("PRAGMA page_count")[0][0]
    with open(os.path.join(node.ltx_dir("db"), node.ltx_files("db")[-1]), "rb") as f:
        assert Decoder(f).header.commit == db_pages
    assert_consistent(node, c)


@pytest.mark.parametrize("mode", JOURNAL_MODES)
def test_readdir_and_special_files(node: LiteFSNode, connect, mode: str) -> None:
    for db in ("db0", "db1"):
        c = connect(node.path(db), journal_mode=mode)
        c.execute("CREATE TABLE t (x)")
    names = sorted(n for n in os.listdir(node.mount_dir) if not n.startswith("."))
    if mode == "delete":
        assert names == ["db0", "db0-pos", "db1", "db1-pos"]
    else:  # the journal stays behind (zeroed or empty)
        assert names == ["db0", "db0-journal", "db0-pos", "db1", "db1-journal", "db1-pos"]
    # LiteFS's listing order: .lag first, then per database db, db-pos, db-journal.
    listing = os.listdir(node.mount_dir)
    assert listing[0] == ".lag"
    assert listing.index("db0") < listing.index("db0-pos") < listing.index("db1")

    st = os.stat(node.path("db0-pos"))
    assert st.st_size == 34 and stat.S_IMODE(st.st_mode) == 0o666
    assert node.pos("db0").startswith("0000000000000001/")
    with open(node.path(".lag")) as f:
        assert f.read() == "+000000000\n"
    assert os.stat(node.path(".lag")).st_size == 11
    assert not os.path.exists(node.path(".primary"))  # this node is the primary
    assert stat.S_IMODE(os.stat(node.mount_dir).st_mode) == 0o777
    with pytest.raises(PermissionError) as exc:
        os.mkdir(node.path("sub"))
    assert exc.value.errno == errno.EPERM


def test_statfs(node: LiteFSNode) -> None:
    st = os.statvfs(node.mount_dir)
    assert st.f_blocks > 0 and st.f_bsize > 0


@pytest.mark.parametrize("mode", JOURNAL_MODES)
def test_cli_reads_while_python_writes(node: LiteFSNode, connect, mode: str) -> None:
    c = connect(node.path("db"), journal_mode=mode)
    c.execute("CREATE TABLE t (x)")
    reader = subprocess.Popen(
        [
            "sh",
            "-c",
            f"while true; do sqlite3 -cmd '.timeout 5000' {node.path('db')} 'SELECT count(*) FROM t' || exit 1; done",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 3
        n = 0
        while time.monotonic() < deadline:
            c.execute("INSERT INTO t VALUES (?)", [n])
            n += 1
        assert reader.poll() is None, reader.stderr.read() if reader.stderr else ""
    finally:
        reader.kill()
        reader.wait()
        if reader.stderr is not None:
            reader.stderr.close()
    assert c.execute("SELECT count(*) FROM t") == [[n]]
    assert txid(node, "db") == n + 1
    assert_consistent(node, c)


def test_drop_database(node: LiteFSNode, connect) -> None:
    c = connect(node.path("db"), journal_mode="delete")
    c.execute("CREATE TABLE t (x)")
    c.execute("INSERT INTO t VALUES (1)")
    c.close()
    os.unlink(node.path("db"))
    assert not os.path.exists(node.path("db"))
    assert "db" not in os.listdir(node.mount_dir)
    assert node.ltx_files("db")[-1] == f"{3:016x}-{3:016x}.ltx"
    # Re-creating it continues the TXID sequence.
    c2 = connect(node.path("db"), journal_mode="delete")
    c2.execute("CREATE TABLE u (y)")
    assert txid(node, "db") == 4
    assert_consistent(node, c2)


def test_names_that_are_not_files_are_refused(node: LiteFSNode, connect) -> None:
    """Synthesised names refuse creation and writes with an errno; the mount keeps working."""
    c = connect(node.path("db"))
    c.execute("CREATE TABLE t (x)")
    # Opening <db>-lock for writing takes the HALT lock: a no-op on the primary (see test_halt.py).
    with open(node.path("db-lock"), "w"):
        pass
    with pytest.raises(PermissionError):
        open(node.path("new-pos"), "w")
    with pytest.raises(OSError):
        os.rename(node.path("db"), node.path("db2"))
    with open(node.path("db-lock"), "rb") as f:
        assert f.read() == b""
    c.execute("INSERT INTO t VALUES (1)")
    assert node.get("/info").status_code == 200


@pytest.mark.parametrize("mode", JOURNAL_MODES)
def test_commits_send_no_directory_requests(node: LiteFSNode, connect, mode: str) -> None:
    # SQLite syncs the directory of the journal on every transaction; the mount answers the first
    # opendir/fsyncdir with ENOSYS so the kernel stops asking, and listings keep working without.
    c = connect(node.path("db"), journal_mode=mode)
    c.execute("CREATE TABLE t (x)")
    c.execute("INSERT INTO t VALUES (0)")
    assert "db-pos" in os.listdir(node.mount_dir)
    before = node.get("/debug/vars").json()["fuse"]
    for i in range(20):
        c.execute("INSERT INTO t VALUES (?)", [i])
    listing = os.listdir(node.mount_dir)
    after = node.get("/debug/vars").json()["fuse"]
    for op in ("opendir", "fsyncdir", "releasedir"):
        assert after.get(op, 0) == before.get(op, 0), op
    assert listing[0] == ".lag" and "db" in listing
    assert_consistent(node, c)


@pytest.mark.parametrize("mode", ["persist", "truncate"])
def test_journal_shows_empty_after_each_commit(node: LiteFSNode, connect, mode: str) -> None:
    # The node zeroes the header (persist: as SQLite asks; truncate: instead of truncating) and shows
    # the journal as 0 bytes, so readers stop at stat(); its backing file keeps its blocks, and the
    # next transaction writes over them.
    c = connect(node.path("db"), journal_mode=mode)
    c.execute("CREATE TABLE t (x)")
    for i in range(5):
        c.execute("INSERT INTO t VALUES (?)", [i * "x"])
        assert os.path.getsize(node.path("db-journal")) == 0
        with open(node.path("db-journal"), "rb") as f:
            assert f.read() == b""
    backing = os.path.join(node.data_dir, "dbs", "db", "journal")
    assert os.path.getsize(backing) > 0
    with open(backing, "rb") as f:
        assert f.read(28) == bytes(28)
    c.execute("BEGIN")
    c.execute("INSERT INTO t SELECT x FROM t")
    c.execute("ROLLBACK")  # the journal was written again (and shown) for that transaction
    assert os.path.getsize(node.path("db-journal")) == 0
    assert c.execute("SELECT count(*) FROM t") == [[5]]
    assert_consistent(node, c)


@pytest.mark.parametrize("mode", ["persist", "truncate"])
def test_journal_keeps_nothing_of_a_longer_earlier_transaction(node: LiteFSNode, connect, mode: str) -> None:
    # A rollback at startup reads the backing journal: after a small transaction it must not hold
    # the tail (and the segment headers) of an earlier spilled one.
    c = connect(node.path("db"), journal_mode=mode)
    c.execute("PRAGMA cache_size=10")
    c.execute("CREATE TABLE t (x)")
    c.execute("INSERT INTO t " + series(300, "randomblob(1000)"))
    c.execute("UPDATE t SET x = randomblob(1000)")  # a spilled, multi-segment journal
    backing = os.path.join(node.data_dir, "dbs", "db", "journal")
    big = os.path.getsize(backing)
    c.execute("UPDATE t SET x = 1 WHERE rowid = 1")
    small = os.path.getsize(backing)
    assert small < big // 10
    with open(backing, "rb") as f:
        assert f.read(28) == bytes(28)
    assert os.path.getsize(node.path("db-journal")) == 0
    assert_consistent(node, c)
