"""The app starting late, and the app failing: retries and 502s through a real node's proxy."""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

import httpx
import pytest

from litefs.testing import LiteFSNode, free_port

pytestmark = pytest.mark.fuse


class HangUpServer:
    """Accepts connections on ``port`` and closes each at once: an app that crashes on every request."""

    def __init__(self, port: int) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", port))
        self.sock.listen()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            conn.recv(65536)
            conn.close()

    def close(self) -> None:
        self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        self.thread.join(5)


def test_app_started_late_then_crashing(tmp_path: Any, helpers: Any) -> None:
    proxy_port, app_port = free_port(), free_port()
    node = LiteFSNode(tmp_path, name="primary", config=helpers.proxy_section(proxy_port, app_port))
    app = helpers.App(app_port, node.path("app.db"), "primary")
    url = f"http://127.0.0.1:{proxy_port}"
    try:
        node.start()
        helpers.wait_http(url + "/litefs/health")
        # No app yet: the proxy keeps retrying the refused connection (every 100 ms, up to 30 s).
        result: dict[str, Any] = {}
        writer = threading.Thread(
            target=lambda: result.setdefault("r", httpx.post(url + "/rows", content=b"early", timeout=40))
        )
        writer.start()
        time.sleep(1.0)
        assert writer.is_alive()
        app.start()
        writer.join(20)
        r = result["r"]
        assert r.status_code == 201 and r.headers["x-app"] == "inserted"
        assert r.headers["set-cookie"].startswith("__txid=")
        app.stop()

        # An app that hangs up without answering: 502 at once, with the reason.
        server = HangUpServer(app_port)
        try:
            started = time.monotonic()
            r = httpx.get(url + "/rows", timeout=20)
            assert r.status_code == 502
            assert r.text.startswith(f"Proxy error: target http://127.0.0.1:{app_port}: RemoteProtocolError")
            assert time.monotonic() - started < 5
        finally:
            server.close()
        # The node itself is unaffected.
        assert httpx.get(url + "/litefs/health").status_code == 200
    finally:
        app.stop()
        node.stop()
