#!/usr/bin/env python3
"""LTX codec throughput on this machine, next to the raw read speed of the same database file.

Usage: python bench/ltx_bench.py [--size-mb 256] [--page-size 4096] [--repeat 2]

Generates a database-sized file of random-ish pages (about a quarter random bytes, the rest repeated
text, so LZ4 has something to do, as with real SQLite pages) in a temporary directory, then measures:

* MB/s is always megabytes of database per second;
* raw read: the file read in 1 MiB chunks (the limit for everything else; warm page cache);
* database checksum with fastcrc (what ``litefs.ltx`` uses) and with crcmod's C extension;
* ChecksumTracker full scan, save and load (what a restart costs with and without the saved state);
* snapshot encode (database file -> LTX file on disk) and decode+verify, with and without LZ4.

Prints a table, then one JSON line per figure (``{"bench": "ltx", "figure": ..., ...}``). Each figure is
the best of ``--repeat`` runs.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import tempfile
import time
from collections.abc import Callable

import crcmod

from litefs.ltx import ChecksumTracker, Decoder, database_checksum, write_snapshot
from litefs.ltx.apply import read_sqlite_geometry
from litefs.ltx.checksum import CHECKSUM_FLAG, iter_db_pages
from litefs.sqlite.wal import wal_checksum, wal_checksum_py

_crcmod_iso = crcmod.mkCrcFun(0x1000000000000001B, initCrc=0, rev=True, xorOut=0xFFFFFFFFFFFFFFFF)


def make_database(path: str, size_mb: int, page_size: int) -> int:
    """Write a fully allocated file that looks like a SQLite database (valid header, page count)."""
    pages = size_mb * 1024 * 1024 // page_size
    rnd = random.Random(1)
    text = b"litefs replicates sqlite; " * (page_size // 26 + 1)
    with open(path, "wb") as f:
        for pgno in range(1, pages + 1):
            noise = rnd.randbytes(page_size // 4)
            page = bytearray(noise + text[: page_size - len(noise)])
            if pgno == 1:
                header = bytearray(100)
                header[:16] = b"SQLite format 3\0"
                header[16:18] = (1 if page_size == 65536 else page_size).to_bytes(2, "big")
                header[18:20] = b"\1\1"
                header[24:28] = (1).to_bytes(4, "big")  # change counter == version-valid-for
                header[28:32] = pages.to_bytes(4, "big")
                header[92:96] = (1).to_bytes(4, "big")
                page[:100] = header
            f.write(page)
        f.flush()
        os.fsync(f.fileno())
    return pages


def best(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def raw_read(path: str) -> None:
    with open(path, "rb", buffering=0) as f:
        buf = bytearray(1 << 20)
        while f.readinto(buf):
            pass


def crcmod_checksum(path: str, page_size: int, commit: int) -> int:
    acc = 0
    with open(path, "rb") as f:
        for pgno, data in iter_db_pages(f, page_size, commit):
            acc ^= _crcmod_iso(bytes(data), _crcmod_iso(pgno.to_bytes(4, "big")))
    return CHECKSUM_FLAG | acc


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-mb", type=int, default=256)
    ap.add_argument("--page-size", type=int, default=4096)
    ap.add_argument("--repeat", type=int, default=2)
    args = ap.parse_args()

    rows: list[dict[str, object]] = []

    def record(figure: str, seconds: float, mb: float, note: str = "") -> None:
        rows.append(
            {
                "bench": "ltx",
                "figure": figure,
                "mb_per_s": round(mb / seconds, 1),
                "seconds": round(seconds, 4),
                "size_mb": round(mb, 1),
                "page_size": args.page_size,
                "note": note,
            }
        )

    with tempfile.TemporaryDirectory(prefix="ltx-bench-") as tmp:
        db = os.path.join(tmp, "database")
        make_database(db, args.size_mb, args.page_size)
        page_size, commit = read_sqlite_geometry(db)
        mb = commit * page_size / 2**20
        r = args.repeat

        record("raw read (1 MiB chunks)", best(lambda: raw_read(db), r), mb, "warm page cache")
        want = database_checksum(db, page_size, commit)
        record("db checksum, fastcrc", best(lambda: database_checksum(db, page_size, commit), r), mb)
        assert crcmod_checksum(db, page_size, commit) == want
        record("db checksum, crcmod C ext", best(lambda: crcmod_checksum(db, page_size, commit), r), mb)

        # SQLite's WAL frame checksum over 1024 pages: every WAL commit validates its frames with it.
        wal_pages = [random.Random(n).randbytes(page_size) for n in range(1024)]
        wal_mb = len(wal_pages) * page_size / 2**20

        def wal_run(fn: Callable[[bytes, int, int, bool], tuple[int, int]]) -> None:
            s = (1, 2)
            for page in wal_pages:
                s = fn(page, s[0], s[1], False)

        for label, fn in (("numpy, chosen", wal_checksum), ("pure Python", wal_checksum_py)):
            secs = best(lambda fn=fn: wal_run(fn), r)
            record(f"WAL checksum, {label}", secs, wal_mb, f"{secs / len(wal_pages) * 1e6:.1f} us/page")

        tracker = ChecksumTracker.from_file(db, page_size, commit)
        record("tracker full scan", best(lambda: ChecksumTracker.from_file(db, page_size, commit), r), mb)
        state = os.path.join(tmp, "cksum-state")
        record(
            "tracker save", best(lambda: tracker.save(state), r), mb, f"{os.path.getsize(state)} B, fsync'd"
        )
        expected = (page_size, commit, want)
        record(
            "tracker load",
            best(lambda: ChecksumTracker.load(state, expected=expected), r),
            mb,
            "vs full scan",
        )

        for compress in (False, True):
            label = "lz4" if compress else "plain"
            out = os.path.join(tmp, f"snapshot-{label}.ltx")

            def encode(out: str = out, compress: bool = compress) -> None:
                with open(out, "wb") as f:
                    write_snapshot(db, f, txid=1, compress=compress, timestamp=0)

            def decode(out: str = out) -> None:
                with open(out, "rb") as f:
                    dec = Decoder(f)
                    for _ in dec.pages():
                        pass

            def encode_null(compress: bool = compress) -> None:
                with open(os.devnull, "wb") as f:
                    write_snapshot(db, f, txid=1, compress=compress, timestamp=0)

            seconds = best(encode, r)
            ratio = os.path.getsize(out) / (commit * page_size)
            record(f"encode snapshot, {label}", seconds, mb, f"to a file; output {ratio:.0%} of input")
            record(
                f"encode snapshot, {label}, /dev/null",
                best(encode_null, r),
                mb,
                "codec cost without file writes",
            )
            record(f"decode+verify, {label}", best(decode, r), mb)

    width = max(len(str(row["figure"])) for row in rows)
    print(f"LTX benchmark: {args.size_mb} MB database, page size {args.page_size}, best of {args.repeat}")
    print(f"{'figure':<{width}}  {'MB/s':>9}  {'seconds':>8}  note")
    print(f"{'-' * width}  {'-' * 9}  {'-' * 8}  ----")
    for row in rows:
        print(f"{row['figure']:<{width}}  {row['mb_per_s']:>9.1f}  {row['seconds']:>8.3f}  {row['note']}")
    for row in rows:
        print(json.dumps(row))


if __name__ == "__main__":
    main()
