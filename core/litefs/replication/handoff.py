"""Moving the primary role on purpose: ``POST /handoff`` on the primary, ``POST /promote`` on the
node that wants the role, and ``lease.promote: true`` (LiteFS §6.4).

The primary hands its lease to a replica that holds a live ``/stream``: it stops writing at once,
sends the lease ID in a HANDOFF frame and ends the stream; the replica takes the lease over with
``acquire_existing`` without waiting for any TTL. The static lease cannot hand off.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import httpx
import trio
from quart import Response, request

from litefs.lease import LeaseError

if TYPE_CHECKING:
    from quart_trio import QuartTrio

    from litefs.node import Node

log = logging.getLogger("litefs.handoff")

#: How long a promotion waits for this node to become primary (LiteFS: 10 s).
PROMOTE_TIMEOUT = 10.0
HANDOFF_TIMEOUT = 5.0


class PromoteError(Exception):
    def __init__(self, message: str, status: int = 500) -> None:
        super().__init__(message)
        self.status = status


def _text(message: str, status: int = 200) -> Response:
    return Response(message + "\n", status=status, content_type="text/plain; charset=utf-8")


async def handoff(node: Node, target_id: int) -> None:
    """On the primary: pass the lease to the connected replica ``target_id``."""
    if not node.is_primary or node.election is None:
        raise PromoteError("cannot handoff: node is not currently primary")
    stream = node.streams.get(f"{target_id:016X}")
    if stream is None:
        raise PromoteError("cannot handoff: target node is not currently connected")
    try:
        with trio.fail_after(HANDOFF_TIMEOUT):
            await node.election.handoff(target_id, stream.send_handoff)
    except (LeaseError, trio.TooSlowError) as exc:
        raise PromoteError(f"cannot handoff: {exc or 'timed out'}") from exc
    log.info("handed the primary lease to %016X", target_id)


async def promote(node: Node) -> None:
    """On any node: become primary by asking the current primary to hand over."""
    if node.is_primary:
        return
    if not node.config.lease.candidate:
        raise PromoteError("not eligible to become primary", 409)
    info = node.primary_info
    if info is None or not info.advertise_url:
        raise PromoteError("cannot promote: no primary known")
    url = info.advertise_url.rstrip("/") + "/handoff"
    try:
        async with httpx.AsyncClient(timeout=HANDOFF_TIMEOUT + 5) as client:
            resp = await client.post(url, params={"nodeID": f"{node.node_id:016X}"})
    except httpx.HTTPError as exc:
        raise PromoteError(f"cannot promote: handoff request to {url}: {exc}") from exc
    if resp.status_code != 200:
        raise PromoteError(f"cannot promote: {resp.text.strip()}")
    with trio.move_on_after(PROMOTE_TIMEOUT):
        while not node.is_primary:
            await trio.sleep(0.001)
        return
    raise PromoteError("timed out waiting for promotion")


async def auto_promote(node: Node) -> None:
    """``lease.promote: true``: once ready, a candidate replica takes the primary role."""
    if not (node.config.lease.promote and node.config.lease.candidate) or node.is_primary:
        return
    try:
        await promote(node)
        log.info("auto-promoted to primary")
    except PromoteError as exc:
        log.warning("auto-promote failed: %s", exc)


def register_handoff(app: QuartTrio, node: Node) -> None:
    @app.route("/handoff", methods=["POST"])
    async def handoff_route() -> Response:
        raw = request.args.get("nodeID", "")
        try:
            if len(raw) != 16:
                raise ValueError(raw)
            target = int(raw, 16)
        except ValueError:
            return _text("invalid node id", 400)
        try:
            await handoff(node, target)
        except PromoteError as exc:
            return _text(str(exc), exc.status)
        return _text("")

    @app.route("/promote", methods=["POST"])
    async def promote_route() -> Response:
        try:
            await promote(node)
        except PromoteError as exc:
            return _text(str(exc), exc.status)
        return _text("")
