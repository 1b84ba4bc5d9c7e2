"""The ``/api/v1`` monitoring routes and ``/primary`` on real nodes."""

from __future__ import annotations

import subprocess
from pathlib import Path

from litefs.testing import LiteFSNode


def test_db_document_matches_the_pos_file(node: LiteFSNode) -> None:
    subprocess.run(
        ["sqlite3", node.path("app.db"), "CREATE TABLE t (x); INSERT INTO t VALUES (1)"], check=True
    )
    txid, checksum = node.pos("app.db").split("/")
    doc = node.get("/api/v1/dbs/app.db").json()
    assert doc["name"] == "app.db"
    assert (doc["txid"], doc["checksum"]) == (txid, checksum)
    assert doc["pageSize"] == 4096 and doc["pageCount"] == 2
    assert doc["role"] == "primary"
    assert doc["primary"]["hostname"] == "node"
    assert doc["replicas"] == []
    listing = node.get("/api/v1/dbs").json()
    assert [d["name"] for d in listing["databases"]] == ["app.db"]


def test_unknown_db_is_a_json_404(node: LiteFSNode) -> None:
    resp = node.get("/api/v1/dbs/nope.db")
    assert resp.status_code == 404
    assert resp.json() == {"error": "database not found: nope.db"}


def test_primary_route_on_primary_and_replica(node: LiteFSNode, tmp_path: Path) -> None:
    resp = node.get("/primary")
    assert (resp.status_code, resp.text) == (200, "node\n")
    replica = LiteFSNode(
        tmp_path,
        name="replica",
        candidate=False,
        config={"skip-sync": True, "lease": {"hostname": "node", "advertise-url": node.url}},
    )
    try:
        replica.start()
        resp = replica.get("/primary")
        assert (resp.status_code, resp.text) == (200, "node\n")
    finally:
        replica.stop()
