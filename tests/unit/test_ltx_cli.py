"""The ``litefs ltx`` tools, driven through click's CliRunner on the group itself."""

from __future__ import annotations

import io
import json
import os
import shutil
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner

from litefs.ltx import CHECKSUM_FLAG, Encoder, Header, database_checksum, decode_file
from litefs.ltx.cli import ltx_group

FIXTURES = Path(
    os.environ.get("LITEFS_LTX_FIXTURES", Path(__file__).resolve().parents[3] / "shared" / "ltx-fixtures")
)
STORE = FIXTURES / "litefs-store-open-and-write-snapshot"
LTX13 = STORE / "000000000000000d-000000000000000d.ltx"
needs_fixtures = pytest.mark.skipif(not FIXTURES.is_dir(), reason=f"LTX fixtures not found at {FIXTURES}")


def run(*args: str):  # noqa: ANN201
    return CliRunner().invoke(ltx_group, [str(a) for a in args])


def make_db(path: Path) -> None:
    con = sqlite3.connect(path)
    try:
        con.execute("CREATE TABLE t (v TEXT)")
        con.executemany("INSERT INTO t VALUES (?)", [(str(i) * 50,) for i in range(300)])
        con.commit()
    finally:
        con.close()


@needs_fixtures
def test_dump_text() -> None:
    r = run("dump", LTX13)
    assert r.exit_code == 0, r.output
    out = r.output
    assert "page size             4096" in out
    assert "commit                10" in out
    assert "min TXID              000000000000000d (13)" in out
    assert "pre-apply checksum    9c74a15b4e4f246c" in out
    assert "page 1          checksum adf3e188cb5dc241" in out
    assert "page 8          checksum 9a7407c73d4bb9da" in out
    assert "post-apply checksum   fe3831a381c602b9" in out
    assert "file checksum         9496a29358326fb5" in out


@needs_fixtures
def test_dump_json() -> None:
    r = run("dump", "--json", LTX13)
    assert r.exit_code == 0, r.output
    obj = json.loads(r.stdout)
    assert obj["header"]["minTXID"] == "000000000000000d"
    assert obj["header"]["preApplyChecksum"] == "9c74a15b4e4f246c"
    assert [p["pgno"] for p in obj["pages"]] == [1, 7, 8]
    assert obj["trailer"] == {"postApplyChecksum": "fe3831a381c602b9", "fileChecksum": "9496a29358326fb5"}
    assert "error" not in obj


def test_dump_reports_corruption(tmp_path: Path) -> None:
    buf = io.BytesIO()
    enc = Encoder(buf, Header(page_size=512, commit=1, max_txid=1))
    enc.encode_page(1, b"1" * 512)
    enc.finish()
    bad = tmp_path / "bad.ltx"
    bad.write_bytes(buf.getvalue()[:-3])
    r = run("dump", "--json", bad)
    assert r.exit_code == 1
    assert json.loads(r.stdout)["error"].startswith("truncated")
    assert f"{bad}: truncated" in r.stderr


@needs_fixtures
def test_verify(tmp_path: Path) -> None:
    good = sorted((FIXTURES / "ltx-v1-compactor-vectors").glob("*.ltx")) + [LTX13]
    r = run("verify", *good)
    assert r.exit_code == 0, r.output
    assert r.stdout.count(": ok") == 4
    bad = tmp_path / "bad.ltx"
    raw = bytearray(LTX13.read_bytes())
    raw[5000] ^= 0xFF
    bad.write_bytes(bytes(raw))
    r = run("verify", LTX13, bad, tmp_path / "missing.ltx")
    assert r.exit_code == 1
    assert f"{LTX13}: ok" in r.stdout
    assert f"{bad}: file checksum mismatch" in r.stderr
    assert f"{tmp_path / 'missing.ltx'}: " in r.stderr


@needs_fixtures
def test_checksum_fixture() -> None:
    r = run("checksum", STORE / "database")
    assert r.exit_code == 0, r.output
    assert r.stdout == "fe3831a381c602b9\n"


def test_checksum_rejects_non_sqlite(tmp_path: Path) -> None:
    p = tmp_path / "x"
    p.write_bytes(b"hello" * 100)
    r = run("checksum", p)
    assert r.exit_code == 1 and "not a SQLite database" in r.output


def test_encode_db_then_apply_then_checksum(tmp_path: Path) -> None:
    src = tmp_path / "src.db"
    make_db(src)
    out = tmp_path / "0000000000000001-0000000000000007.ltx"
    r = run("encode-db", src, out, "--txid", "7")
    assert r.exit_code == 0, r.output
    h, pages, t = decode_file(out)
    assert h.compressed and h.max_txid == 7 and len(pages) == h.commit
    plain = tmp_path / "plain.ltx"
    assert run("encode-db", src, plain, "--no-compress").exit_code == 0
    assert not decode_file(plain)[0].compressed
    dst = tmp_path / "dst.db"
    r = run("apply", out, dst)
    assert r.exit_code == 0, r.output
    assert f"position 0000000000000007/{t.post_apply_checksum:016x}" in r.output
    assert dst.read_bytes() == src.read_bytes()
    assert run("checksum", dst).stdout == f"{t.post_apply_checksum:016x}\n"


def test_apply_chain_and_position_mismatch(tmp_path: Path) -> None:
    def write(name: str, header: Header, pages: dict[int, bytes], post: int | None = None) -> Path:
        path = tmp_path / name
        with open(path, "wb") as f:
            enc = Encoder(f, header)
            for p in sorted(pages):
                enc.encode_page(p, pages[p])
            enc.finish(post)
        return path

    a = write("a.ltx", Header(page_size=512, commit=2, max_txid=1), {1: b"a" * 512, 2: b"b" * 512})
    pre = decode_file(a)[2].post_apply_checksum
    post = database_checksum(io.BytesIO(b"c" * 512), 512, 1)
    b = write(
        "b.ltx",
        Header(page_size=512, commit=1, min_txid=2, max_txid=2, pre_apply_checksum=pre),
        {1: b"c" * 512},
        post,
    )
    db = tmp_path / "db"
    r = run("apply", a, b, db)
    assert r.exit_code == 0, r.output
    assert db.read_bytes() == b"c" * 512
    # Applying b again: the database is no longer at b's pre-apply position.
    r = run("apply", b, db)
    assert r.exit_code == 1 and "pre-apply checksum mismatch" in r.output
    # --force skips the position checks.
    db2 = tmp_path / "db2"
    shutil.copy(db, db2)
    liar = write(
        "c.ltx",
        Header(page_size=512, commit=1, min_txid=3, max_txid=3, pre_apply_checksum=CHECKSUM_FLAG | 9),
        {1: b"d" * 512},
        CHECKSUM_FLAG | 9,
    )
    assert run("apply", "--force", liar, db2).exit_code == 0
    assert db2.read_bytes() == b"d" * 512


def test_usage_errors() -> None:
    assert run("verify").exit_code == 2
    assert run("apply", "only-one").exit_code == 2
    assert run("encode-db", "missing.db", "out.ltx").exit_code == 2
