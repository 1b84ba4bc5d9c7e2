"""A tiny web app for the proxy tests: stores rows in a SQLite database in the LiteFS mount.

Run as ``python proxy_testapp.py PORT DB_PATH NAME``. Endpoints:

* ``POST /rows`` (body = text) -> 201, ``X-App: inserted``, ``{"id", "node"}``
* ``GET /rows`` -> ``{"rows": [...], "node"}``
* ``POST /echo`` -> ``{"length", "sha256"}`` of the body (Content-Length or chunked)
* ``GET /big?n=BYTES`` -> ``n`` bytes of a repeating pattern, written 64 KiB at a time
* ``GET /stream`` -> chunked answer: ``first``, then after ``/stream-release`` was called, ``second``
* ``POST /slow`` -> answers after 60 s (for requests that get cut off)
* ``GET /slow-count`` -> ``{"count"}``: how many ``/slow`` requests have arrived (tests wait on it)
* anything else -> ``{"method", "path", "query", "headers", "node"}``
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PORT = int(sys.argv[1])
DB = sys.argv[2]
NAME = sys.argv[3]
PATTERN = bytes(range(256)) * 256  # 64 KiB
release = threading.Event()
slow_count = 0


def connect(readonly: bool) -> sqlite3.Connection:
    if readonly:
        return sqlite3.connect(f"file:{DB}?mode=ro", uri=True, timeout=10)
    return sqlite3.connect(DB, timeout=10)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # One write per answer, sent at once (no Nagle/delayed-ACK stalls on keep-alive connections).
    wbufsize = 65536
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: object) -> None:
        pass

    def send_body(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def send_json(self, status: int, obj: object, headers: dict[str, str] | None = None) -> None:
        self.send_body(status, json.dumps(obj).encode(), headers)

    def read_body(self):  # noqa: ANN201
        """Yield the request body in pieces (Content-Length or chunked)."""
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return
                left = size
                while left:
                    piece = self.rfile.read(min(left, 65536))
                    left -= len(piece)
                    yield piece
                self.rfile.readline()
        left = int(self.headers.get("Content-Length") or 0)
        while left:
            piece = self.rfile.read(min(left, 65536))
            if not piece:
                return
            left -= len(piece)
            yield piece

    def echo(self) -> None:
        path, _, query = self.path.partition("?")
        body = b"".join(self.read_body())
        self.send_json(
            200,
            {
                "method": self.command,
                "path": path,
                "query": query,
                "headers": {k.lower(): v for k, v in self.headers.items()},
                "body": body.decode("latin-1"),
                "node": NAME,
            },
        )

    def do_GET(self) -> None:  # noqa: N802
        path, _, query = self.path.partition("?")
        if path == "/rows":
            try:
                db = connect(readonly=True)
                try:
                    rows = [r[0] for r in db.execute("SELECT body FROM rows ORDER BY id")]
                finally:
                    db.close()
            except sqlite3.Error:
                rows = []
            self.send_json(200, {"rows": rows, "node": NAME})
        elif path == "/big":
            n = int(query.split("=", 1)[1])
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(n))
            self.end_headers()
            while n:
                piece = PATTERN[: min(n, len(PATTERN))]
                self.wfile.write(piece)
                n -= len(piece)
        elif path == "/stream":
            release.clear()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for text, wait in ((b"first\n", True), (b"second\n", False)):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(text), text))
                self.wfile.flush()
                if wait:
                    release.wait(20)
            self.wfile.write(b"0\r\n\r\n")
        elif path == "/slow-count":
            self.send_json(200, {"count": slow_count})
        elif path == "/stream-release":
            release.set()
            self.send_json(200, {"released": True})
        else:
            self.echo()

    do_HEAD = do_GET

    def do_POST(self) -> None:  # noqa: N802
        path = self.path.partition("?")[0]
        if path == "/rows":
            text = b"".join(self.read_body()).decode()
            with connect(readonly=False) as db:
                db.execute("CREATE TABLE IF NOT EXISTS rows (id INTEGER PRIMARY KEY, body TEXT)")
                row_id = db.execute("INSERT INTO rows (body) VALUES (?)", (text,)).lastrowid
            db.close()
            self.send_json(201, {"id": row_id, "node": NAME}, {"X-App": "inserted"})
        elif path == "/echo":
            digest = hashlib.sha256()
            length = 0
            for piece in self.read_body():
                digest.update(piece)
                length += len(piece)
            self.send_json(200, {"length": length, "sha256": digest.hexdigest()})
        elif path == "/slow":
            global slow_count
            b"".join(self.read_body())
            slow_count += 1
            time.sleep(60)
            self.send_json(200, {"slow": True})
        else:
            self.echo()

    do_PUT = do_DELETE = do_PATCH = do_POST


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        # Load generators reset their connections at the end of a run; that is not an app error.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


if __name__ == "__main__":
    server = Server(("127.0.0.1", PORT), Handler)
    server.serve_forever()
