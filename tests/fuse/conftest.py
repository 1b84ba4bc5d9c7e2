"""Fixtures for real-mount tests: a litefs node process and SQLite connections in other processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from litefs.ltx import database_checksum
from litefs.testing import LiteFSNode

WORKER = os.path.join(os.path.dirname(__file__), "sqlworker.py")

JOURNAL_MODES = ("delete", "truncate", "persist")
PAGE_SIZES = (512, 4096)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if str(item.fspath).startswith(os.path.dirname(__file__)):
            item.add_marker(pytest.mark.fuse)


class SQLError(Exception):
    def __init__(self, message: str, kind: str) -> None:
        super().__init__(message)
        self.kind = kind


class SQLConn:
    """A sqlite3 connection living in its own Python process."""

    def __init__(self, path: str, *, journal_mode: str | None = None, page_size: int | None = None) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, WORKER, path], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        if page_size:
            self.execute(f"PRAGMA page_size={page_size}")
        if journal_mode:
            (mode,) = self.execute(f"PRAGMA journal_mode={journal_mode}")[0]
            assert mode == journal_mode

    def execute(self, sql: str, params: list[Any] | tuple[Any, ...] = ()) -> list[list[Any]]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps({"sql": sql, "params": list(params)}) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise SQLError("sql worker died", "WorkerDied")
        reply = json.loads(line)
        if "error" in reply:
            raise SQLError(reply["error"], reply["type"])
        return reply["rows"]

    def script(self, sql: str) -> None:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps({"sql": sql, "script": True}) + "\n")
        self.proc.stdin.flush()
        reply = json.loads(self.proc.stdout.readline())
        if "error" in reply:
            raise SQLError(reply["error"], reply["type"])

    def close(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        if self.proc.stdin is not None and not self.proc.stdin.closed:
            self.proc.stdin.close()

    def __enter__(self) -> SQLConn:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@pytest.fixture
def node(tmp_path: Any) -> Iterator[LiteFSNode]:
    n = LiteFSNode(tmp_path, config={"strict-verify": True})
    try:
        n.start()
        yield n
    finally:
        n.stop()


@pytest.fixture
def connect(request: pytest.FixtureRequest) -> Iterator[Any]:
    """connect(path, journal_mode=..., page_size=...) -> SQLConn, closed at teardown."""
    conns: list[SQLConn] = []

    def factory(path: str, **kwargs: Any) -> SQLConn:
        c = SQLConn(path, **kwargs)
        conns.append(c)
        return c

    try:
        yield factory
    finally:
        for c in conns:
            c.close()


def backing_checksum(node: LiteFSNode, db: str) -> str:
    """``%016x/%016x`` of the committed database file computed from disk (what -pos must say)."""
    from litefs.sqlite.header import DatabaseHeader

    path = os.path.join(node.data_dir, "dbs", db, "database")
    with open(path, "rb") as f:
        hdr = DatabaseHeader.parse(f.read(100))
    return f"{database_checksum(path, hdr.page_size, hdr.page_count):016x}"


def file_checksum(path: str) -> str:
    from litefs.sqlite.header import DatabaseHeader

    with open(path, "rb") as f:
        hdr = DatabaseHeader.parse(f.read(100))
    return f"{database_checksum(path, hdr.page_size, os.path.getsize(path) // hdr.page_size):016x}"
