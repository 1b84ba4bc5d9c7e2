"""Three real nodes (a static primary and two replicas that replicate from it), each with its
proxy and a real app writing to the mounted database.

Writes on a replica are forwarded to the primary's proxy (or answered with ``fly-replay`` on Fly.io),
and the cookie they bring back makes the next read on that replica wait until the write has been
replicated there (read-your-writes), on either replica.
"""

from __future__ import annotations

import hashlib
import re
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

from litefs.testing import LiteFSNode, free_port

pytestmark = [pytest.mark.fuse, pytest.mark.cluster]

COOKIE_RE = re.compile(r"^__txid=([0-9a-f]{16}); Path=/; Expires=.* GMT; HttpOnly$")
PATTERNS = {"passthrough": ["/static/*"], "always_forward": ["/refresh", "*.export"]}


def wait_for(cond: Callable[[], Any], what: str, timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = cond()
        except httpx.HTTPError:
            value = None
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def start_cluster(
    root: Path,
    helpers: Any,
    stack: list[Any],
    replicas: int = 2,
    replica_env: dict[str, str] | None = None,
    **proxy: Any,
) -> SimpleNamespace:
    """A primary and ``replicas`` replicas, each with its proxy and app; everything goes on ``stack``.

    The replicas find the primary's proxy through ``proxy.forward-url`` (a static lease carries no
    ``proxy-url``): the first with a literal URL, the others with the ``{advertise-host}`` pattern.
    """
    pp, pa = free_port(), free_port()
    primary = LiteFSNode(root, name="primary", config=helpers.proxy_section(pp, pa, **PATTERNS, **proxy))
    primary_app = helpers.App(pa, primary.path("app.db"), "primary")
    stack.extend([primary, primary_app])
    primary.start()
    primary_app.start()
    nodes = []
    for i in range(1, replicas + 1):
        rp, ra = free_port(), free_port()
        forward = f"http://127.0.0.1:{pp}" if i == 1 else f"http://{{advertise-host}}:{pp}"
        node = LiteFSNode(
            root,
            name=f"replica{i}",
            candidate=False,
            env=replica_env,
            config={
                "lease": {"hostname": "primary", "advertise-url": primary.url, "reconnect-delay": "100ms"},
                **helpers.proxy_section(rp, ra, forward_url=forward, **PATTERNS, **proxy),
            },
        )
        app = helpers.App(ra, node.path("app.db"), f"replica{i}")
        stack.extend([node, app])
        node.start()
        app.start()
        nodes.append(SimpleNamespace(node=node, app=app, url=f"http://127.0.0.1:{rp}"))
    cluster = SimpleNamespace(
        primary=primary, primary_app=primary_app, primary_url=f"http://127.0.0.1:{pp}", replicas=nodes
    )
    for url in [cluster.primary_url, *(r.url for r in nodes)]:
        helpers.wait_http(url + "/litefs/health")
    return cluster


def stop_all(stack: list[Any]) -> None:
    for thing in reversed(stack):
        thing.stop()


@pytest.fixture(scope="module")
def trio_(tmp_path_factory: pytest.TempPathFactory, helpers: Any) -> Iterator[SimpleNamespace]:
    """Primary + two replicas, ``max-lag: 3s`` (the health test stops the primary for a while)."""
    stack: list[Any] = []
    try:
        cluster = start_cluster(tmp_path_factory.mktemp("three"), helpers, stack, max_lag="3s")
        # Create the table through the primary so every replica has the database.
        assert httpx.post(cluster.primary_url + "/rows", content=b"seed").status_code == 201
        yield cluster
    finally:
        stop_all(stack)


@pytest.fixture(scope="module")
def pair(trio_: SimpleNamespace) -> SimpleNamespace:
    """The first replica of the module's cluster, in the shape the two-node tests used."""
    replica = trio_.replicas[0]
    return SimpleNamespace(
        primary=trio_.primary,
        primary_app=trio_.primary_app,
        primary_url=trio_.primary_url,
        replica=replica.node,
        replica_app=replica.app,
        replica_url=replica.url,
    )


@pytest.mark.parametrize("which", [0, 1])
def test_write_on_either_replica_then_read_there_with_the_cookie_sees_it(
    trio_: SimpleNamespace, which: int
) -> None:
    replica = trio_.replicas[which]
    text = f"written through replica{which + 1}"
    with httpx.Client(base_url=replica.url, timeout=30) as client:
        r = client.post("/rows", content=text.encode())
        assert r.status_code == 201 and r.headers["x-app"] == "inserted"
        assert r.json()["node"] == "primary"  # the primary's app inserted it
        match = COOKIE_RE.match(r.headers["set-cookie"])
        assert match, r.headers.get("set-cookie")
        cookie_txid = int(match.group(1), 16)
        assert cookie_txid == int(trio_.primary.pos("app.db").split("/")[0], 16)
        # The client keeps the cookie: the next read waits for replication, then the replica's own
        # app reads the row from the replica's database.
        r = client.get("/rows")
        assert r.status_code == 200
        assert r.json()["node"] == f"replica{which + 1}" and text in r.json()["rows"]
        assert int(replica.node.pos("app.db").split("/")[0], 16) >= cookie_txid


def test_write_on_a_replica_is_forwarded_to_the_primary_with_its_cookie(pair: SimpleNamespace) -> None:
    before = httpx.get(pair.primary_app.url + "/rows").json()["rows"]
    r = httpx.post(pair.replica_url + "/rows?src=replica", content=b"via replica")
    assert r.status_code == 201 and r.headers["x-app"] == "inserted"
    assert r.json() == {"id": len(before) + 1, "node": "primary"}  # the primary's app answered
    match = COOKIE_RE.match(r.headers["set-cookie"])
    assert match and int(match.group(1), 16) == int(pair.primary.pos("app.db").split("/")[0], 16)
    assert httpx.get(pair.primary_app.url + "/rows").json()["rows"] == [*before, "via replica"]


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


def test_reads_on_the_replica_go_to_its_own_app(pair: SimpleNamespace) -> None:
    r = httpx.get(pair.replica_url + "/rows")
    assert r.json()["node"] == "replica1" and "set-cookie" not in r.headers
    assert "seed" in r.json()["rows"]  # replicated from the primary


@pytest.mark.parametrize("which", [0, 1])
def test_passthrough_and_always_forward_patterns_on_a_replica(trio_: SimpleNamespace, which: int) -> None:
    replica = trio_.replicas[which]
    # passthrough: straight to this replica's own app, whatever the method; no cookie.
    r = httpx.post(replica.url + "/static/app.css", content=b"x")
    assert (r.status_code, r.json()["node"], r.json()["method"]) == (200, f"replica{which + 1}", "POST")
    assert "set-cookie" not in r.headers
    # "/static/*" does not match "/static" itself (LiteFS's pattern rules): a POST there is a write.
    r = httpx.post(replica.url + "/static", content=b"x")
    assert r.json()["node"] == "primary" and "set-cookie" in r.headers
    # always-forward: a GET treated as a write, forwarded to the primary, with the cookie.
    for path in ("/refresh", "/reports/2026.export"):
        r = httpx.get(replica.url + path)
        assert (r.status_code, r.json()["node"], r.json()["path"]) == (200, "primary", path)
        assert COOKIE_RE.match(r.headers["set-cookie"])
    # Other reads stay on the replica.
    r = httpx.get(replica.url + "/refreshments")
    assert r.json()["node"] == f"replica{which + 1}" and "set-cookie" not in r.headers


def test_patterns_on_the_primary(trio_: SimpleNamespace) -> None:
    r = httpx.post(trio_.primary_url + "/static/x", content=b"x")
    assert r.json()["node"] == "primary" and "set-cookie" not in r.headers  # passthrough: no cookie
    r = httpx.get(trio_.primary_url + "/refresh")
    assert r.json()["node"] == "primary" and COOKIE_RE.match(r.headers["set-cookie"])


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
        cluster = start_cluster(tmp_path, helpers, stack, replicas=1, replica_env={"FLY_APP_NAME": "myapp"})
        replica_url = cluster.replicas[0].url
        r = httpx.post(replica_url + "/rows", content=b"x")
        assert (r.status_code, r.headers["fly-replay"], r.content) == (200, "instance=primary", b"")
        assert "set-cookie" not in r.headers
        # Neither app was called.
        assert httpx.get(cluster.primary_app.url + "/rows").json()["rows"] == []
        assert httpx.get(cluster.replicas[0].app.url + "/rows").json()["rows"] == []
        # always-forward GETs are writes too: replayed.
        r = httpx.get(replica_url + "/refresh")
        assert (r.status_code, r.headers["fly-replay"], r.content) == (200, "instance=primary", b"")
        # Reads stay on the replica, writes on the primary itself go to its app as usual.
        assert httpx.get(replica_url + "/rows").json()["node"] == "replica1"
        assert httpx.post(cluster.primary_url + "/rows", content=b"y").status_code == 201
    finally:
        stop_all(stack)


def test_primary_killed_mid_request_gives_a_clear_error(tmp_path: Path, helpers: Any) -> None:
    stack: list[Any] = []
    try:
        cluster = start_cluster(tmp_path, helpers, stack, replicas=1)
        replica_url = cluster.replicas[0].url
        result: dict[str, Any] = {}

        def slow_write() -> None:
            try:
                result["r"] = httpx.post(replica_url + "/slow", content=b"x", timeout=30)
            except httpx.HTTPError as exc:
                result["error"] = exc

        writer = threading.Thread(target=slow_write)
        writer.start()
        # The forwarded request is now waiting in the primary's app.
        wait_for(
            lambda: httpx.get(cluster.primary_app.url + "/slow-count").json()["count"] == 1, "slow request"
        )
        started = time.monotonic()
        cluster.primary.kill()
        writer.join(15)
        assert not writer.is_alive(), "the request hung after the primary died"
        assert time.monotonic() - started < 10
        r = result.get("r")
        assert r is not None, result
        # 502 with a body naming the primary, its proxy URL and what went wrong.
        assert r.status_code == 502 and r.text.startswith("Proxy error: primary primary http://127.0.0.1:")
        assert "Server disconnected without sending a response" in r.text
        # The primary is gone: new writes fail with the same clear error (after the retries).
        r = httpx.post(replica_url + "/rows", content=b"x", timeout=30)
        assert r.status_code == 502 and "ConnectError" in r.text
        # Reads keep working on the replica, from its own copy of the data.
        r = httpx.get(replica_url + "/rows")
        assert r.status_code == 200 and r.json()["node"] == "replica1"
    finally:
        stop_all(stack)


def test_health_check_above_and_below_max_lag_on_both_replicas(trio_: SimpleNamespace) -> None:
    """Last test on the module's cluster: it freezes the primary for a few seconds."""
    healths = [r.url + "/litefs/health" for r in trio_.replicas]
    for health in healths:
        r = httpx.get(health)
        assert (r.status_code, r.text) == (200, "OK\n")  # heartbeats every second, max-lag 3 s
    assert httpx.get(trio_.primary_url + "/litefs/health").status_code == 200  # lag 0 on the primary
    proc = trio_.primary.proc
    assert proc is not None
    proc.send_signal(signal.SIGSTOP)  # no more heartbeats: the replicas' lag grows past max-lag
    try:
        for health in healths:
            wait_for(lambda h=health: httpx.get(h).status_code == 503, "lag above max-lag")
            r = httpx.get(health)
            assert (r.status_code, r.text) == (503, "Replication lag exceeded\n")
    finally:
        proc.send_signal(signal.SIGCONT)
    for health in healths:
        wait_for(lambda h=health: httpx.get(h).status_code == 200, "heartbeats again")
    # And the cluster works as before.
    with httpx.Client(base_url=trio_.replicas[1].url, timeout=30) as client:
        assert client.post("/rows", content=b"after the freeze").status_code == 201
        assert "after the freeze" in client.get("/rows").json()["rows"]
