"""The proxy in a real ``litefs mount`` primary, in front of a real app writing to the mount."""

from __future__ import annotations

import hashlib
import re
import threading
import time
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

from litefs.testing import LiteFSNode, free_port

pytestmark = pytest.mark.fuse

COOKIE_RE = re.compile(
    r"^__txid=([0-9a-f]{16}); Path=/; Expires=\w{3}, \d\d \w{3} \d{4} [\d:]{8} GMT; HttpOnly$"
)
BIG = 20 * 1024 * 1024


@pytest.fixture(scope="module")
def primary(tmp_path_factory: pytest.TempPathFactory, helpers: Any) -> Iterator[SimpleNamespace]:
    proxy_port, app_port = free_port(), free_port()
    config = helpers.proxy_section(
        proxy_port, app_port, passthrough=["/static/*"], always_forward=["/refresh"]
    )
    node = LiteFSNode(tmp_path_factory.mktemp("proxy"), name="primary", config=config)
    app = helpers.App(app_port, node.path("app.db"), "primary")
    try:
        node.start()
        app.start()
        url = f"http://127.0.0.1:{proxy_port}"
        helpers.wait_http(url + "/litefs/health")
        with httpx.Client(base_url=url, timeout=30) as client:
            yield SimpleNamespace(node=node, app=app, url=url, client=client)
    finally:
        app.stop()
        node.stop()


def txid_of(node: LiteFSNode) -> int:
    return int(node.pos("app.db").split("/")[0], 16)


def test_write_reaches_the_app_gets_the_cookie_and_the_next_read_sees_it(primary: SimpleNamespace) -> None:
    r = primary.client.post("/rows", content=b"hello")
    assert r.status_code == 201  # the app's status, headers and body come back unchanged
    assert r.headers["x-app"] == "inserted" and r.json() == {"id": 1, "node": "primary"}
    match = COOKIE_RE.match(r.headers["set-cookie"])
    assert match, r.headers["set-cookie"]
    assert int(match.group(1), 16) == txid_of(primary.node)
    r = primary.client.get("/rows", headers={"Cookie": f"__txid={match.group(1)}"})
    assert r.status_code == 200 and "hello" in r.json()["rows"]
    assert "set-cookie" not in r.headers  # reads get no cookie


def test_read_waits_until_the_cookie_transaction_is_committed(primary: SimpleNamespace) -> None:
    primary.client.post("/rows", content=b"first")
    ahead = txid_of(primary.node) + 1
    result: dict[str, Any] = {}

    def read() -> None:
        result["response"] = primary.client.get("/rows", headers={"Cookie": f"__txid={ahead:016x}"})

    reader = threading.Thread(target=read)
    reader.start()
    time.sleep(0.3)  # the read is now waiting for TXID `ahead`
    assert reader.is_alive()
    httpx.post(primary.app.url + "/rows", content=b"late")  # committed straight through the app
    reader.join(10)
    assert result["response"].status_code == 200
    assert "late" in result["response"].json()["rows"]


def test_read_ahead_of_the_database_times_out_with_504(primary: SimpleNamespace) -> None:
    primary.client.post("/rows", content=b"x")
    started = time.monotonic()
    r = primary.client.get("/rows", headers={"Cookie": "__txid=00000000ffffffff"})
    assert (r.status_code, r.text) == (504, "Proxy timeout\n")
    assert 4.5 < time.monotonic() - started < 10


def test_health_check_on_the_primary(primary: SimpleNamespace) -> None:
    r = primary.client.get("/litefs/health")
    assert (r.status_code, r.text) == (200, "OK\n")


def test_passthrough_gets_no_cookie_and_always_forward_does(primary: SimpleNamespace) -> None:
    r = primary.client.post("/static/upload", content=b"x")
    assert r.status_code == 200 and r.json()["path"] == "/static/upload"
    assert "set-cookie" not in r.headers
    r = primary.client.get("/refresh?full=1")
    assert r.json()["query"] == "full=1" and COOKIE_RE.match(r.headers["set-cookie"])
    r = primary.client.head("/refresh")
    assert r.status_code == 200 and r.content == b"" and "set-cookie" in r.headers


def test_forwarded_headers_reach_the_app(primary: SimpleNamespace) -> None:
    headers = primary.client.get("/headers", headers={"X-Forwarded-For": "203.0.113.7"}).json()["headers"]
    assert headers["x-forwarded-for"] == "203.0.113.7, 127.0.0.1"
    assert headers["x-forwarded-proto"] == "http"
    assert headers["x-forwarded-host"] == headers["host"] == primary.url.removeprefix("http://")


def test_large_request_bodies_stream_to_the_app(primary: SimpleNamespace) -> None:
    data = bytes(range(256)) * (BIG // 256)
    r = primary.client.post("/echo", content=data)
    assert r.json() == {"length": BIG, "sha256": hashlib.sha256(data).hexdigest()}

    def chunks() -> Iterator[bytes]:  # no Content-Length: chunked all the way to the app
        for i in range(0, BIG, 1 << 20):
            yield data[i : i + (1 << 20)]

    r = primary.client.post("/echo", content=chunks())
    assert r.json() == {"length": BIG, "sha256": hashlib.sha256(data).hexdigest()}


def test_large_responses_stream_to_the_client(primary: SimpleNamespace) -> None:
    digest, length = hashlib.sha256(), 0
    with primary.client.stream("GET", f"/big?n={BIG}") as r:
        assert r.headers["content-length"] == str(BIG)
        for chunk in r.iter_raw():
            digest.update(chunk)
            length += len(chunk)
    expected = (bytes(range(256)) * 256) * (BIG // 65536)
    assert length == BIG and digest.hexdigest() == hashlib.sha256(expected).hexdigest()


def test_each_chunk_of_a_streaming_answer_is_passed_on_at_once(primary: SimpleNamespace) -> None:
    with primary.client.stream("GET", "/stream") as r:
        lines = r.iter_lines()
        # The app holds back its second chunk until released: the first must arrive on its own.
        assert next(lines) == "first"
        httpx.get(primary.app.url + "/stream-release")
        assert next(lines) == "second"
