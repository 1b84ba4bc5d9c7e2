"""Sending one ASGI request to an upstream HTTP server and streaming the answer back.

The upstream is either the app (``proxy.target``) or, for a write on a replica, the primary node's
proxy. Bodies are streamed in both directions chunk by chunk, so memory stays flat however large a
body is, and every chunk is handed to the client as soon as it arrives (LiteFS flushes after each
read for the same reason: server-sent events and other streaming answers must not stall).
"""

from __future__ import annotations

import errno
import http.cookiejar
import logging
import math
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import trio

log = logging.getLogger("litefs.plugin.proxy")

#: Headers that describe one hop, never passed on (RFC 9110 7.6.1).
HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
    }
)
#: How often a refused connection is retried (LiteFS: every 100 ms).
RETRY_INTERVAL = 0.1

Headers = list[tuple[bytes, bytes]]
Send = Callable[[dict[str, Any]], Any]
Receive = Callable[[], Any]


class ClientDisconnected(Exception):
    """The client went away while its request body was being read."""


class RequestBodyTimeout(Exception):
    """The client did not send its whole body by the request's ``proxy.read-timeout`` deadline.

    Go's server fails the body read with an i/o timeout there, and LiteFS's proxy answers that
    failed upstream request with ``502 Proxy error: ...``; so does this one.
    """


#: Key in the connection state (ASGI ``scope["state"]``) under which the server puts the request's
#: body deadline (trio time): see :mod:`litefs_proxy.server`.
BODY_DEADLINE_KEY = "litefs_proxy.body_deadline"


def body_deadline(scope: dict[str, Any]) -> float:
    """The trio time by which the request body must have arrived (``inf``: no limit)."""
    state = scope.get("state") or {}
    return float(state.get(BODY_DEADLINE_KEY, math.inf))


class UpstreamError(Exception):
    """The upstream could not be reached or broke off before answering (becomes a 502)."""


def new_client() -> httpx.AsyncClient:
    """An HTTP client for upstream requests.

    No environment proxies (``HTTP_PROXY`` must not capture app traffic), no cookie jar (answers
    are passed on, never remembered), no read timeout (a streaming answer may take as long as it
    likes, as in LiteFS), no limit on concurrent connections.
    """
    return httpx.AsyncClient(
        trust_env=False,
        cookies=http.cookiejar.CookieJar(http.cookiejar.DefaultCookiePolicy(allowed_domains=[])),
        timeout=httpx.Timeout(None, connect=10.0),
        limits=httpx.Limits(max_connections=None, max_keepalive_connections=256, keepalive_expiry=30.0),
        follow_redirects=False,
    )


def strip_hop_by_hop(headers: Headers) -> Headers:
    """Drop hop-by-hop headers, including the ones a ``Connection`` header names."""
    named = set(HOP_BY_HOP)
    for name, value in headers:
        if name.lower() == b"connection":
            named.update(v.strip().lower() for v in value.split(b","))
    return [(n, v) for n, v in headers if n.lower() not in named]


def has_request_body(scope: dict[str, Any]) -> bool:
    """Whether the client sends a body at all (so GETs go out without ``Transfer-Encoding``)."""
    for name, value in scope["headers"]:
        if name == b"transfer-encoding":
            return True
        if name == b"content-length":
            return value.strip() not in (b"", b"0")
    # HTTP/2 frames bodies without either header.
    return scope.get("http_version") == "2" and scope["method"] not in ("GET", "HEAD")


@dataclass
class RequestBody:
    """The client's body as an async iterator; remembers whether reading has begun (no retry then)."""

    receive: Receive
    deadline: float = math.inf
    """trio time by which the body must have arrived (``proxy.read-timeout``)."""
    started: bool = False
    done: bool = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        self.started = True
        while not self.done:
            with trio.move_on_at(self.deadline) as scope:
                message = await self.receive()
            if scope.cancelled_caught:
                raise RequestBodyTimeout("reading the request body: i/o timeout (proxy.read-timeout)")
            if message["type"] == "http.disconnect":
                raise ClientDisconnected("client disconnected while sending the request body")
            self.done = not message.get("more_body", False)
            chunk = message.get("body", b"")
            if chunk:
                yield chunk


@dataclass
class Upstream:
    """Where a request goes and how long a refused connection is retried."""

    base_url: str
    """``http://host:port`` without a trailing slash."""
    retry_refused_for: float
    description: str = "target"
    extra_headers: Headers = field(default_factory=list)


def is_connection_refused(exc: BaseException) -> bool:
    """True when ``exc`` (or anything it wraps) is ECONNREFUSED: nobody listens there yet."""
    seen: set[int] = set()
    stack: list[BaseException] = [exc]
    while stack:
        e = stack.pop()
        if id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, ConnectionRefusedError) or getattr(e, "errno", None) == errno.ECONNREFUSED:
            return True
        if "connection refused" in str(e).lower():
            return True
        stack.extend(x for x in (e.__cause__, e.__context__) if x is not None)
        stack.extend(getattr(e, "exceptions", ()))
    return False


async def open_upstream(
    client: httpx.AsyncClient,
    upstream: Upstream,
    scope: dict[str, Any],
    headers: Headers,
    body: RequestBody | None,
) -> httpx.Response:
    """Send the request head (and stream the body); return the answer with its body unread.

    A refused connection is retried every 100 ms for ``upstream.retry_refused_for`` seconds as long
    as no body byte has been consumed. Any other transport failure raises :class:`UpstreamError`.
    """
    path = scope.get("raw_path") or scope["path"].encode()
    url = upstream.base_url + path.decode("latin-1")
    if scope.get("query_string"):
        url += "?" + scope["query_string"].decode("latin-1")
    deadline = trio.current_time() + upstream.retry_refused_for
    while True:
        request = httpx.Request(
            scope["method"],
            url,
            headers=headers + upstream.extra_headers,
            content=body if body is not None else None,
        )
        try:
            return await client.send(request, stream=True)
        except httpx.TransportError as exc:
            retry = (
                is_connection_refused(exc)
                and (body is None or not body.started)
                and trio.current_time() < deadline
            )
            if not retry:
                raise UpstreamError(f"{upstream.description} {upstream.base_url}: {describe(exc)}") from exc
            await trio.sleep(RETRY_INTERVAL)


def describe(exc: BaseException) -> str:
    """A short, readable reason for a transport failure."""
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


async def relay_response(
    response: httpx.Response, send: Send, *, extra_headers: Headers = (), head: bool = False
) -> None:
    """Stream an upstream answer to the ASGI client: status, headers (plus ``extra_headers``), body.

    A failure after the status line has gone out cannot become a 502 any more; it is raised so the
    server drops the connection and the client sees an incomplete answer rather than a truncated
    body that looks complete.
    """
    headers = strip_hop_by_hop(list(response.headers.raw)) + list(extra_headers)
    await send({"type": "http.response.start", "status": response.status_code, "headers": headers})
    try:
        if not head:
            async for chunk in response.aiter_raw():
                if chunk:
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
    except httpx.TransportError as exc:
        log.warning("proxy: upstream broke off its answer: %s", describe(exc))
        raise UpstreamError(f"upstream broke off its answer: {describe(exc)}") from exc
    finally:
        await response.aclose()
    await send({"type": "http.response.body", "body": b"", "more_body": False})
