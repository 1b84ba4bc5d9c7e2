"""The proxy's request handling: an ASGI app with LiteFS's decision order.

1. The path matches ``passthrough`` -> to the app unchanged, no cookie.
2. ``GET /litefs/health`` -> ``200 OK`` or ``503 Replication lag exceeded`` above ``max-lag``.
3. GET/HEAD are reads unless the path matches ``always-forward``; everything else is a write.
4. Read: wait (<= 5 s) until the local TXID reaches the ``__txid`` cookie, then to the app.
5. Write: wait (<= ``primary-redirect-timeout``) for a known primary. On the primary -> to the app,
   then ``Set-Cookie: __txid=...``. On a replica -> ``fly-replay`` when ``FLY_APP_NAME`` is set
   (exactly LiteFS), otherwise the request is forwarded to the primary node's proxy and its answer
   (with the primary's cookie) streamed back.

A forwarded request carries ``Litefs-Proxy-Forwarded: <forwarding node ID>``. A node that gets one
treats it as a write; if it is not the primary either it answers ``508 Loop Detected`` instead of
forwarding again, so a request crosses at most one hop between proxies.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any
from urllib.parse import urlsplit

import httpx
import trio

from litefs.lease import PrimaryInfo

from .cookies import parse_txid_cookie, txid_set_cookie
from .patterns import PathMatcher
from .upstream import (
    ClientDisconnected,
    Headers,
    Receive,
    RequestBody,
    RequestBodyTimeout,
    Send,
    Upstream,
    UpstreamError,
    body_deadline,
    has_request_body,
    open_upstream,
    relay_response,
    strip_hop_by_hop,
)

log = logging.getLogger("litefs.plugin.proxy")

HEALTH_PATH = "/litefs/health"
#: Marks a request one proxy forwarded to another; its value is the forwarding node's ID.
FORWARDED_HEADER = b"litefs-proxy-forwarded"
#: How long a read waits for the ``__txid`` cookie's transaction (fixed in LiteFS too).
TXID_WAIT = 5.0
TXID_POLL = 0.001
PRIMARY_POLL = 0.005
#: How long a refused connection to the app is retried (the app may still be starting).
TARGET_RETRY = 30.0
#: How long an unread request body is drained after an early answer before giving up on it.
BODY_DRAIN_TIMEOUT = 30.0
_READ_METHODS = frozenset({"GET", "HEAD"})
_MISSING = object()


def current_primary(node: Any) -> PrimaryInfo | None:
    """The primary's lease information, or ``None`` when no primary is known.

    Falls back to ``primary_hostname`` for cores whose node has no ``primary_info`` yet.
    """
    info = getattr(node, "primary_info", _MISSING)
    if info is _MISSING:
        hostname = node.primary_hostname
        return PrimaryInfo(hostname, "") if hostname else None
    if info is None or not info.hostname:
        return None
    return info


def request_kind(outcome: str, method: str) -> str:
    """The kind of a handled request for ``litefs_proxy_request``, from the outcome ``_handle`` logs:
    ``read``, ``write`` (served here, as primary, or refused), ``forwarded`` (sent on to the
    primary, by forwarding or ``fly-replay``), ``passthrough`` or ``health``."""
    if outcome == "passthrough":
        return "passthrough"
    if outcome.startswith("health"):
        return "health"
    if outcome.startswith("read"):
        return "read"
    if outcome.startswith(("write: forwarded", "write: fly-replay")):
        return "forwarded"
    if outcome.startswith("write"):
        return "write"
    # The client went away (or an error) before the decision was logged: go by the method.
    return "read" if method in _READ_METHODS else "write"


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def primary_proxy_url(info: PrimaryInfo, forward_url: str, own_port: int | None) -> str | None:
    """Where the primary's proxy listens, in order of preference:

    1. ``proxy-url`` in the primary's lease value (``PrimaryInfo.extra``);
    2. ``proxy.forward-url`` with ``{hostname}`` (the primary's ``lease.hostname``) and
       ``{advertise-host}`` (the host of its ``lease.advertise-url``) filled in;
    3. the host of the primary's advertise URL with this node's own proxy port (same config on
       every node, the usual deployment).
    """
    url = info.extra.get("proxy-url")
    if isinstance(url, str) and url:
        return url.rstrip("/")
    advertise_host = (urlsplit(info.advertise_url).hostname or "") if info.advertise_url else ""
    if forward_url:
        return (
            forward_url.replace("{hostname}", info.hostname)
            .replace("{advertise-host}", _url_host(advertise_host))
            .rstrip("/")
        )
    if advertise_host and own_port:
        return f"http://{_url_host(advertise_host)}:{own_port}"
    return None


def target_base_url(target: str) -> str:
    """``proxy.target`` (``host:port`` as in LiteFS, or a full URL) as a base URL."""
    if target.startswith(":"):
        target = "127.0.0.1" + target
    if "://" not in target:
        target = "http://" + target
    return target.rstrip("/")


async def respond_text(send: Send, status: int, text: str, headers: Headers = ()) -> None:
    """A short plain-text answer, as Go's ``http.Error`` writes it (text plus newline)."""
    body = (text + "\n").encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"x-content-type-options", b"nosniff"),
                (b"content-length", str(len(body)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body, "more_body": False})


class _TrackedReceive:
    """ASGI ``receive`` that remembers whether the request body has been read to its end."""

    def __init__(self, receive: Receive) -> None:
        self._receive = receive
        self.body_done = False

    async def __call__(self) -> dict[str, Any]:
        message = await self._receive()
        if message["type"] == "http.disconnect" or not message.get("more_body", False):
            self.body_done = True
        return message

    async def drain(self, timeout: float) -> None:
        with trio.move_on_after(timeout):
            while not self.body_done:
                await self()


class ProxyApp:
    """ASGI app of one node's proxy."""

    def __init__(self, node: Any, config: Any, client: httpx.AsyncClient) -> None:
        self.node = node
        self.config = config
        self.client = client
        self.passthrough = PathMatcher(config.passthrough)
        self.always_forward = PathMatcher(config.always_forward)
        self.target = Upstream(target_base_url(config.target), TARGET_RETRY, "target")
        self.fly_app_name = os.environ.get("FLY_APP_NAME", "")
        self.own_port: int | None = None
        """Port this proxy listens on (set by the service once bound)."""
        self.node_marker = f"{node.node_id:016X}".encode()

    # -- ASGI entry ----------------------------------------------------------------------------

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            # WebSockets are not proxied (neither are they by LiteFS's proxy).
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 1003})
            return
        started = time.monotonic()
        outcome = "?"
        tracked = _TrackedReceive(receive)
        status = 0

        async def tracked_send(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            outcome = await self._handle(scope, tracked, tracked_send)
            if has_request_body(scope) and not tracked.body_done:
                # Answered without reading the body (an error, or an app that ignored it): read
                # and drop the rest, or a client still sending it would never see the answer.
                await tracked.drain(BODY_DRAIN_TIMEOUT)
        except ClientDisconnected:
            outcome = "client disconnected"
        except RequestBodyTimeout:
            # Answered 502; the unread rest of the body is not waited for (the server closes).
            outcome = "request body not received within proxy.read-timeout"
        finally:
            self._report(request_kind(outcome, scope["method"]), status, time.monotonic() - started)
            if self.config.debug:
                log.info(
                    "proxy: %s %s -> %s (%.1f ms)",
                    scope["method"],
                    scope["path"],
                    outcome,
                    (time.monotonic() - started) * 1000,
                )

    def _report(self, kind: str, status: int, seconds: float) -> None:
        """Tell other plugins (metrics) about the request through the core's hook."""
        hook = getattr(self.node, "hook", None)
        if hook is None:  # a core without NodeHandle.hook
            return
        try:
            hook.litefs_proxy_request(node=self.node, kind=kind, status=status, seconds=seconds)
        except Exception:  # a listener must never break the proxy
            log.exception("proxy: litefs_proxy_request hook failed")

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return

    # -- decision order ------------------------------------------------------------------------

    async def _handle(self, scope: dict[str, Any], receive: Receive, send: Send) -> str:
        path: str = scope["path"]
        method: str = scope["method"]
        if self.passthrough.matches(path):
            await self._to_target(scope, receive, send, cookie=False)
            return "passthrough"
        if path == HEALTH_PATH and method in _READ_METHODS:
            return await self._health(send)
        forwarded_by = self._header(scope, FORWARDED_HEADER)
        is_write = (
            method not in _READ_METHODS or self.always_forward.matches(path) or forwarded_by is not None
        )
        if not is_write:
            return await self._read(scope, receive, send)
        return await self._write(scope, receive, send, forwarded_by)

    async def _health(self, send: Send) -> str:
        lag = self.node.lag_seconds()
        if self.config.max_lag > 0 and lag > self.config.max_lag:
            await respond_text(send, 503, "Replication lag exceeded")
            return f"health 503 (lag {lag:.1f}s)"
        await respond_text(send, 200, "OK")
        return "health 200"

    async def _read(self, scope: dict[str, Any], receive: Receive, send: Send) -> str:
        txid = parse_txid_cookie(self._headers(scope, b"cookie"))
        if txid and self._db_exists():
            if not await self._wait_for_txid(txid):
                await respond_text(send, 504, "Proxy timeout")
                return f"read: TXID {txid:016x} not reached in {TXID_WAIT:.0f}s"
        await self._to_target(scope, receive, send, cookie=False)
        return "read"

    async def _write(
        self, scope: dict[str, Any], receive: Receive, send: Send, forwarded_by: str | None
    ) -> str:
        if forwarded_by is not None and not self.node.is_primary:
            reason = (
                "request was forwarded to this node by itself (set proxy.forward-url to the primary's proxy)"
                if forwarded_by.encode() == self.node_marker
                else f"request forwarded by node {forwarded_by} reached {self._hostname()}, "
                "which is not the primary; not forwarding it again"
            )
            await respond_text(send, 508, f"Proxy error: {reason}")
            return "write: loop refused"
        primary = await self._wait_for_primary()
        if self.node.is_primary:
            await self._to_target(scope, receive, send, cookie=True)
            return "write: primary"
        if primary is None:
            await respond_text(send, 503, "Proxy error: no primary available")
            return "write: no primary"
        if self.fly_app_name:
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [(b"fly-replay", f"instance={primary.hostname}".encode())],
                }
            )
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            return f"write: fly-replay to {primary.hostname}"
        url = primary_proxy_url(primary, self.config.forward_url, self.own_port)
        if url is None:
            await respond_text(
                send,
                503,
                f"Proxy error: proxy address of primary {primary.hostname!r} unknown (set proxy.forward-url)",
            )
            return "write: primary proxy unknown"
        upstream = Upstream(
            url,
            self.config.primary_redirect_timeout,
            f"primary {primary.hostname}",
            [(FORWARDED_HEADER, self.node_marker)],
        )
        await self._forward(upstream, scope, receive, send, cookie=False)
        return f"write: forwarded to {primary.hostname} at {url}"

    # -- waiting -------------------------------------------------------------------------------

    def _db_exists(self) -> bool:
        return self.config.db in self.node.database_names()

    async def _wait_for_txid(self, txid: int) -> bool:
        with trio.move_on_after(TXID_WAIT):
            while self.node.database_txid(self.config.db) < txid:
                await trio.sleep(TXID_POLL)
            return True
        return False

    async def _wait_for_primary(self) -> PrimaryInfo | None:
        """The known primary, waiting up to ``primary-redirect-timeout`` for one to appear."""
        with trio.move_on_after(self.config.primary_redirect_timeout):
            while True:
                if self.node.is_primary:
                    return current_primary(self.node)
                primary = current_primary(self.node)
                if primary is not None:
                    return primary
                await trio.sleep(PRIMARY_POLL)
        return None

    # -- forwarding ----------------------------------------------------------------------------

    async def _to_target(self, scope: dict[str, Any], receive: Receive, send: Send, *, cookie: bool) -> None:
        await self._forward(self.target, scope, receive, send, cookie=cookie)

    async def _forward(
        self, upstream: Upstream, scope: dict[str, Any], receive: Receive, send: Send, *, cookie: bool
    ) -> None:
        body = RequestBody(receive, deadline=body_deadline(scope)) if has_request_body(scope) else None
        try:
            response = await open_upstream(self.client, upstream, scope, self._outgoing_headers(scope), body)
        except UpstreamError as exc:
            log.warning("proxy: %s", exc)
            await respond_text(send, 502, f"Proxy error: {exc}")
            return
        except RequestBodyTimeout as exc:
            await respond_text(send, 502, f"Proxy error: {exc}", [(b"connection", b"close")])
            raise
        extra: Headers = []
        if cookie and self._db_exists():
            extra.append((b"set-cookie", txid_set_cookie(self.node.database_txid(self.config.db)).encode()))
        await relay_response(response, send, extra_headers=extra, head=scope["method"] == "HEAD")

    def _outgoing_headers(self, scope: dict[str, Any]) -> Headers:
        """The client's headers minus hop-by-hop ones, plus ``X-Forwarded-For/-Proto/-Host``.

        ``Host`` is kept (as LiteFS does). ``-Proto`` and ``-Host`` set by a forwarding litefs-py
        proxy are kept, since that proxy saw the original request; otherwise they describe what
        this proxy received.
        """
        incoming = strip_hop_by_hop(list(scope["headers"]))
        from_proxy = any(n == FORWARDED_HEADER for n, _ in incoming)
        out: Headers = []
        xff: list[bytes] = []
        proto = host = None
        for name, value in incoming:
            if name == b"x-forwarded-for":
                xff.append(value)
            elif name == b"x-forwarded-proto":
                proto = value
            elif name == b"x-forwarded-host":
                host = value
            elif name != FORWARDED_HEADER:
                out.append((name, value))
        client = scope.get("client")
        if client:
            xff.append(client[0].encode())
        if xff:
            out.append((b"x-forwarded-for", b", ".join(xff)))
        if not (from_proxy and proto):
            proto = scope.get("scheme", "http").encode()
        if not (from_proxy and host):
            host = self._header(scope, b"host", raw=True) or b""
        out.append((b"x-forwarded-proto", proto))
        if host:
            out.append((b"x-forwarded-host", host))
        return out

    # -- helpers -------------------------------------------------------------------------------

    @staticmethod
    def _headers(scope: dict[str, Any], name: bytes) -> list[str]:
        return [v.decode("latin-1") for n, v in scope["headers"] if n == name]

    @staticmethod
    def _header(scope: dict[str, Any], name: bytes, raw: bool = False) -> Any:
        for n, v in scope["headers"]:
            if n == name:
                return v if raw else v.decode("latin-1")
        return None

    def _hostname(self) -> str:
        return self.node.config.lease.hostname or "this node"
