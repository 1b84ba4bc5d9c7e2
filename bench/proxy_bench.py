#!/usr/bin/env python3
"""Requests/s and p99 latency through the litefs-py proxy against the same app without it.

Usage: python bench/proxy_bench.py [--duration 5] [--connections 16] [--threads 2] [--loop]

Starts one primary ``litefs mount`` with ``proxy:`` enabled and the proxy test app
(``plugins/proxy/tests/proxy_testapp.py``: a threaded stdlib HTTP server that reads and writes a
SQLite database in the mount), then loads, one after the other, with the same client settings:

* read: ``GET /rows?limit`` (a SELECT on the mounted database);
* read+cookie: the same with a ``__txid`` cookie already reached (the proxy checks the position);
* write: ``POST /rows`` (an INSERT: one committed transaction, one LTX file; gets the cookie).

Each against the app directly and through the proxy. Uses ``wrk`` (Debian package) when installed,
else (or with ``--loop``) an httpx/trio load loop. Prints a table with the proxy/direct ratios, then
one JSON line per figure (``{"bench": "proxy", ...}``). Needs root and /dev/fuse.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from litefs.testing import LiteFSNode, free_port

ROOT = Path(__file__).resolve().parent.parent
APP = ROOT / "plugins" / "proxy" / "tests" / "proxy_testapp.py"


def wait_http(url: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            httpx.get(url, timeout=1.0)
            return
        except httpx.HTTPError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing answers at {url}")


# --- load generators ---------------------------------------------------------------------------

_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}


def _seconds(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if not m:
        raise ValueError(f"cannot read wrk latency {text!r}")
    return float(m.group(1)) * _UNITS[m.group(2)]


def run_wrk(url: str, method: str, headers: dict[str, str], args: argparse.Namespace, workdir: str) -> dict:
    script = os.path.join(workdir, f"{method.lower()}.lua")
    with open(script, "w") as f:
        f.write(f'wrk.method = "{method}"\n')
        if method == "POST":
            f.write('wrk.body = "benchmark row"\n')
        for k, v in headers.items():
            f.write(f'wrk.headers["{k}"] = "{v}"\n')
    out = subprocess.run(
        [
            "wrk",
            f"-t{args.threads}",
            f"-c{args.connections}",
            f"-d{args.duration}s",
            "--latency",
            "-s",
            script,
            url,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p99 = _seconds(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {"rps": rps, "p99_ms": p99 * 1000, "non_2xx": int(errors.group(1)) if errors else 0}


def run_loop(url: str, method: str, headers: dict[str, str], args: argparse.Namespace, workdir: str) -> dict:
    import trio

    latencies: list[float] = []
    bad = 0

    async def worker(client: httpx.AsyncClient, deadline: float) -> None:
        nonlocal bad
        while time.monotonic() < deadline:
            t0 = time.perf_counter()
            r = await client.request(
                method, url, headers=headers, content=b"benchmark row" if method == "POST" else None
            )
            latencies.append(time.perf_counter() - t0)
            bad += r.status_code >= 400

    async def main() -> float:
        limits = httpx.Limits(max_connections=args.connections)
        async with httpx.AsyncClient(limits=limits, trust_env=False) as client:
            start = time.monotonic()
            async with trio.open_nursery() as nursery:
                for _ in range(args.connections):
                    nursery.start_soon(worker, client, start + args.duration)
            return time.monotonic() - start

    elapsed = trio.run(main)
    latencies.sort()
    return {
        "rps": len(latencies) / elapsed,
        "p99_ms": latencies[int(len(latencies) * 0.99) - 1] * 1000,
        "non_2xx": bad,
    }


# --- the run -------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per measurement")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--loop", action="store_true", help="use the httpx load loop even if wrk exists")
    args = parser.parse_args()
    use_wrk = shutil.which("wrk") is not None and not args.loop
    load = run_wrk if use_wrk else run_loop
    if use_wrk:
        args.duration = max(1, round(args.duration))

    workdir = tempfile.mkdtemp(prefix="proxy-bench-")
    proxy_port, app_port = free_port(), free_port()
    node = LiteFSNode(
        workdir,
        name="primary",
        config={
            "proxy": {"addr": f"127.0.0.1:{proxy_port}", "target": f"127.0.0.1:{app_port}", "db": "app.db"}
        },
    )
    app = None
    results: list[dict] = []
    try:
        node.start()
        app = subprocess.Popen([sys.executable, str(APP), str(app_port), node.path("app.db"), "bench"])
        direct, proxied = f"http://127.0.0.1:{app_port}", f"http://127.0.0.1:{proxy_port}"
        wait_http(direct + "/ping")
        wait_http(proxied + "/litefs/health")
        for i in range(100):  # a small table to read
            httpx.post(direct + "/rows", content=f"row {i}".encode())
        txid = node.pos("app.db").split("/")[0]
        scenarios = [
            ("read", "GET", "/rows", {}),
            ("read+cookie", "GET", "/rows", {"Cookie": f"__txid={txid}"}),
            ("write", "POST", "/rows", {}),
        ]
        for name, method, path, headers in scenarios:
            for via, base in (("direct", direct), ("proxy", proxied)):
                figures = load(base + path, method, headers, args, workdir)
                results.append({"bench": "proxy", "scenario": name, "via": via, **figures})
    finally:
        if app is not None:
            app.kill()
            app.wait()
        node.stop()
        shutil.rmtree(workdir, ignore_errors=True)

    print(
        f"load: {'wrk' if use_wrk else 'httpx loop'}, {args.connections} connections, {args.duration:g}s each, "
        f"{os.cpu_count()} CPUs (client, proxy and app share them)"
    )
    print(
        f"{'scenario':<12} {'direct req/s':>12} {'proxy req/s':>12} {'ratio':>6} {'direct p99':>11} {'proxy p99':>10} {'ratio':>6}"
    )
    by = {(r["scenario"], r["via"]): r for r in results}
    for name, *_ in scenarios:
        d, p = by[(name, "direct")], by[(name, "proxy")]
        print(
            f"{name:<12} {d['rps']:>12.0f} {p['rps']:>12.0f} {p['rps'] / d['rps']:>6.2f} "
            f"{d['p99_ms']:>9.1f}ms {p['p99_ms']:>8.1f}ms {p['p99_ms'] / d['p99_ms']:>6.2f}"
        )
    for r in results:
        if r["non_2xx"]:
            print(f"WARNING: {r['scenario']} via {r['via']}: {r['non_2xx']} non-2xx answers")
        print(json.dumps(r))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
