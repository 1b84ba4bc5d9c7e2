"""The proxy's Go ``http.Server`` timeouts against raw-socket clients that are slow on purpose.

``read-header-timeout`` cuts a client that sends its headers slowly (slowloris), ``read-timeout`` one
that sends its body slowly (``502 Proxy error``, as LiteFS's proxy answers Go's body i/o timeout),
``write-timeout`` a response the client does not read (or the app does not finish) in time,
``idle-timeout`` a kept-alive connection with no next request. Like Go, the proxy closes such a
connection without an answer (but for the 502), and serves other clients meanwhile.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

from litefs.testing import LiteFSNode, free_port

pytestmark = pytest.mark.fuse

TIMEOUTS = {"read_header_timeout": "1s", "read_timeout": "2s", "write_timeout": "3s", "idle_timeout": "1s"}


@pytest.fixture(scope="module")
def proxy(tmp_path_factory: pytest.TempPathFactory, helpers: Any) -> Iterator[SimpleNamespace]:
    proxy_port, app_port = free_port(), free_port()
    node = LiteFSNode(
        tmp_path_factory.mktemp("timeouts"),
        name="primary",
        config=helpers.proxy_section(proxy_port, app_port, **TIMEOUTS),
    )
    app = helpers.App(app_port, node.path("app.db"), "primary")
    try:
        node.start()
        app.start()
        url = f"http://127.0.0.1:{proxy_port}"
        helpers.wait_http(url + "/litefs/health")
        yield SimpleNamespace(node=node, app=app, url=url, port=proxy_port)
    finally:
        app.stop()
        node.stop()


def connect(port: int, rcvbuf: int | None = None) -> socket.socket:
    sock = socket.socket()
    if rcvbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.connect(("127.0.0.1", port))
    return sock


def closed_by_peer(sock: socket.socket, wait: float) -> tuple[bool, bytes]:
    """Whether the peer closed the connection within ``wait`` seconds, and what it sent before."""
    sock.settimeout(wait)
    received = b""
    try:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                return True, received
            received += chunk
    except TimeoutError:
        return False, received
    except ConnectionResetError:
        return True, received


class Background:
    """Requests from a well-behaved client, made while a slow client holds its connection."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.statuses: list[int] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=10) as client:
            while not self.stop.is_set():
                self.statuses.append(client.get("/rows").status_code)

    def close(self) -> list[int]:
        self.stop.set()
        self.thread.join(20)
        return self.statuses


def test_slowloris_headers_are_cut_by_read_header_timeout(proxy: SimpleNamespace) -> None:
    others = Background(proxy.url)
    sock = connect(proxy.port)
    try:
        head = b"GET /rows HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 200 + b"\r\n\r\n"
        sent = 0
        closed = False
        received = b""
        # One byte every 100 ms: the whole header block would take 20 s.
        while sent < len(head):
            try:
                sock.send(head[sent : sent + 1])
            except (BrokenPipeError, ConnectionResetError):
                closed = True
                break
            sent += 1
            closed, received = closed_by_peer(sock, 0.1)
            if closed:
                break
        assert closed, "the proxy kept reading headers after read-header-timeout"
        assert sent < len(head) // 2
        assert received == b""  # Go closes without an answer
    finally:
        sock.close()
        statuses = others.close()
    assert statuses and set(statuses) == {200}, statuses


def test_headers_sent_slowly_but_in_time_are_served(proxy: SimpleNamespace) -> None:
    sock = connect(proxy.port)
    try:
        for part in (b"GET /rows HTTP/1.1\r\n", b"Host: x\r\n", b"Connection: close\r\n", b"\r\n"):
            sock.sendall(part)
            time.sleep(0.1)  # the client's pace, well inside the 1 s header timeout
        closed, received = closed_by_peer(sock, 10)
        assert closed and received.startswith(b"HTTP/1.1 200 "), received[:200]
    finally:
        sock.close()


def test_slow_body_is_cut_by_read_timeout(proxy: SimpleNamespace) -> None:
    others = Background(proxy.url)
    sock = connect(proxy.port)
    try:
        sock.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n")
        sent = 0
        closed = False
        received = b""
        # 10 bytes every 100 ms: the body would take 10 s.
        while sent < 1000:
            try:
                sock.send(b"x" * 10)
            except (BrokenPipeError, ConnectionResetError):
                closed = True
                break
            sent += 10
            closed, received = closed_by_peer(sock, 0.1)
            if closed:
                break
        assert closed, "the proxy kept reading the body after read-timeout"
        assert sent < 600
        # As LiteFS's proxy when Go's body read times out: the upstream request fails, 502.
        assert received.startswith(b"HTTP/1.1 502 "), received
        assert received.endswith(
            b"\r\n\r\nProxy error: reading the request body: i/o timeout (proxy.read-timeout)\n"
        )
    finally:
        sock.close()
        statuses = others.close()
    assert statuses and set(statuses) == {200}, statuses


def test_response_not_read_is_cut_by_write_timeout(proxy: SimpleNamespace) -> None:
    n = 64 * 1024 * 1024
    others = Background(proxy.url)
    sock = connect(proxy.port, rcvbuf=4096)
    try:
        sock.sendall(f"GET /big?n={n} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        total = 0
        sock.settimeout(10)
        # 4 KiB every 50 ms: reading the whole answer would take about 14 minutes.
        while True:
            try:
                chunk = sock.recv(4096)
            except ConnectionResetError:
                break
            if not chunk:
                break
            total += len(chunk)
            time.sleep(0.05)
        assert 0 < total < n // 10
    finally:
        sock.close()
        statuses = others.close()
    assert statuses and set(statuses) == {200}, statuses


def test_app_slower_than_write_timeout_gets_the_connection_closed(proxy: SimpleNamespace) -> None:
    sock = connect(proxy.port)
    try:
        sock.sendall(b"POST /slow HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
        # The app answers after 60 s; the write deadline (3 s) closes the connection first.
        closed, received = closed_by_peer(sock, 30)
        assert closed and received == b""
    finally:
        sock.close()


def test_idle_keep_alive_connection_is_closed_after_idle_timeout(proxy: SimpleNamespace) -> None:
    sock = connect(proxy.port)
    try:
        sock.sendall(b"GET /litefs/health HTTP/1.1\r\nHost: x\r\n\r\n")
        sock.settimeout(10)
        answer = b""
        while not answer.endswith(b"\r\n\r\nOK\n"):  # head and body may come in two pieces
            chunk = sock.recv(65536)
            assert chunk, answer
            answer += chunk
        assert answer.startswith(b"HTTP/1.1 200 ")
        # No next request: the connection goes after idle-timeout (1 s), not before.
        started = time.monotonic()
        closed, received = closed_by_peer(sock, 20)
        assert closed and received == b""
        assert time.monotonic() - started >= 0.9
    finally:
        sock.close()
