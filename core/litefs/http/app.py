"""The node's HTTP API (quart-trio): ``/info``, ``/import``, ``/export``, ``/events``, ``/debug/vars``.

Behaviour follows LiteFS v0.5.14 §3: plain-text errors ``<message>\\n``, ``Litefs-Id`` and
``Litefs-Cluster-Id`` on every API response, indented JSON for ``/info``, NDJSON for ``/events``.
Plugins add routes through :func:`litefs.hookspecs.litefs_http_routes`.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

import trio
from quart import Response, request
from quart_trio import QuartTrio
from werkzeug.exceptions import HTTPException

from litefs.http.api_v1 import API_V1_RULES, register_api_v1
from litefs.replication.halt import HALT_RULES, register_halt
from litefs.replication.handoff import register_handoff
from litefs.replication.primary import register_stream
from litefs.store import StoreError
from litefs.store.names import is_valid_db_name

if TYPE_CHECKING:
    from litefs.node import Node

log = logging.getLogger("litefs.http")

#: Bytes of an import body gathered before one write to the temp file (in a worker thread).
IMPORT_SPOOL_BYTES = 4 << 20

CORE_RULES = ("/info", "/import", "/export", "/events", "/debug/vars", *API_V1_RULES, *HALT_RULES)


def error(message: str, status: int) -> Response:
    return Response(message + "\n", status=status, content_type="text/plain; charset=utf-8")


def create_app(node: Node) -> QuartTrio:
    """Build the API app of one node."""
    app = QuartTrio("litefs")
    # Imports can be large and slow: no body size or time limit (LiteFS has none either).
    app.config["MAX_CONTENT_LENGTH"] = None
    app.config["BODY_TIMEOUT"] = None
    app.config["RESPONSE_TIMEOUT"] = None

    @app.after_request
    async def add_headers(response: Response) -> Response:
        if not request.path.startswith("/debug/") and request.path != "/metrics":
            response.headers["Litefs-Id"] = f"{node.node_id:016X}"
            if node.store.cluster_id:
                response.headers["Litefs-Cluster-Id"] = node.store.cluster_id
        return response

    @app.errorhandler(HTTPException)
    async def http_error(exc: HTTPException) -> Response:
        if exc.code == 404:
            return error("404 page not found", 404)
        if exc.code == 405:
            return error("method not allowed", 405)
        return error(exc.description or str(exc), exc.code or 500)

    @app.route("/info", methods=["GET"])
    async def info() -> Response:
        body: dict[str, Any] = {}
        if node.store.cluster_id:
            body["clusterID"] = node.store.cluster_id
        body["isPrimary"] = node.is_primary
        body["candidate"] = node.config.lease.candidate
        body["path"] = node.config.data.dir
        body["primary"] = {"hostname": node.primary_hostname}
        return Response(json.dumps(body, indent=2) + "\n", content_type="application/json")

    @app.route("/import", methods=["POST"])
    async def import_db() -> Response:
        name = request.args.get("name", "")
        if not name:
            return error("name required", 400)
        if not is_valid_db_name(name):
            return error(f"invalid database name {name!r}", 400)
        if not node.is_primary:
            return error("node is not primary", 503)
        fd, tmp = tempfile.mkstemp(prefix=".import-", suffix=".tmp", dir=node.config.data.dir)
        try:
            with os.fdopen(fd, "wb") as f:
                # Spool the body in a worker thread, a few MiB at a time, not on the event loop.
                pending: list[bytes] = []
                size = 0
                async for chunk in request.body:
                    pending.append(chunk)
                    size += len(chunk)
                    if size >= IMPORT_SPOOL_BYTES:
                        await trio.to_thread.run_sync(f.write, b"".join(pending))
                        pending, size = [], 0
                if pending:
                    await trio.to_thread.run_sync(f.write, b"".join(pending))
                await trio.to_thread.run_sync(f.flush)
            await node.import_database(name, tmp)
        except StoreError as exc:
            return error(str(exc), 400 if "not a SQLite database" in str(exc) else 500)
        finally:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
        return Response("", status=200)

    @app.route("/export", methods=["GET"])
    async def export_db() -> Response:
        name = request.args.get("name", "")
        if not name:
            return error("name required", 400)
        db = node.store.db(name)
        if db is None or not db.exists() or db.page_count == 0:
            return error("database not found", 404)
        path = await node.export_database(name)

        async def body() -> AsyncIterator[bytes]:
            try:
                with open(path, "rb") as f:
                    while chunk := await trio.to_thread.run_sync(f.read, 1 << 20):
                        yield chunk
            finally:
                os.unlink(path)

        return Response(body(), status=200, content_type="application/octet-stream")

    @app.route("/events", methods=["GET"])
    async def events() -> Response:
        sub = node.store.subscribe()

        async def body() -> AsyncIterator[bytes]:
            try:
                async for item in sub.receive:
                    yield (json.dumps(item) + "\n").encode()
            finally:
                sub.close()

        response = Response(body(), status=200, content_type="application/json")
        response.timeout = None
        return response

    @app.route("/debug/vars", methods=["GET"])
    async def debug_vars() -> Response:
        body = {"store": node.store.debug_vars(), "fuse": dict(node.fs.counters)}
        return Response(json.dumps(body, indent=2) + "\n", content_type="application/json")

    register_api_v1(app, node)
    register_stream(app, node)
    register_handoff(app, node)
    register_halt(app, node)
    return app


def make_route_registrar(app: QuartTrio, plugin_rules: list[str]) -> Callable[..., None]:
    """The ``register`` callable handed to :func:`litefs_http_routes` implementations."""

    def register(
        rule: str, view: Callable[..., Any], methods: tuple[str, ...] | list[str] = ("GET",)
    ) -> None:
        if rule in CORE_RULES:
            raise ValueError(f"cannot override core route {rule}")
        endpoint = f"plugin:{rule}:{','.join(methods)}"
        app.add_url_rule(rule, endpoint=endpoint, view_func=view, methods=list(methods))
        plugin_rules.append(rule)

    return register
