"""The proxy's pieces without FUSE: patterns, cookie, config, address rules, and the decision order
driven in-process against a fake node and a mock app."""

from __future__ import annotations

import re
import textwrap
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import trio

import litefs_proxy.app as proxy_app
from litefs.config import ConfigError, parse_config
from litefs.lease import PrimaryInfo
from litefs.testing import free_port
from litefs_proxy import ProxyConfig, ProxyConfigError, advertised_proxy_url
from litefs_proxy.app import ProxyApp, primary_proxy_url, target_base_url
from litefs_proxy.cookies import parse_txid_cookie, txid_set_cookie
from litefs_proxy.patterns import PathMatcher
from litefs_proxy.server import Timeouts
from litefs_proxy.upstream import Upstream, UpstreamError, new_client, open_upstream

# --- patterns (LiteFS http_test.go cases first) ---------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "path", "expected"),
    [
        ("/build/*", "/build/", True),
        ("/build/*", "/build/foo/bar", True),
        ("/build/*", "/build", False),
        ("*.png", "/images/pic.png", True),
        ("*foo*", "foo/bar", True),
        ("*.png", "/images/pic.png.txt", False),  # anchored at the end
        ("/api", "/api", True),
        ("/api", "/api/x", False),  # anchored: no prefix match without '*'
        ("/a.c", "/abc", False),  # '.' is literal, not a regex wildcard
        ("/x+(y)?", "/x+(y)?", True),  # regex metacharacters are literal
    ],
)
def test_pattern_matching(pattern: str, path: str, expected: bool) -> None:
    assert PathMatcher([pattern]).matches(path) is expected


def test_pattern_list_matches_if_any_matches() -> None:
    matcher = PathMatcher(["/static/*", "*.css"])
    assert matcher.matches("/static/app.js") and matcher.matches("/site.css")
    assert not matcher.matches("/index.html")
    assert not PathMatcher([]).matches("/anything")


# --- the __txid cookie ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "txid"),
    [
        (["__txid=00000000000000ff"], 255),
        (["a=1; __txid=000000000000000A; b=2"], 10),
        (["a=1", "__txid=0000000000000003"], 3),
        (["__txid=ff"], 0),  # not 16 digits
        (["__txid=000000000000000g"], 0),  # not hex
        (["__txid=00000000000000001"], 0),  # 17 digits
        (["__txid=0000000000000000"], 0),
        (["other=0000000000000001"], 0),
        ([], 0),
    ],
)
def test_parse_txid_cookie(headers: list[str], txid: int) -> None:
    assert parse_txid_cookie(headers) == txid


def test_set_cookie_format() -> None:
    value = txid_set_cookie(0x2A, now=0.0)
    assert value == "__txid=000000000000002a; Path=/; Expires=Thu, 01 Jan 1970 00:05:00 GMT; HttpOnly"


# --- configuration --------------------------------------------------------------------------------


def test_defaults_are_litefs_defaults() -> None:
    c = ProxyConfig()
    assert (c.max_lag, c.primary_redirect_timeout, c.read_header_timeout, c.idle_timeout) == (10, 5, 10, 30)
    assert (c.read_timeout, c.write_timeout, c.debug, c.forward_url) == (0, 0, False, "")


@pytest.mark.parametrize(
    ("read", "read_header", "idle", "header", "keep_alive"),
    [
        (0, 10, 30, 10, 30),  # LiteFS's defaults
        (5, 0, 0, 5, 5),  # Go: ReadHeaderTimeout and IdleTimeout fall back to ReadTimeout
        (5, 2, 0, 2, 5),
        (0, 0, 0, 0, float("inf")),  # no timeouts at all
    ],
)
def test_timeouts_fall_back_as_in_go(
    read: float, read_header: float, idle: float, header: float, keep_alive: float
) -> None:
    t = Timeouts(read=read, read_header=read_header, write=0, idle=idle)
    assert (t.header, t.keep_alive) == (header, keep_alive)
    config = ProxyConfig(read_timeout=read, read_header_timeout=read_header, idle_timeout=idle)
    assert Timeouts.from_config(config) == t


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"target": "localhost:8081", "addr": ":8080"}, "proxy database name required"),
        ({"target": "localhost:8081", "db": "db"}, "proxy bind address required"),
    ],
)
def test_enabled_proxy_needs_db_and_addr(kwargs: dict[str, str], message: str) -> None:
    with pytest.raises(ProxyConfigError, match=message):
        ProxyConfig(**kwargs)


def test_disabled_proxy_needs_nothing() -> None:
    ProxyConfig(db="", addr="")


def _parse(text: str) -> Any:
    return parse_config(textwrap.dedent(text), path="litefs.yml", environ={}, sections={"proxy": ProxyConfig})


def test_yaml_keys_including_the_forward_url_extension() -> None:
    config = _parse(
        """
        fuse: {dir: /litefs}
        data: {dir: /var/lib/litefs}
        lease: {type: static, candidate: true, hostname: node-a, advertise-url: "http://node-a:20202"}
        proxy:
          addr: ":8080"
          target: "localhost:8081"
          db: "db"
          max-lag: 2s
          passthrough: ["*.png"]
          always-forward: ["/refresh"]
          primary-redirect-timeout: 500ms
          forward-url: "http://{hostname}.internal:8080"
        """
    )
    section = config.section("proxy")
    assert section.max_lag == 2.0 and section.primary_redirect_timeout == 0.5
    assert section.passthrough == ["*.png"] and section.always_forward == ["/refresh"]
    assert section.forward_url == "http://{hostname}.internal:8080"
    assert advertised_proxy_url(config) == "http://node-a:8080"


def test_yaml_missing_db_is_a_config_error_naming_it() -> None:
    with pytest.raises(ConfigError, match="proxy database name required"):
        _parse(
            """
            fuse: {dir: /litefs}
            data: {dir: /var/lib/litefs}
            lease: {type: static, candidate: true}
            proxy: {addr: ":8080", target: "localhost:8081"}
            """
        )


# --- where the primary's proxy is -----------------------------------------------------------------


def test_proxy_url_from_lease_extension_wins() -> None:
    info = PrimaryInfo("a", "http://10.0.0.1:20202", {"proxy-url": "http://a-proxy:9000/"})
    assert primary_proxy_url(info, "http://{hostname}:8080", 8080) == "http://a-proxy:9000"


def test_proxy_url_from_forward_url_pattern() -> None:
    info = PrimaryInfo("node-a", "http://10.0.0.1:20202")
    assert primary_proxy_url(info, "http://{hostname}:8080", 7000) == "http://node-a:8080"
    assert primary_proxy_url(info, "https://{advertise-host}:8443/", 7000) == "https://10.0.0.1:8443"


def test_proxy_url_default_is_advertise_host_with_own_port() -> None:
    assert primary_proxy_url(PrimaryInfo("a", "http://10.0.0.1:20202"), "", 8080) == "http://10.0.0.1:8080"
    assert primary_proxy_url(PrimaryInfo("a", "http://[fd00::1]:20202"), "", 8080) == "http://[fd00::1]:8080"
    assert primary_proxy_url(PrimaryInfo("a", ""), "", 8080) is None


def test_target_base_url() -> None:
    assert target_base_url("localhost:8081") == "http://localhost:8081"
    assert target_base_url(":8081") == "http://127.0.0.1:8081"
    assert target_base_url("http://app:8081/") == "http://app:8081"


# --- refused connections are retried, then reported -----------------------------------------------


async def test_refused_connection_is_retried_then_reported() -> None:
    port = free_port()  # nobody listens
    scope = {"method": "GET", "path": "/", "raw_path": b"/", "query_string": b"", "headers": []}
    async with new_client() as client:
        started = trio.current_time()
        with pytest.raises(UpstreamError, match=f"target http://127.0.0.1:{port}: ConnectError"):
            await open_upstream(client, Upstream(f"http://127.0.0.1:{port}", 0.3), scope, [], None)
        assert 0.3 <= trio.current_time() - started < 3


# --- decision order, in process -------------------------------------------------------------------


@dataclass
class FakeLease:
    hostname: str = "replica-1"


@dataclass
class FakeNodeConfig:
    skip_sync: bool = False
    lease: FakeLease = field(default_factory=FakeLease)


@dataclass
class FakeNode:
    """Just what ProxyApp reads from a node."""

    is_primary: bool = False
    primary_info: PrimaryInfo | None = None
    lag: float = 0.0
    txid: int = 0
    dbs: list[str] = field(default_factory=lambda: ["db"])
    node_id: int = 0x1234
    config: FakeNodeConfig = field(default_factory=FakeNodeConfig)

    def lag_seconds(self) -> float:
        return self.lag

    def database_names(self) -> list[str]:
        return self.dbs

    def database_txid(self, name: str) -> int:
        return self.txid if name in self.dbs else 0


def make_proxy(node: FakeNode, seen: list[httpx.Request], **config: Any) -> httpx.AsyncClient:
    """An httpx client talking to a ProxyApp whose target (and primary) is a mock app."""

    def app(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        # A stream, as a real transport gives (``content=`` would count as already read).
        return httpx.Response(201, headers={"x-app": "yes"}, stream=httpx.ByteStream(b"from app"))

    settings = {"addr": ":0", "target": "app:1", "db": "db", "primary_redirect_timeout": 0.2, **config}
    proxy = ProxyApp(node, ProxyConfig(**settings), httpx.AsyncClient(transport=httpx.MockTransport(app)))
    proxy.own_port = 8080
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=proxy), base_url="http://proxy")


async def test_health_ok_and_lag_exceeded() -> None:
    node = FakeNode(is_primary=True)
    async with make_proxy(node, [], max_lag=1.0) as client:
        r = await client.get("/litefs/health")
        assert (r.status_code, r.text) == (200, "OK\n")
        node.lag = 1.5
        r = await client.get("/litefs/health")
        assert (r.status_code, r.text) == (503, "Replication lag exceeded\n")
    async with make_proxy(FakeNode(lag=1000.0), [], max_lag=0) as client:
        assert (await client.get("/litefs/health")).status_code == 200  # max-lag 0 disables the check


async def test_write_without_known_primary_is_503_after_the_timeout() -> None:
    seen: list[httpx.Request] = []
    async with make_proxy(FakeNode(), seen, primary_redirect_timeout=0.3) as client:
        started = trio.current_time()
        r = await client.post("/rows", content=b"x")
        assert (r.status_code, r.text) == (503, "Proxy error: no primary available\n")
        assert trio.current_time() - started >= 0.3
    assert seen == []


async def test_write_waits_for_a_primary_to_become_known() -> None:
    node = FakeNode()
    seen: list[httpx.Request] = []
    async with make_proxy(node, seen, primary_redirect_timeout=5.0) as client:

        async def learn_primary() -> None:
            await trio.sleep(0.1)
            node.primary_info = PrimaryInfo("primary-1", "http://10.0.0.9:20202")

        async with trio.open_nursery() as nursery:
            nursery.start_soon(learn_primary)
            r = await client.post("/rows", content=b"x")
    assert r.status_code == 201
    assert str(seen[0].url) == "http://10.0.0.9:8080/rows"  # default: advertise host + own proxy port


async def test_fly_replay_on_a_replica_like_litefs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLY_APP_NAME", "myapp")
    seen: list[httpx.Request] = []
    async with make_proxy(FakeNode(primary_info=PrimaryInfo("MYPRIMARY", "")), seen) as client:
        r = await client.post("/rows", content=b"x")
    assert (r.status_code, r.headers["fly-replay"], r.content) == (200, "instance=MYPRIMARY", b"")
    assert seen == []  # the replica's app is never called


async def test_forwarded_request_is_never_forwarded_again() -> None:
    seen: list[httpx.Request] = []
    node = FakeNode(primary_info=PrimaryInfo("primary-1", "http://10.0.0.9:20202"))
    async with make_proxy(node, seen) as client:
        r = await client.post("/rows", headers={"Litefs-Proxy-Forwarded": "00000000000000AB"})
        assert r.status_code == 508
        assert "forwarded by node 00000000000000AB" in r.text and "not forwarding it again" in r.text
        r = await client.post("/rows", headers={"Litefs-Proxy-Forwarded": f"{node.node_id:016X}"})
        assert r.status_code == 508 and "set proxy.forward-url" in r.text
    assert seen == []


async def test_forwarding_marks_the_request_and_keeps_method_path_query_body() -> None:
    seen: list[httpx.Request] = []
    node = FakeNode(primary_info=PrimaryInfo("primary-1", "", {"proxy-url": "http://p:9000"}))
    async with make_proxy(node, seen) as client:
        r = await client.put("/a/b?x=1&y=%20", content=b"payload", headers={"X-Custom": "1"})
    assert (r.status_code, r.headers["x-app"], r.content) == (201, "yes", b"from app")
    assert "set-cookie" not in r.headers  # only the primary sets the cookie
    request = seen[0]
    assert (request.method, str(request.url)) == ("PUT", "http://p:9000/a/b?x=1&y=%20")
    assert request.headers["litefs-proxy-forwarded"] == "0000000000001234"
    assert request.headers["x-custom"] == "1" and request.headers["x-forwarded-proto"] == "http"
    assert request.headers["x-forwarded-host"] == "proxy"
    assert request.read() == b"payload"


async def test_primary_receiving_a_forwarded_get_treats_it_as_a_write() -> None:
    seen: list[httpx.Request] = []
    async with make_proxy(FakeNode(is_primary=True, txid=7), seen) as client:
        r = await client.get("/x", headers={"Litefs-Proxy-Forwarded": "00000000000000AB"})
    assert r.headers["set-cookie"].startswith("__txid=0000000000000007; Path=/; Expires=")
    assert "litefs-proxy-forwarded" not in seen[0].headers  # the marker stops at the primary's proxy


async def test_read_waits_for_the_cookie_txid_then_goes_to_the_app() -> None:
    node = FakeNode(txid=1)
    seen: list[httpx.Request] = []
    async with make_proxy(node, seen) as client:

        async def catch_up() -> None:
            await trio.sleep(0.2)
            node.txid = 3

        async with trio.open_nursery() as nursery:
            nursery.start_soon(catch_up)
            started = trio.current_time()
            r = await client.get("/rows", headers={"Cookie": "__txid=0000000000000003"})
            assert r.status_code == 201 and trio.current_time() - started >= 0.2


async def test_read_gives_up_after_the_txid_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(proxy_app, "TXID_WAIT", 0.2)
    seen: list[httpx.Request] = []
    async with make_proxy(FakeNode(txid=1), seen) as client:
        r = await client.get("/rows", headers={"Cookie": "__txid=0000000000000002"})
        assert (r.status_code, r.text) == (504, "Proxy timeout\n")
        # No database yet, or an invalid cookie: straight to the app.
        r = await client.get("/rows", headers={"Cookie": "__txid=2"})
        assert r.status_code == 201
    async with make_proxy(FakeNode(txid=0, dbs=[]), seen) as client:
        assert (await client.get("/rows", headers={"Cookie": "__txid=0000000000000002"})).status_code == 201


async def test_passthrough_and_always_forward_patterns() -> None:
    seen: list[httpx.Request] = []
    node = FakeNode(is_primary=True, txid=5)
    async with make_proxy(node, seen, passthrough=["/static/*"], always_forward=["/refresh"]) as client:
        r = await client.post("/static/upload")
        assert r.status_code == 201 and "set-cookie" not in r.headers  # passthrough: no cookie
        r = await client.get("/refresh")
        assert re.match(
            r"__txid=0000000000000005; Path=/; Expires=.* GMT; HttpOnly$", r.headers["set-cookie"]
        )
        r = await client.get("/other")
        assert "set-cookie" not in r.headers
    replica = FakeNode(primary_info=PrimaryInfo("p", "", {"proxy-url": "http://p:9000"}))
    async with make_proxy(replica, seen, always_forward=["/refresh"]) as client:
        await client.get("/refresh")
        assert str(seen[-1].url) == "http://p:9000/refresh"  # an always-forward GET goes to the primary


# --- request kinds reported to litefs_proxy_request ----------------------------------------------


@pytest.mark.parametrize(
    ("outcome", "method", "kind"),
    [
        ("passthrough", "POST", "passthrough"),
        ("health 503 (lag 12.0s)", "GET", "health"),
        ("read", "GET", "read"),
        ("read: TXID 0000000000000009 not reached in 5s", "GET", "read"),
        ("write: primary", "POST", "write"),
        ("write: forwarded to n1 at http://n1:8080", "POST", "forwarded"),
        ("write: fly-replay to n1", "DELETE", "forwarded"),
        ("write: no primary", "POST", "write"),
        ("write: loop refused", "POST", "write"),
        ("client disconnected", "GET", "read"),
        ("?", "PUT", "write"),
    ],
)
def test_request_kind(outcome: str, method: str, kind: str) -> None:
    assert proxy_app.request_kind(outcome, method) == kind
