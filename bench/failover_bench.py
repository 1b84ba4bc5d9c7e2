"""Failover and handoff times of a two-node cluster, for each lease backend, with real services.

Failover: SIGKILL of the primary -> first successful write on the new primary.
Handoff:  POST /promote on the replica -> it is primary (the lease moves without a TTL wait).

    .venv/bin/python bench/failover_bench.py [--rounds 3] [--backends etcd,consul]

Prints a table and one JSON line per figure.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import httpx

from litefs.testing import LiteFSNode
from litefs.testing_services import ConsulAgent, EtcdCluster


def wait_until(cond, timeout: float) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if cond():
                return
        except (OSError, httpx.HTTPError):
            pass
        time.sleep(0.005)
    raise TimeoutError("condition not reached")


def node(root: Path, name: str, lease_type: str, section: dict) -> LiteFSNode:
    n = LiteFSNode(root, name=name)
    n.config["lease"] = {
        "type": lease_type,
        "hostname": name,
        "advertise-url": n.url,
        "reconnect-delay": "100ms",
        lease_type: section,
    }
    return n


def write(n: LiteFSNode, statement: str) -> bool:
    return (
        subprocess.run(
            ["sqlite3", "-cmd", ".timeout 2000", n.path("db"), statement], capture_output=True
        ).returncode
        == 0
    )


def one_round(lease_type: str, base: dict, ttl: float) -> tuple[float, float]:
    key = ("/" if lease_type == "etcd" else "") + f"litefs-bench/{uuid.uuid4().hex[:10]}"
    section = {**base, "key": key}
    with tempfile.TemporaryDirectory() as tmp:
        a, b = node(Path(tmp), "a", lease_type, section), node(Path(tmp), "b", lease_type, section)
        try:
            a.start()
            wait_until(lambda: a.info()["isPrimary"], 30)
            b.start()
            write(a, "CREATE TABLE t (x); INSERT INTO t VALUES (1)")
            wait_until(lambda: b.pos("db") == a.pos("db"), 30)

            started = time.monotonic()
            assert httpx.post(b.url + "/promote", timeout=30).status_code == 200
            handoff = time.monotonic() - started
            wait_until(lambda: a.pos("db") == b.pos("db"), 30)

            killed = time.monotonic()
            b.kill()
            wait_until(lambda: write(a, "INSERT INTO t VALUES (2)"), ttl * 4)
            failover = time.monotonic() - killed
        finally:
            a.stop()
            b.stop()
    return failover, handoff


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--backends", default="etcd,consul")
    args = parser.parse_args()
    rows = []
    for backend in args.backends.split(","):
        if backend == "etcd":
            service, base, ttl = EtcdCluster(1).start(), None, 2.0
            base = {"endpoints": service.endpoints, "ttl": "2s"}
        else:
            service, ttl = ConsulAgent().start(), 10.0
            base = {"url": service.url, "ttl": "10s", "lock-delay": "1s"}
        try:
            results = [one_round(backend, base, ttl) for _ in range(args.rounds)]
        finally:
            service.stop()
        failover = statistics.median(r[0] for r in results)
        handoff = statistics.median(r[1] for r in results)
        rows.append((backend, ttl, failover, handoff))
        for name, value in (("failover_seconds", failover), ("handoff_seconds", handoff)):
            print(json.dumps({"bench": "failover", "backend": backend, "ttl": ttl, name: round(value, 4)}))
    print(f"\n{'backend':8} {'TTL':>5} {'failover (kill -> write)':>26} {'handoff (/promote)':>20}")
    for backend, ttl, failover, handoff in rows:
        print(f"{backend:8} {ttl:>4.0f}s {failover:>25.2f}s {handoff * 1000:>18.0f}ms")


if __name__ == "__main__":
    main()
