"""The proxy's HTTP/1.1 server: hypercorn's connection handling with Go ``http.Server`` deadlines.

hypercorn has a keep-alive timeout and a per-receive inactivity timeout, but nothing like Go's
``ReadHeaderTimeout`` (whole header block), ``ReadTimeout`` (header block and body together) or
``WriteTimeout`` (whole response), which LiteFS's proxy exposes as ``proxy.read-header-timeout``,
``proxy.read-timeout`` and ``proxy.write-timeout``. :class:`TimedTCPServer` adds them to hypercorn's
trio connection class, with Go's semantics:

* the header deadline starts when the connection is accepted (first request) or when the first
  byte of a later request arrives; it is ``read-header-timeout``, or ``read-timeout`` when that is
  0, or none when both are 0;
* the read deadline covers headers and body from the same start, and is lifted once the body has
  been read (the handler may then take as long as it needs). The body part is enforced where the
  body is read, by the proxy app (through ``scope["state"]``), which answers ``502 Proxy error:
  reading the request body: i/o timeout`` as LiteFS's proxy does when Go's body read times out;
  the connection is closed :data:`BODY_GRACE` seconds later if the body is still not read;
* the write deadline starts when the request headers have been read and covers everything written
  for that request;
* ``idle-timeout`` (0 means ``read-timeout``; 0 again means none) is the wait for the next request
  on a kept-alive connection.

Go closes a connection whose header read timed out without answering, and cuts the response of a
request whose write deadline passed. So does this server: a slow client (slowloris, a client
that never reads) only ever costs its own connection, while other connections are served.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import h11
import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.events import Closed, Event, RawData, Updated
from hypercorn.trio.tcp_server import MAX_RECV, TCPServer
from hypercorn.trio.worker_context import WorkerContext
from hypercorn.typing import ConnectionState
from hypercorn.utils import repr_socket_addr, wrap_app

from .upstream import BODY_DEADLINE_KEY

log = logging.getLogger("litefs.plugin.proxy")

#: Seconds after the body deadline at which the server closes a connection whose body is still
#: unread (the app normally answers 502 at the deadline itself).
BODY_GRACE = 1.0


@dataclass(frozen=True)
class Timeouts:
    """The four ``proxy.*`` server timeouts in seconds (0 = none), as Go's ``http.Server`` has them."""

    read: float = 0.0
    read_header: float = 10.0
    write: float = 0.0
    idle: float = 30.0

    @property
    def header(self) -> float:
        """Go: ``ReadHeaderTimeout``, or ``ReadTimeout`` when that is 0."""
        return self.read_header if self.read_header > 0 else self.read

    @property
    def keep_alive(self) -> float:
        """Go: ``IdleTimeout``, or ``ReadTimeout`` when that is 0; ``inf`` when both are 0."""
        value = self.idle if self.idle > 0 else self.read
        return value if value > 0 else math.inf

    @classmethod
    def from_config(cls, config: Any) -> Timeouts:
        return cls(config.read_timeout, config.read_header_timeout, config.write_timeout, config.idle_timeout)


class TimedTCPServer(TCPServer):
    """One client connection: hypercorn's HTTP handling plus header, read and write deadlines."""

    def __init__(self, *args: Any, timeouts: Timeouts, debug: bool = False) -> None:
        super().__init__(*args)
        self.timeouts = timeouts
        self.debug = debug
        # Go starts the first request's clock when the connection is accepted.
        self._request_start: float | None = trio.current_time()
        self._in_request = False
        self._cycle = 0
        self._write_deadline = math.inf
        self._read_scope: trio.CancelScope | None = None
        self._watchdog = trio.CancelScope()

    # -- deadlines -----------------------------------------------------------------------------

    def _their_state(self) -> Any:
        connection = getattr(self.protocol.protocol, "connection", None)
        return getattr(connection, "their_state", None)

    def _read_deadline(self) -> float:
        start = self._request_start
        if start is None:
            return math.inf  # waiting for the next request: hypercorn's keep-alive timer runs
        if not self._in_request:
            header = self.timeouts.header
            return start + header if header > 0 else math.inf
        if self.timeouts.read > 0 and self._their_state() is h11.SEND_BODY:
            return start + self.timeouts.read + BODY_GRACE
        return math.inf  # body read (or none): no read deadline while the handler runs

    def _update_read_deadline(self) -> None:
        if self._read_scope is not None:
            self._read_scope.deadline = self._read_deadline()

    def _timed_out(self, what: str) -> None:
        if self.debug:
            client = getattr(self.protocol.protocol, "client", None)
            log.info("proxy: closing connection from %s: %s", client, what)

    # -- hypercorn hooks -----------------------------------------------------------------------

    async def _read_data(self) -> None:
        while True:
            with trio.CancelScope(deadline=self._read_deadline()) as scope:
                self._read_scope = scope
                try:
                    data = await self.stream.receive_some(MAX_RECV)
                except (trio.ClosedResourceError, trio.BrokenResourceError):
                    break
                finally:
                    self._read_scope = None
            if scope.cancelled_caught:
                # Go closes the connection without an answer when a read deadline passes.
                self._timed_out(
                    "request body not read within proxy.read-timeout"
                    if self._in_request
                    else "request headers not read within proxy.read-header-timeout"
                )
                break
            if data and self._request_start is None:
                # First byte of the next request: its header clock starts now and the keep-alive
                # timer, which only covers waiting for that byte, stops.
                self._request_start = trio.current_time()
                await self.idle_task.stop()
            await self.protocol.handle(RawData(bytes(data)))
            if data == b"":
                break
        self._watchdog.cancel()
        await self.protocol.handle(Closed())

    async def protocol_send(self, event: Event) -> None:
        if isinstance(event, RawData):
            async with self.send_lock:
                try:
                    # Shielded as in hypercorn (a cancelled app must not leave half a frame), but
                    # bounded by the request's write deadline.
                    with trio.CancelScope(shield=True, deadline=self._write_deadline) as scope:
                        await self.stream.send_all(event.data)
                    timed_out = scope.cancelled_caught
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    await self.protocol.handle(Closed())
                    return
            if timed_out:
                self._timed_out("response not written within proxy.write-timeout")
                await self._abort()
            return
        if isinstance(event, Closed):
            self._watchdog.cancel()
        elif isinstance(event, Updated):
            if event.idle:
                # Response complete, connection kept alive: wait for the next request's first byte.
                self._watchdog.cancel()
                self._in_request = False
                self._request_start = None
                self._write_deadline = math.inf
            else:
                # Request headers read: Go's write deadline starts now.
                self._in_request = True
                self._cycle += 1
                if self._request_start is None:
                    self._request_start = trio.current_time()
                # Read by the app (scope["state"] is a copy of this dict made for each request).
                self.state[BODY_DEADLINE_KEY] = (
                    self._request_start + self.timeouts.read if self.timeouts.read > 0 else math.inf
                )
                if self.timeouts.write > 0:
                    self._write_deadline = trio.current_time() + self.timeouts.write
                    self._watchdog = trio.CancelScope(deadline=self._write_deadline)
                    self._task_group.spawn(self._write_watchdog, self._watchdog, self._cycle)
            self._update_read_deadline()
        await super().protocol_send(event)

    async def _write_watchdog(self, scope: trio.CancelScope, cycle: int) -> None:
        """Cut a response still unfinished at the write deadline (a slow app, a client not reading).

        ``scope`` ends at the deadline, or earlier (cancelled) when the response completes or the
        connection closes, so a finished connection does not linger until the deadline.
        """
        with scope:
            await trio.sleep_forever()
        if scope.cancel_called and trio.current_time() < self._write_deadline:
            return  # cancelled early: the response finished or the connection closed
        if self._cycle == cycle and self._in_request:
            self._timed_out("response not written within proxy.write-timeout")
            await self._abort()

    async def _abort(self) -> None:
        with trio.CancelScope(shield=True):
            try:
                await self.stream.aclose()
            finally:
                await self.protocol.handle(Closed())


def hypercorn_config(config: Any) -> HypercornConfig:
    """hypercorn settings of the proxy server (the Go timeouts are :class:`TimedTCPServer`'s job)."""
    from litefs.http.server import bind_address

    hc = HypercornConfig()
    hc.bind = [bind_address(config.addr)]
    hc.errorlog = logging.getLogger("litefs.plugin.proxy.http")
    hc.accesslog = None
    # The upstream's own Date/Server headers are passed through instead.
    hc.include_date_header = False
    hc.include_server_header = False
    hc.keep_alive_timeout = Timeouts.from_config(config).keep_alive
    # Bodies of any size stream through; the app decides what it accepts.
    hc.h11_max_incomplete_size = 64 * 1024
    return hc


async def serve(
    app: Callable[..., Any],
    config: Any,
    *,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``app`` (ASGI) on ``config.addr`` until cancelled; report the bound URLs to ``task_status``.

    Plain HTTP only (as LiteFS's proxy); no lifespan events (the proxy app has no start-up work).
    """
    hc = hypercorn_config(config)
    timeouts = Timeouts.from_config(config)
    sockets = hc.create_sockets()
    listeners = []
    binds = []
    for sock in sockets.insecure_sockets:
        sock.listen(hc.backlog)
        listeners.append(trio.SocketListener(trio.socket.from_stdlib_socket(sock)))
        binds.append(f"http://{repr_socket_addr(sock.family, sock.getsockname())}")
    wrapped = wrap_app(app, hc.wsgi_max_body_size, None)
    context = WorkerContext(None)

    async def handle(stream: trio.SocketStream) -> None:
        # A state dict per connection: it carries that connection's request deadlines to the app.
        state = ConnectionState({})
        await TimedTCPServer(wrapped, hc, context, state, stream, timeouts=timeouts, debug=config.debug).run()

    async with trio.open_nursery() as nursery:
        task_status.started(binds)
        await trio.serve_listeners(handle, listeners, handler_nursery=nursery)
