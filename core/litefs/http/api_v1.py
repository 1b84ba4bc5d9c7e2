"""The monitoring API that LiteFS troubleshooting guides describe (issue 11): ``/api/v1/dbs``,
``/api/v1/dbs/<name>`` and ``/primary``. LiteFS v0.5.14 never shipped these; we serve them so the
guides work as written.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from quart import Response, request

if TYPE_CHECKING:
    from quart_trio import QuartTrio

    from litefs.node import Node

API_V1_RULES = ("/api/v1/dbs", "/api/v1/dbs/<name>", "/api/v1/dbs/<name>/halt", "/primary")


def _json(body: Any, status: int = 200) -> Response:
    return Response(json.dumps(body, indent=2) + "\n", status=status, content_type="application/json")


def database_document(node: Node, name: str) -> dict[str, Any] | None:
    """What ``GET /api/v1/dbs/<name>`` answers, or None for an unknown database."""
    db = node.store.db(name)
    if db is None or not db.exists():
        return None
    info = getattr(node, "primary_info", None)
    doc: dict[str, Any] = {
        "name": name,
        "txid": f"{db.pos.txid:016x}",
        "checksum": f"{db.pos.post_apply_checksum:016x}",
        "pageSize": db.page_size,
        "pageCount": db.page_count,
        "role": "primary" if node.is_primary else "replica",
        "primary": {
            "hostname": info.hostname if info else node.primary_hostname,
            "advertiseURL": info.advertise_url if info else "",
        },
    }
    if node.is_primary:
        # Filled by replication: one entry per connected replica (node ID, hostname, position, lag).
        doc["replicas"] = [
            {
                "nodeID": r.node_id,
                "hostname": r.hostname,
                "txid": f"{r.txid:016x}",
                "checksum": f"{r.post_apply_checksum:016x}",
                "lag": r.lag_txids,
            }
            for r in node.replica_positions(name)
        ]
    return doc


def register_api_v1(app: QuartTrio, node: Node) -> None:
    @app.route("/api/v1/dbs", methods=["GET"])
    async def list_dbs() -> Response:
        docs = [database_document(node, name) for name in node.database_names()]
        return _json({"databases": [d for d in docs if d is not None]})

    @app.route("/api/v1/dbs/<name>", methods=["GET"])
    async def get_db(name: str) -> Response:
        doc = database_document(node, name)
        if doc is None:
            return _json({"error": f"database not found: {name}"}, status=404)
        return _json(doc)

    @app.route("/api/v1/dbs/<name>/halt", methods=["POST", "DELETE"])
    async def halt_db(name: str) -> Response:
        from litefs.replication.halt import api_halt

        return await api_halt(node, name, request.method, request.args.get("id"))

    @app.route("/primary", methods=["GET"])
    async def primary() -> Response:
        hostname = node.primary_hostname
        if not hostname:
            return Response("no primary known\n", status=503, content_type="text/plain; charset=utf-8")
        return Response(hostname + "\n", content_type="text/plain; charset=utf-8")
