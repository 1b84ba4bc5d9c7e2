"""Single-node benchmark: SQLite through a litefs mount versus plain SQLite on the same disk.

For each journal mode (delete, truncate, persist, and wal) and ``synchronous`` FULL and NORMAL:
single-row INSERT transactions per second, and point SELECTs by primary key per second. Plain SQLite
and the mount are measured in interleaved rounds in the same run; the ratio is the median of the
per-round ratios (the host is shared and noisy, so only same-run ratios mean anything).

Prints a table and one JSON line per figure (``{"bench": ..., ...}``) so the README can be rebuilt.

    .venv/bin/python bench/single_node_bench.py --seconds 2 --rounds 3
    .venv/bin/python bench/single_node_bench.py --modes wal      # WAL mode only
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sqlite3
import statistics
import tempfile
import time

from litefs.testing import LiteFSNode

MODES = ("delete", "truncate", "persist", "wal")
SYNCS = ("FULL", "NORMAL")
ROWS = 20_000


def fuse_counters(node: LiteFSNode) -> dict[str, int]:
    return node.get("/debug/vars").json()["fuse"]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and its child processes (the node's LTX writer): less
    sensitive to a busy host than throughput is."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    total = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            children = f.read().split()
    except OSError:
        children = []
    return total + sum(cpu_seconds(int(child)) for child in children)


def inserts_per_second(path: str, mode: str, sync: str, seconds: float) -> tuple[float, int]:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute(f"PRAGMA journal_mode={mode}")
    conn.execute(f"PRAGMA synchronous={sync}")
    conn.execute("CREATE TABLE IF NOT EXISTS ins (id INTEGER PRIMARY KEY, v BLOB)")
    n = 0
    deadline = time.perf_counter() + seconds
    start = time.perf_counter()
    while time.perf_counter() < deadline:
        conn.execute("INSERT INTO ins (v) VALUES (randomblob(100))")
        n += 1
    elapsed = time.perf_counter() - start
    conn.close()
    return n / elapsed, n


def prepare_select_db(path: str, mode: str) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute(f"PRAGMA journal_mode={mode}")
    conn.execute("CREATE TABLE IF NOT EXISTS sel (id INTEGER PRIMARY KEY, v BLOB)")
    if conn.execute("SELECT count(*) FROM sel").fetchone()[0] == 0:
        conn.execute(
            "INSERT INTO sel (v) WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s "
            f"WHERE i < {ROWS}) SELECT randomblob(100) FROM s"
        )
    conn.close()


def selects_per_second(path: str, seconds: float) -> tuple[float, int]:
    conn = sqlite3.connect(path, isolation_level=None)
    rng = random.Random(7)
    for _ in range(200):  # warm the page cache
        conn.execute("SELECT v FROM sel WHERE id = ?", (rng.randint(1, ROWS),)).fetchone()
    n = 0
    deadline = time.perf_counter() + seconds
    start = time.perf_counter()
    while time.perf_counter() < deadline:
        conn.execute("SELECT v FROM sel WHERE id = ?", (rng.randint(1, ROWS),)).fetchone()
        n += 1
    elapsed = time.perf_counter() - start
    conn.close()
    return n / elapsed, n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=2.0, help="duration of each timed test")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds per figure")
    ap.add_argument("--dir", default=None, help="where to put both databases (default: a temp dir)")
    ap.add_argument("--modes", default=",".join(MODES))
    args = ap.parse_args()

    root = tempfile.mkdtemp(prefix="litefs-bench-", dir=args.dir)
    plain_dir = os.path.join(root, "plain")
    os.makedirs(plain_dir)
    node = LiteFSNode(root, name="node")
    results = []
    try:
        node.start()
        for mode in args.modes.split(","):
            for sync in SYNCS:
                ratios, plain_r, mount_r, reqs, cpu = [], [], [], [], []
                for rnd in range(args.rounds):
                    tag = f"{mode}_{sync}_{rnd}"
                    p_rate, _ = inserts_per_second(os.path.join(plain_dir, tag), mode, sync, args.seconds)
                    before = fuse_counters(node)
                    cpu_before = cpu_seconds(node.proc.pid)
                    m_rate, m_n = inserts_per_second(node.path(tag), mode, sync, args.seconds)
                    cpu_after = cpu_seconds(node.proc.pid)
                    after = fuse_counters(node)
                    total = sum(after.values()) - sum(before.values())
                    plain_r.append(p_rate)
                    mount_r.append(m_rate)
                    ratios.append(m_rate / p_rate)
                    reqs.append(total / max(m_n, 1))
                    cpu.append((cpu_after - cpu_before) / max(m_n, 1) * 1e6)
                results.append(
                    {
                        "bench": "insert_tx",
                        "mode": mode,
                        "sync": sync,
                        "plain_per_s": round(statistics.median(plain_r), 1),
                        "mount_per_s": round(statistics.median(mount_r), 1),
                        "ratio": round(statistics.median(ratios), 3),
                        "fuse_requests_per_tx": round(statistics.median(reqs), 1),
                        "node_cpu_us_per_tx": round(statistics.median(cpu)),
                    }
                )
                print(json.dumps(results[-1]), flush=True)
            # Point selects (synchronous does not matter for reads).
            plain_db = os.path.join(plain_dir, f"sel_{mode}")
            mount_db = node.path(f"sel_{mode}")
            prepare_select_db(plain_db, mode)
            prepare_select_db(mount_db, mode)
            ratios, plain_r, mount_r, reqs = [], [], [], []
            for _ in range(args.rounds):
                p_rate, _ = selects_per_second(plain_db, args.seconds)
                before = fuse_counters(node)
                m_rate, m_n = selects_per_second(mount_db, args.seconds)
                after = fuse_counters(node)
                plain_r.append(p_rate)
                mount_r.append(m_rate)
                ratios.append(m_rate / p_rate)
                reqs.append((sum(after.values()) - sum(before.values())) / max(m_n, 1))
            results.append(
                {
                    "bench": "point_select",
                    "mode": mode,
                    "sync": "-",
                    "plain_per_s": round(statistics.median(plain_r), 1),
                    "mount_per_s": round(statistics.median(mount_r), 1),
                    "ratio": round(statistics.median(ratios), 3),
                    "fuse_requests_per_tx": round(statistics.median(reqs), 2),
                }
            )
            print(json.dumps(results[-1]), flush=True)
    finally:
        node.stop()

    print()
    print(
        f"{'benchmark':<14} {'mode':<9} {'sync':<7} {'plain/s':>10} {'mount/s':>10} {'ratio':>7} {'req/op':>7}"
        f" {'node CPU us/tx':>15}"
    )
    for r in results:
        print(
            f"{r['bench']:<14} {r['mode']:<9} {r['sync']:<7} {r['plain_per_s']:>10.0f} {r['mount_per_s']:>10.0f} "
            f"{r['ratio']:>7.3f} {r['fuse_requests_per_tx']:>7} {r.get('node_cpu_us_per_tx', '-'):>15}"
        )


if __name__ == "__main__":
    main()
