"""Writes on replicas: forwarded to the primary's proxy, or answered with ``fly-replay`` on Fly.io.

Replication between nodes does not exist yet, so replicas run with ``skip-sync: true`` (they would
never become ready) and their databases stay empty; the read-your-writes test on a replica is an
expected failure until replication lands.
"""

from __future__ import annotations

import hashlib
import re
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

from litefs.testing import LiteFSNode, free_port

pytestmark = [pytest.mark.fuse, pytest.mark.cluster]

COOKIE_RE = re.compile(r"^__txid=([0-9a-f]{16}); Path=/; Expires=.* GMT; HttpOnly$")


def start_pair(root: Path, helpers: Any, stack: list[Any], **replica_env: str) -> SimpleNamespace:
    """A primary and a replica, each with its proxy and app; everything started goes on ``stack``."""
    pp, pa, rp, ra = free_port(), free_port(), free_port(), free_port()
    primary = LiteFSNode(root, name="primary", config=helpers.proxy_section(pp, pa))
    replica = LiteFSNode(
        root,
        name="replica",
        candidate=False,
        env=replica_env or None,
        config={
            "skip-sync": True,
            "lease": {"hostname": "primary", "advertise-url": primary.url},
            **helpers.proxy_section(rp, ra, forward_url=f"http://127.0.0.1:{pp}"),
        },
    )
    primary_app = helpers.App(pa, primary.path("app.db"), "primary")
    replica_app = helpers.App(ra, replica.path("app.db"), "replica")
    stack.extend([primary, replica, primary_app, replica_app])
    primary.start()
    replica.start()
    primary_app.start()
    replica_app.start()
    pair = SimpleNamespace(
        primary=primary,
        replica=replica,
        primary_app=primary_app,
        replica_app=replica_app,
        primary_url=f"http://127.0.0.1:{pp}",
        replica_url=f"http://127.0.0.1:{rp}",
    )
    helpers.wait_http(pair.primary_url + "/litefs/health")
    helpers.wait_http(pair.replica_url + "/litefs/health")
    return pair


def stop_all(stack: list[Any]) -> None:
    for thing in reversed(stack):
        thing.stop()


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory, helpers: Any) -> Iterator[SimpleNamespace]:
    stack: list[Any] = []
    try:
        yield start_pair(tmp_path_factory.mktemp("pair"), helpers, stack)
    finally:
        stop_all(stack)


def test_write_on_a_replica_is_forwarded_to_the_primary_with_its_cookie(pair: SimpleNamespace) -> None:
    r = httpx.post(pair.replica_url + "/rows?src=replica", content=b"via replica")
    assert r.status_code == 201 and r.headers["x-app"] == "inserted"
    assert r.json() == {"id": 1, "node": "primary"}  # the primary's app answered
    match = COOKIE_RE.match(r.headers["set-cookie"])
    assert match and int(match.group(1), 16) == int(pair.primary.pos("app.db").split("/")[0], 16)
    assert httpx.get(pair.primary_app.url + "/rows").json()["rows"] == ["via replica"]


def test_forwarded_request_keeps_method_query_headers_and_sets_x_forwarded(pair: SimpleNamespace) -> None:
    r = httpx.patch(
        pair.replica_url + "/anything?a=1&b=two",
        content=b"body",
        headers={"X-Custom": "kept", "X-Forwarded-For": "203.0.113.7"},
    )
    echo = r.json()
    assert (echo["node"], echo["method"], echo["path"], echo["query"]) == (
        "primary",
        "PATCH",
        "/anything",
        "a=1&b=two",
    )
    assert echo["body"] == "body"
    headers = echo["headers"]
    assert headers["x-custom"] == "kept"
    # client -> replica proxy -> primary proxy -> app: two hops appended.
    assert headers["x-forwarded-for"] == "203.0.113.7, 127.0.0.1, 127.0.0.1"
    assert headers["x-forwarded-proto"] == "http"
    assert headers["x-forwarded-host"] == headers["host"] == pair.replica_url.removeprefix("http://")
    assert "litefs-proxy-forwarded" not in headers


def test_large_write_streams_through_both_proxies(pair: SimpleNamespace) -> None:
    data = bytes(range(256)) * (20 * 1024 * 1024 // 256)
    r = httpx.post(pair.replica_url + "/echo", content=data, timeout=60)
    assert r.json() == {"length": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def test_read_on_the_replica_with_the_cookie_sees_the_forwarded_write(pair: SimpleNamespace) -> None:
    with httpx.Client() as client:
        r = client.post(pair.replica_url + "/rows", content=b"read your writes")
        cookie = r.headers["set-cookie"].split(";")[0]
        r = client.get(pair.replica_url + "/rows", headers={"Cookie": cookie})
    assert r.status_code == 200 and "read your writes" in r.json()["rows"]


def test_reads_on_the_replica_go_to_its_own_app(pair: SimpleNamespace) -> None:
    r = httpx.get(pair.replica_url + "/rows")
    assert r.json()["node"] == "replica" and "set-cookie" not in r.headers
    assert httpx.get(pair.replica_url + "/litefs/health").status_code == 200  # lag 0 before any sync


def test_a_forwarded_request_is_not_forwarded_again(pair: SimpleNamespace) -> None:
    r = httpx.post(
        pair.replica_url + "/rows", content=b"x", headers={"Litefs-Proxy-Forwarded": "00000000000000AB"}
    )
    assert r.status_code == 508
    assert r.text.startswith("Proxy error: request forwarded by node 00000000000000AB reached primary")
    assert "not forwarding it again" in r.text
    # Refused before its 20 MB body was read: the body is drained so the client still gets the answer.
    r = httpx.post(
        pair.replica_url + "/echo",
        content=b"x" * (20 * 1024 * 1024),
        headers={"Litefs-Proxy-Forwarded": "00000000000000AB"},
        timeout=20,
    )
    assert r.status_code == 508


def test_fly_replay_on_a_replica_when_fly_app_name_is_set(tmp_path: Path, helpers: Any) -> None:
    stack: list[Any] = []
    try:
        pair = start_pair(tmp_path, helpers, stack, FLY_APP_NAME="myapp")
        r = httpx.post(pair.replica_url + "/rows", content=b"x")
        assert (r.status_code, r.headers["fly-replay"], r.content) == (200, "instance=primary", b"")
        assert "set-cookie" not in r.headers
        # Neither app was called.
        assert httpx.get(pair.primary_app.url + "/rows").json()["rows"] == []
        # Writes on the primary itself go to its app as usual.
        assert httpx.post(pair.primary_url + "/rows", content=b"y").status_code == 201
    finally:
        stop_all(stack)


def test_primary_killed_mid_request_gives_a_clear_error(tmp_path: Path, helpers: Any) -> None:
    stack: list[Any] = []
    try:
        pair = start_pair(tmp_path, helpers, stack)
        result: dict[str, Any] = {}

        def slow_write() -> None:
            try:
                result["r"] = httpx.post(pair.replica_url + "/slow", content=b"x", timeout=30)
            except httpx.HTTPError as exc:
                result["error"] = exc

        writer = threading.Thread(target=slow_write)
        writer.start()
        time.sleep(0.5)  # the request now waits in the primary's app
        started = time.monotonic()
        pair.primary.kill()
        writer.join(15)
        assert not writer.is_alive(), "the request hung after the primary died"
        assert time.monotonic() - started < 10
        r = result.get("r")
        assert r is not None, result
        assert r.status_code == 502 and r.text.startswith("Proxy error: primary primary http://127.0.0.1:")
        # The primary is gone: new writes fail fast with the same clear error (after the retries).
        r = httpx.post(pair.replica_url + "/rows", content=b"x", timeout=30)
        assert r.status_code == 502 and "ConnectError" in r.text
    finally:
        stop_all(stack)


def test_health_check_fails_on_a_replica_that_lost_its_primary(tmp_path: Path, helpers: Any) -> None:
    pp, pa, rp, ra = free_port(), free_port(), free_port(), free_port()
    primary = LiteFSNode(tmp_path, name="primary", config=helpers.proxy_section(pp, pa))
    replica = LiteFSNode(
        tmp_path,
        name="replica",
        candidate=False,
        config={
            "lease": {"hostname": "primary", "advertise-url": primary.url},
            **helpers.proxy_section(rp, ra, max_lag="1s"),
        },
    )
    replica_app = helpers.App(ra, replica.path("app.db"), "replica")
    stack: list[Any] = [primary, replica, replica_app]
    try:
        primary.start()
        replica.start()  # ready once caught up: heartbeats arrive every second
        replica_app.start()
        health = f"http://127.0.0.1:{rp}/litefs/health"
        helpers.wait_http(health)
        assert (httpx.get(health).status_code, httpx.get(health).text) == (200, "OK\n")
        assert primary.proc is not None
        primary.proc.send_signal(signal.SIGSTOP)  # no more heartbeats: the replica's lag grows
        try:
            deadline = time.monotonic() + 10
            while httpx.get(health).status_code == 200 and time.monotonic() < deadline:
                time.sleep(0.05)
            r = httpx.get(health)
            assert (r.status_code, r.text) == (503, "Replication lag exceeded\n")
        finally:
            primary.proc.send_signal(signal.SIGCONT)
        deadline = time.monotonic() + 10
        while httpx.get(health).status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert httpx.get(health).status_code == 200  # heartbeats again: healthy again
    finally:
        stop_all(stack)
