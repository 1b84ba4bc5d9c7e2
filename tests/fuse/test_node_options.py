"""Node options that change startup and commit behaviour: -skip-unmount, strict-verify, the data-directory lock."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from litefs.fuse.mount import mount_entries
from litefs.testing import LiteFSNode, NodeError

from .conftest import SQLConn, SQLError


def test_skip_unmount_mounts_a_clean_directory(tmp_path: Path) -> None:
    node = LiteFSNode(tmp_path, args=("-skip-unmount",))
    try:
        node.start()
        subprocess.run(["sqlite3", node.path("db"), "CREATE TABLE t (x)"], check=True)
        assert node.pos("db").startswith(f"{1:016x}/")
    finally:
        node.stop()


def test_skip_unmount_leaves_a_stale_mount_alone(tmp_path: Path) -> None:
    node = LiteFSNode(tmp_path)
    try:
        node.start()
        node.kill()
        assert mount_entries(node.mount_dir) == 1
        node.args = ("-skip-unmount",)
        with pytest.raises(NodeError):
            node.start()  # the dead mount is in the way and was not touched
        assert node.returncode != 0 or node.proc is None or node.proc.poll() is not None
        assert mount_entries(node.mount_dir) >= 1
        assert "ERROR" in node.log()
    finally:
        node.stop()  # cleans the stale mount up
    assert mount_entries(node.mount_dir) == 0


def test_strict_verify_stops_the_node_on_drift(tmp_path: Path) -> None:
    node = LiteFSNode(tmp_path, config={"strict-verify": True})
    try:
        node.start()
        with SQLConn(node.path("db"), journal_mode="delete") as c:
            c.execute("CREATE TABLE a (x)")
            c.execute("CREATE TABLE b (x)")
            c.execute("INSERT INTO a VALUES (1)")
        # Damage the page of table b behind the node's back: the next commit touches only table a,
        # so only a full recompute from disk can notice.
        backing = os.path.join(node.data_dir, "dbs", "db", "database")
        with open(backing, "r+b") as f:
            f.seek(3 * 4096 - 100)
            f.write(b"\xff" * 50)
        with SQLConn(node.path("db"), journal_mode="delete") as c, pytest.raises(SQLError):
            for i in range(20):  # the failing commit may surface on this or a later statement
                c.execute("INSERT INTO a VALUES (?)", (i,))
        assert node.wait_exit() == 99
        assert "strict verify" in node.log()
    finally:
        node.stop()


def test_a_second_node_on_the_same_data_directory_is_refused(tmp_path: Path) -> None:
    first = LiteFSNode(tmp_path, name="first")
    second = LiteFSNode(tmp_path, name="second")
    second.config["data"]["dir"] = first.data_dir
    try:
        first.start()
        second.start(wait=False)
        assert second.wait_exit(timeout=30) != 0
        assert f"data directory {first.data_dir} is in use by another litefs process" in second.log()
        assert first.get("/info").status_code == 200  # the first node is unharmed
    finally:
        second.stop()
        first.stop()
    second.start()  # once the first node is gone, the directory is free again
    second.stop()
