"""Proxy metrics: with the proxy plugin on, each node counts and times its requests by kind.

A primary and a replica (static lease), each with the proxy plugin in front of the small web app of
the proxy plugin's tests, writing to a database in the mount.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from litefs.testing import LiteFSNode, free_port

from .metrics_helpers import pos_txid, sample, scrape

pytestmark = [pytest.mark.fuse, pytest.mark.cluster]

APP_SCRIPT = Path(__file__).resolve().parents[2] / "proxy" / "tests" / "proxy_testapp.py"


def wait_http(url: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            httpx.get(url, timeout=1.0)
            return
        except httpx.HTTPError:
            assert time.monotonic() < deadline, f"nothing answers at {url}"
            time.sleep(0.05)


def proxy_section(proxy_port: int, app_port: int, **extra: str) -> dict[str, Any]:
    return {
        "proxy": {
            "addr": f"127.0.0.1:{proxy_port}",
            "target": f"127.0.0.1:{app_port}",
            "db": "app.db",
            **extra,
        }
    }


def requests_of(fams: dict[str, Any], kind: str) -> dict[str, float]:
    """``{status code: count}`` of ``litefs_proxy_request_count`` for one kind."""
    return {
        s.labels["code"]: s.value
        for s in fams["litefs_proxy_request_count"].samples
        if s.name == "litefs_proxy_request_count_total" and s.labels["kind"] == kind
    }


def timed(fams: dict[str, Any], kind: str) -> float:
    return sample(fams, "litefs_proxy_request_seconds", "litefs_proxy_request_seconds_count", kind=kind)


def test_proxy_requests_are_counted_by_kind_and_status(tmp_path: Path) -> None:
    pp, pa, rp, ra = free_port(), free_port(), free_port(), free_port()
    primary = LiteFSNode(tmp_path, name="primary", config=proxy_section(pp, pa))
    replica = LiteFSNode(
        tmp_path,
        name="replica",
        candidate=False,
        config={
            "lease": {"hostname": "primary", "advertise-url": primary.url},
            **proxy_section(rp, ra, **{"forward-url": f"http://127.0.0.1:{pp}"}),
        },
    )
    apps: list[subprocess.Popen[bytes]] = []
    try:
        primary.start()
        replica.start()
        for port, node, name in ((pa, primary, "primary"), (ra, replica, "replica")):
            cmd = [sys.executable, str(APP_SCRIPT), str(port), node.path("app.db"), name]
            apps.append(subprocess.Popen(cmd, stdin=subprocess.DEVNULL))
            wait_http(f"http://127.0.0.1:{port}/ping")
        primary_url, replica_url = f"http://127.0.0.1:{pp}", f"http://127.0.0.1:{rp}"
        wait_http(primary_url + "/litefs/health")
        wait_http(replica_url + "/litefs/health")

        with httpx.Client(timeout=30) as client:
            # A write on the replica goes to the primary's proxy, which serves it as a write.
            r = client.post(replica_url + "/rows", content=b"via replica")
            assert r.status_code == 201 and r.json()["node"] == "primary"
            cookie = r.headers["set-cookie"].split(";")[0]
            # A write on the primary, then reads on the replica (one waits for the cookie's TXID).
            assert client.post(primary_url + "/rows", content=b"on primary").status_code == 201
            r = client.get(replica_url + "/rows", headers={"Cookie": cookie})
            assert r.status_code == 200 and "via replica" in r.json()["rows"]
            assert client.get(replica_url + "/rows").status_code == 200
            assert client.get(replica_url + "/litefs/health").status_code == 200
            # A read ahead of every transaction: 504 after the 5 s wait, counted with its status.
            ahead = f"__txid={pos_txid(primary, 'app.db') + 1000:016x}"
            assert client.get(replica_url + "/rows", headers={"Cookie": ahead}).status_code == 504

        on_replica, on_primary = scrape(replica), scrape(primary)
        assert requests_of(on_replica, "forwarded") == {"201": 1}
        assert requests_of(on_replica, "read") == {"200": 2, "504": 1}
        assert requests_of(on_replica, "health") == {"200": 2}  # wait_http's and the test's
        assert requests_of(on_replica, "write") == {}
        # The forwarded write and the direct one are both writes on the primary.
        assert requests_of(on_primary, "write") == {"201": 2}
        assert requests_of(on_primary, "read") == {}
        assert (timed(on_replica, "forwarded"), timed(on_replica, "read"), timed(on_primary, "write")) == (
            1,
            3,
            2,
        )
        # The 504 waited 5 s for the transaction: it sits above the 2.5 s bucket.
        slow = sample(
            on_replica,
            "litefs_proxy_request_seconds",
            "litefs_proxy_request_seconds_bucket",
            kind="read",
            le="2.5",
        )
        assert slow == 2
        # A forwarded write takes at least as long as the primary's part of it.
        forwarded_sum = sample(
            on_replica, "litefs_proxy_request_seconds", "litefs_proxy_request_seconds_sum", kind="forwarded"
        )
        assert forwarded_sum > 0
    finally:
        for app in apps:
            app.kill()
            app.wait()
        replica.stop()
        primary.stop()
