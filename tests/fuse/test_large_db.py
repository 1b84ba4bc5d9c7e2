"""A database larger than 1 GiB: the SQLite lock page is skipped in LTX files and checksums."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from litefs.ltx import Decoder, lock_pgno
from litefs.testing import LiteFSNode

from .conftest import SQLConn, backing_checksum

pytestmark = pytest.mark.slow

PAGE_SIZE = 65536


def test_database_crossing_the_lock_page(tmp_path: Path) -> None:
    node = LiteFSNode(tmp_path)
    try:
        node.start()
        with SQLConn(node.path("big.db"), journal_mode="delete", page_size=PAGE_SIZE) as c:
            c.execute("CREATE TABLE t (x)")
            c.execute(
                "INSERT INTO t WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < 1100) "
                "SELECT randomblob(16) || zeroblob(1000000) FROM s"
            )
            (count,) = c.execute("SELECT count(*) FROM t")[0]
        assert count == 1100
        size = os.path.getsize(os.path.join(node.data_dir, "dbs", "big.db", "database"))
        assert size > 0x40000000  # past the lock page
        pos = node.pos("big.db")
        assert pos.split("/")[1] == backing_checksum(node, "big.db")
        # The big transaction's LTX file holds every page but the lock page.
        ltx = os.path.join(node.ltx_dir("big.db"), node.ltx_files("big.db")[-1])
        with open(ltx, "rb") as f:
            pgnos = [pgno for pgno, _ in Decoder(f).pages()]
        assert lock_pgno(PAGE_SIZE) not in pgnos
        assert max(pgnos) > lock_pgno(PAGE_SIZE)

        # A restart recomputes the whole checksum and must land on the same position.
        assert node.stop() == 0
        node.start()
        assert node.pos("big.db") == pos
        out = subprocess.run(
            ["sqlite3", node.path("big.db"), "PRAGMA quick_check; SELECT count(*) FROM t"],
            capture_output=True,
            text=True,
            check=True,
        )
        assert out.stdout.split() == ["ok", "1100"]
    finally:
        node.stop()
