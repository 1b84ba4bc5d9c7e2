"""Helpers shared by the metrics plugin's end-to-end tests (not a test module)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from litefs.testing import LiteFSNode

# One autocommit INSERT per row: each is one SQLite transaction, so one LiteFS commit.
_WRITER = """
import sqlite3, sys
path, table, rows = sys.argv[1], sys.argv[2], int(sys.argv[3])
conn = sqlite3.connect(path, isolation_level=None, timeout=10.0)
conn.execute(f"CREATE TABLE IF NOT EXISTS {table} (id INTEGER PRIMARY KEY, v TEXT)")
for i in range(rows):
    conn.execute(f"INSERT INTO {table} (v) VALUES (?)", ("x" * 200,))
conn.close()
"""


def write_rows(node: LiteFSNode, db: str, rows: int, table: str = "t") -> None:
    """``CREATE TABLE IF NOT EXISTS`` then ``rows`` INSERTs through the mount, in a child process
    (a hung FUSE request then fails this call with a timeout instead of hanging pytest)."""
    subprocess.run(
        [sys.executable, "-c", _WRITER, node.path(db), table, str(rows)],
        check=True,
        timeout=30,
        capture_output=True,
    )


def pos_txid(node: LiteFSNode, db: str) -> int:
    return int(node.pos(db).split("/")[0], 16)


def scrape(node: LiteFSNode) -> dict[str, Any]:
    """``GET /metrics`` parsed into ``{family name: family}``."""
    resp = node.get("/metrics")
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"].startswith("text/plain; version="), resp.headers
    return {f.name: f for f in text_string_to_metric_families(resp.text)}


def sample(families: dict[str, Any], family: str, sample_name: str | None = None, **labels: str) -> float:
    """One sample's value (the parser names counter samples ``<family>_total``)."""
    fam = families[family]
    want = sample_name or (family + "_total" if fam.type == "counter" else family)
    found = [s.value for s in fam.samples if s.name == want and s.labels == labels]
    assert len(found) == 1, (family, labels, fam.samples)
    return found[0]


def ltx_on_disk(node: LiteFSNode, db: str) -> tuple[int, int]:
    """Count and total size of the LTX files on disk; retention may remove one while we look."""
    ltx_dir = node.ltx_dir(db)
    sizes = []
    for name in node.ltx_files(db):
        try:
            sizes.append(os.path.getsize(os.path.join(ltx_dir, name)))
        except FileNotFoundError:
            continue  # reaped between the listing and the stat
    return len(sizes), sum(sizes)


DASHBOARD = Path(__file__).resolve().parents[3] / "grafana" / "litefs-dashboard.json"


def dashboard_queries() -> list[str]:
    """Every PromQL expression of the Grafana dashboard, with its variables filled in."""
    dash = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    exprs += [a["expr"] for a in dash["annotations"]["list"]]
    exprs += [v["query"] for v in dash["templating"]["list"] if v["type"] == "query"]
    return [
        e.replace("$__rate_interval", "5s").replace("$job", ".*")
        for e in exprs
        if not e.startswith("label_values(")
    ]
