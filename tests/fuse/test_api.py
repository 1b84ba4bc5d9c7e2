"""The node's HTTP API and the import/export commands against a real node (LiteFS §3, §12.2)."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import threading

import httpx
import pytest

from litefs.testing import LiteFSNode

from .conftest import backing_checksum, file_checksum

pytestmark = pytest.mark.fuse


def litefs(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "litefs", *args], capture_output=True, text=True, timeout=60)


def make_db(path: str, rows: int, page_size: int = 4096) -> None:
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA page_size={page_size}")
    conn.execute("CREATE TABLE t (x)")
    conn.executemany("INSERT INTO t VALUES (?)", [(i,) for i in range(rows)])
    conn.commit()
    conn.close()


def test_info(node: LiteFSNode) -> None:
    r = node.get("/info")
    assert r.status_code == 200
    assert r.text.endswith("}\n") and "\n  " in r.text  # indented, as LiteFS prints it
    body = r.json()
    assert body["isPrimary"] is True and body["candidate"] is True
    assert body["path"] == node.data_dir
    assert body["primary"] == {"hostname": "node"}
    assert body["clusterID"].startswith("LFSC") and len(body["clusterID"]) == 20
    assert len(r.headers["Litefs-Id"]) == 16
    assert r.headers["Litefs-Cluster-Id"] == body["clusterID"]
    r = node.get("/nope")
    assert (r.status_code, r.text) == (404, "404 page not found\n")


def test_import_create_and_overwrite_seen_by_open_connection(node: LiteFSNode, tmp_path, connect) -> None:
    src = str(tmp_path / "src.db")
    make_db(src, 10)
    out = litefs("import", "-name", "db", "-url", node.url, src)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith('Import of database "db" in ')
    c = connect(node.path("db"))
    assert c.execute("SELECT count(*) FROM t") == [[10]]
    assert node.pos("db").split("/")[1] == backing_checksum(node, "db")

    src2 = str(tmp_path / "src2.db")
    make_db(src2, 1000)
    out = litefs("import", "-name", "db", "-url", node.url, src2)
    assert out.returncode == 0, out.stderr
    # The connection opened before the import sees the new content without reopening.
    assert c.execute("SELECT count(*) FROM t") == [[1000]]
    assert c.execute("PRAGMA integrity_check") == [["ok"]]
    assert node.pos("db").startswith(f"{2:016x}/")
    assert node.pos("db").split("/")[1] == file_checksum(src2)
    c.execute("INSERT INTO t VALUES (-1)")
    assert node.pos("db").startswith(f"{3:016x}/")


def test_import_of_non_sqlite_file_is_refused(node: LiteFSNode, tmp_path, connect) -> None:
    c = connect(node.path("db"))
    c.execute("CREATE TABLE t (x)")
    pos = node.pos("db")
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not a database" * 100)
    out = litefs("import", "-name", "db", "-url", node.url, str(junk))
    assert out.returncode != 0
    assert "not a SQLite database" in out.stderr
    assert node.pos("db") == pos
    assert len(node.ltx_files("db")) == 1
    out = litefs("import", "-name", "other", "-url", node.url, str(junk))
    assert out.returncode != 0
    assert not os.path.exists(node.path("other"))


def test_export_round_trip_and_not_found(node: LiteFSNode, tmp_path, connect) -> None:
    c = connect(node.path("db"), journal_mode="persist", page_size=512)
    c.execute("CREATE TABLE t (x)")
    c.execute("INSERT INTO t VALUES (42)")
    dst = str(tmp_path / "out.db")
    with open(dst + "-journal", "w") as f:
        f.write("stale")
    out = litefs("export", "-name", "db", "-url", node.url, dst)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith('Export of database "db" in ')
    assert not os.path.exists(dst + "-journal")
    assert file_checksum(dst) == node.pos("db").split("/")[1]
    conn = sqlite3.connect(dst)
    assert conn.execute("SELECT x FROM t").fetchall() == [(42,)]
    conn.close()
    out = litefs("export", "-name", "missing", "-url", node.url, dst)
    assert out.returncode == 1
    assert "database not found" in out.stderr


def test_info_answers_during_a_large_import(node: LiteFSNode, tmp_path, connect) -> None:
    # A 96 MiB import: encoding and applying it takes seconds. That file I/O runs in a worker thread,
    # so /info (and FUSE) are answered while it runs, not after it.
    src = str(tmp_path / "big.db")
    conn = sqlite3.connect(src)
    conn.execute("CREATE TABLE t (v BLOB)")
    conn.execute(
        "INSERT INTO t WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 24000) "
        "SELECT randomblob(4000) FROM n"
    )
    conn.commit()
    conn.close()
    ltx_dir = os.path.join(node.data_dir, "dbs", "big", "ltx")
    done = threading.Event()
    result: dict[str, object] = {}

    def run_import() -> None:
        try:
            with open(src, "rb") as f:
                result["status"] = httpx.post(
                    node.url + "/import", params={"name": "big"}, content=f, timeout=300
                ).status_code
        finally:
            done.set()

    worker = threading.Thread(target=run_import)
    worker.start()
    try:
        # Wait until the node is encoding the LTX file (its temp file exists), then ask for /info.
        while not done.is_set():
            if os.path.isdir(ltx_dir) and any(n.endswith(".tmp") for n in os.listdir(ltx_dir)):
                break
            done.wait(0.005)
        assert not done.is_set(), f"import finished before it could be observed: {result}"
        r = node.get("/info")
        assert r.status_code == 200 and r.json()["isPrimary"] is True
        assert not done.is_set(), "/info was answered only after the import finished"
    finally:
        worker.join(timeout=300)
    assert result["status"] == 200
    c = connect(node.path("big"))
    assert c.execute("SELECT count(*) FROM t") == [[24000]]
    assert node.pos("big").split("/")[1] == file_checksum(src)


def test_events_stream(node: LiteFSNode, connect) -> None:
    with httpx.stream("GET", node.url + "/events", timeout=10) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("application/json")
        lines = r.iter_lines()
        first = json.loads(next(lines))
        assert first == {"type": "init", "data": {"isPrimary": True, "hostname": "node"}}
        c = connect(node.path("db"), journal_mode="delete")
        c.execute("CREATE TABLE t (x)")
        c.execute("INSERT INTO t VALUES (1)")
        events = [json.loads(next(lines)) for _ in range(2)]
    for i, ev in enumerate(events, start=1):
        assert ev["type"] == "tx" and ev["db"] == "db"
        assert ev["data"]["txID"] == f"{i:016x}"
        assert ev["data"]["pageSize"] == 4096
        assert ev["data"]["commit"] == 2
        assert ev["data"]["timestamp"].endswith("Z")
    assert node.pos("db") == f"{events[1]['data']['txID']}/{events[1]['data']['postApplyChecksum']}"
