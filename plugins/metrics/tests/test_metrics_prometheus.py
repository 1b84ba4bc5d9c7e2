"""A real Prometheus server (Debian's ``prometheus`` package) scrapes a real node.

Proves the exposition -- including counters under LiteFS's names without ``_total`` -- is accepted,
and that the values arrive. Prometheus is installed with apt when missing; if that fails the test is
skipped with a loud reason.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest
import yaml

from litefs.testing import LiteFSNode, free_port

from .metrics_helpers import dashboard_queries, pos_txid, write_rows

pytestmark = [pytest.mark.fuse, pytest.mark.services]


def find_prometheus() -> str:
    """The ``prometheus`` binary, installing Debian's package once if needed; skip loudly if impossible."""
    found = shutil.which("prometheus")
    if found:
        return found
    cmd = ["apt-get", "install", "-y", "-q", "--no-install-recommends", "prometheus"]
    if os.geteuid() != 0:
        cmd.insert(0, "sudo")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    except (OSError, subprocess.TimeoutExpired) as exc:
        pytest.skip(f"!!! PROMETHEUS NOT AVAILABLE: `{' '.join(cmd)}` failed: {exc}")
    found = shutil.which("prometheus")
    if not found:
        pytest.skip(
            f"!!! PROMETHEUS NOT AVAILABLE: `{' '.join(cmd)}` exited {proc.returncode}: {proc.stderr[-500:]}"
        )
    return found


def wait_for(check, timeout: float, what: str, proc: subprocess.Popen | None = None):  # noqa: ANN001, ANN201
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"{what}: prometheus exited with {proc.returncode}")
        try:
            last = check()
            if last:
                return last
        except (httpx.HTTPError, KeyError, IndexError, ValueError) as exc:
            last = exc
        time.sleep(0.1)
    raise AssertionError(f"{what} not true after {timeout} s (last: {last!r})")


@pytest.fixture
def prometheus_binary() -> str:
    """Path of Debian's ``prometheus`` (the test is skipped loudly when it cannot be installed)."""
    return find_prometheus()


def start_prometheus(binary: str, workdir: Path, targets: list[str]) -> tuple[subprocess.Popen, str]:
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    config = {
        "global": {"scrape_interval": "500ms", "scrape_timeout": "400ms"},
        "scrape_configs": [{"job_name": "litefs", "static_configs": [{"targets": targets}]}],
    }
    (workdir / "prometheus.yml").write_text(yaml.safe_dump(config))
    log = open(workdir / "prometheus.log", "wb")
    try:
        proc = subprocess.Popen(
            [
                binary,
                f"--config.file={workdir / 'prometheus.yml'}",
                f"--storage.tsdb.path={workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    finally:
        log.close()
    return proc, f"http://127.0.0.1:{port}"


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def query(base: str, promql: str) -> list[dict]:
    resp = httpx.get(f"{base}/api/v1/query", params={"query": promql}, timeout=5)
    body = resp.json()
    assert body["status"] == "success", body
    return body["data"]["result"]


def test_real_prometheus_scrapes_the_node(tmp_path: Path, prometheus_binary: str) -> None:
    binary, workdir = prometheus_binary, tmp_path / "prom"
    replica = LiteFSNode(
        tmp_path,
        name="replica",
        candidate=False,
        config={"lease": {"hostname": "node", "advertise-url": ""}},
    )
    with LiteFSNode(tmp_path) as node:
        replica.config["lease"]["advertise-url"] = node.url
        write_rows(node, "app.db", 10)
        txid = pos_txid(node, "app.db")
        target = node.url.removeprefix("http://")
        replica_target = replica.url.removeprefix("http://")
        proc, base = start_prometheus(binary, workdir, [target, replica_target])
        try:
            replica.start()
            wait_for(lambda: httpx.get(base + "/-/ready", timeout=1).status_code == 200, 20, "ready", proc)

            def target_up() -> bool:
                active = httpx.get(base + "/api/v1/targets", timeout=2).json()["data"]["activeTargets"]
                for t in active:
                    assert t["lastError"] == "", t  # a rejected exposition shows up here
                return len(active) == 2 and all(t["health"] == "up" for t in active)

            wait_for(target_up, 20, "target up", proc)
            up = wait_for(lambda: query(base, f'up{{instance="{target}"}}'), 10, "up series", proc)
            assert up[0]["value"][1] == "1"

            got = wait_for(
                lambda: query(base, f'litefs_db_txid{{db="app.db",instance="{target}"}}'),
                10,
                "litefs_db_txid",
                proc,
            )
            assert float(got[0]["value"][1]) == txid
            # Counters under LiteFS's own names (no _total), as LiteFS dashboards query them.
            commits = wait_for(
                lambda: query(base, f'litefs_db_commit_count{{db="app.db",instance="{target}"}}'),
                10,
                "commits",
                proc,
            )
            assert float(commits[0]["value"][1]) == txid
            primary = query(base, "litefs_is_primary")
            assert sorted(float(r["value"][1]) for r in primary) == [0.0, 1.0]
            hist = query(base, f'litefs_db_commit_latency_seconds_count{{db="app.db",instance="{target}"}}')
            assert float(hist[0]["value"][1]) == txid
            meta = httpx.get(
                base + "/api/v1/metadata", params={"metric": "litefs_db_commit_count"}, timeout=5
            )
            assert meta.json()["data"]["litefs_db_commit_count"][0]["type"] == "counter"

            write_rows(node, "app.db", 5)
            newer = pos_txid(node, "app.db")
            wait_for(
                lambda: (
                    float(
                        query(base, f'litefs_db_commit_count{{db="app.db",instance="{target}"}}')[0]["value"][
                            1
                        ]
                    )
                    == newer
                ),
                10,
                "commit count after more writes",
                proc,
            )
            # Every query of the Grafana dashboard is valid PromQL and finds data for this node.
            for promql in dashboard_queries():
                query(base, promql)
            assert query(
                base, 'max by (db) (litefs_db_txid) - on (db) group_right litefs_db_txid{db="app.db"}'
            )

            # The alert the README suggests: primary TXID minus replica TXID, on each node (on the
            # primary once per connected replica), 0 once the replica has caught up.
            behind = "litefs_db_position_primary - on (instance, db) group_right litefs_db_position_replica"

            def caught_up() -> list[dict]:
                rows = query(base, behind)
                return rows if len(rows) == 2 and all(float(r["value"][1]) == 0 for r in rows) else []

            rows = wait_for(caught_up, 20, "replica caught up in position metrics", proc)
            assert {r["metric"]["instance"] for r in rows} == {target, replica_target}
            assert not query(base, behind + " > 0")
        finally:
            stop(proc)
            replica.stop()
