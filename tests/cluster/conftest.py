"""Fixtures for multi-node tests: each node a real ``litefs mount`` process on loopback, static lease."""

from __future__ import annotations

import importlib.util
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from litefs.store.snaprecord import SnapshotRecord
from litefs.testing import LiteFSNode

_FUSE_CONFTEST = Path(__file__).resolve().parent.parent / "fuse" / "conftest.py"
_spec = importlib.util.spec_from_file_location("_litefs_fuse_conftest", _FUSE_CONFTEST)
assert _spec is not None and _spec.loader is not None
_fuse = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_fuse)
SQLConn = _fuse.SQLConn
SQLError = _fuse.SQLError


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = os.path.dirname(__file__)
    for item in items:
        if str(item.fspath).startswith(here):
            item.add_marker(pytest.mark.fuse)
            item.add_marker(pytest.mark.cluster)


def wait_until(cond: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> Any:
    """Poll ``cond`` until it returns a truthy value (exceptions count as "not yet")."""
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            value = cond()
        except (OSError, ValueError, KeyError) as exc:
            last, value = exc, None
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last error: {last!r})")


def insert_random_rows(conn: Any, rows: int, size: int) -> None:
    """INSERT ``rows`` incompressible blobs of ``size`` bytes into table ``t`` in one statement."""
    conn.execute(
        f"WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {int(rows)}) "
        f"INSERT INTO t SELECT randomblob({int(size)}) FROM n"
    )


def read(path: str) -> str:
    with open(path) as f:
        return f.read()


class Cluster:
    """Nodes under one temp dir; the first one started with ``primary()`` is the static primary."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.nodes: list[LiteFSNode] = []
        self.conns: list[Any] = []
        self.primary_node: LiteFSNode | None = None

    def primary(self, name: str = "primary", config: dict[str, Any] | None = None) -> LiteFSNode:
        node = LiteFSNode(self.root, name=name, candidate=True, config=config)
        self.nodes.append(node)
        self.primary_node = node
        return node.start()

    def replica(
        self, name: str = "replica", config: dict[str, Any] | None = None, *, start: bool = True
    ) -> LiteFSNode:
        assert self.primary_node is not None
        p = self.primary_node
        lease = {"hostname": p.name, "advertise-url": p.url, "reconnect-delay": "100ms"}
        cfg = dict(config or {})
        cfg["lease"] = {**lease, **cfg.get("lease", {})}
        node = LiteFSNode(self.root, name=name, candidate=False, config=cfg)
        # LiteFSNode puts its own hostname/advertise-url into the lease section: the replica's lease
        # must name the primary instead.
        node.config["lease"].update(lease)
        node.config["lease"].update(cfg["lease"])
        self.nodes.append(node)
        return node.start() if start else node

    def connect(self, path: str, **kwargs: Any) -> Any:
        conn = SQLConn(path, **kwargs)
        self.conns.append(conn)
        return conn

    def close(self) -> None:
        for c in self.conns:
            c.close()
        for n in reversed(self.nodes):
            n.stop()


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(tmp_path)
    try:
        yield c
    finally:
        c.close()


def same_pos(a: LiteFSNode, b: LiteFSNode, db: str) -> bool:
    return a.pos(db) == b.pos(db)


def assert_snapshot_record(node: LiteFSNode, txid: int) -> None:
    """The node installed a snapshot at ``txid`` and kept no LTX file, only the snapshot's record."""
    assert node.ltx_files("db") == []
    record = SnapshotRecord.from_bytes(Path(node.ltx_dir("db"), "snapshot.pos").read_bytes())
    assert record.header.min_txid == 1 and record.txid == txid
    assert node.pos("db") == f"{txid:016x}/{record.post_apply_checksum:016x}"
