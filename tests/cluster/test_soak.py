"""A bounded soak: a writer on the primary while two replicas read continuously."""

from __future__ import annotations

import threading
import time

import pytest

from .conftest import Cluster, SQLConn, same_pos, wait_until

pytestmark = [pytest.mark.cluster, pytest.mark.fuse, pytest.mark.slow]

SOAK_SECONDS = 4.0


def test_soak_writer_and_readers(cluster: Cluster) -> None:
    primary = cluster.primary()
    w = cluster.connect(primary.path("db"), journal_mode="delete")
    w.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB)")
    replicas = [cluster.replica("r1"), cluster.replica("r2")]
    for r in replicas:
        wait_until(lambda r=r: same_pos(primary, r, "db"), what="initial catch-up")

    stop = threading.Event()
    problems: list[str] = []
    reads = [0, 0]

    def reader(i: int) -> None:
        conn = SQLConn(replicas[i].path("db"))
        last = 0
        try:
            while not stop.is_set():
                ((count, total),) = conn.execute("SELECT count(*), coalesce(sum(length(v)), 0) FROM t")
                if count < last:
                    problems.append(f"replica {i}: row count went back from {last} to {count}")
                if count % 2 or total != count * 100:  # every transaction inserts two rows
                    problems.append(
                        f"replica {i}: saw a half-applied transaction ({count} rows, {total} bytes)"
                    )
                last = count
                reads[i] += 1
        except Exception as exc:  # reported below
            problems.append(f"replica {i}: {exc}")
        finally:
            conn.close()

    threads = [threading.Thread(target=reader, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    rows = 0
    deadline = time.monotonic() + SOAK_SECONDS
    try:
        while time.monotonic() < deadline:
            w.script(
                "BEGIN; INSERT INTO t (v) VALUES (randomblob(100)); INSERT INTO t (v) VALUES (randomblob(100)); COMMIT;"
            )
            rows += 2
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    assert not problems, problems[:5]
    assert min(reads) > 10

    for r in replicas:
        wait_until(lambda r=r: same_pos(primary, r, "db"), what="final catch-up")
        conn = cluster.connect(r.path("db"))
        assert conn.execute("PRAGMA integrity_check") == [["ok"]]
        assert conn.execute("SELECT count(*) FROM t") == [[rows]]
    exports = [n.get("/export", params={"name": "db"}).content for n in (primary, *replicas)]
    assert exports[0] == exports[1] == exports[2]
