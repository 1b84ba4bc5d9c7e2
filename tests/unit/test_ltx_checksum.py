"""CRC-64/GO-ISO, page and database checksums, lock page (ltx.md sections 1, 4)."""

from __future__ import annotations

import io
import os
from pathlib import Path

import crcmod
import pytest

from litefs.ltx import (
    CHECKSUM_FLAG,
    LTXError,
    crc64,
    database_checksum,
    lock_pgno,
    page_checksum,
)

FIXTURES = Path(
    os.environ.get("LITEFS_LTX_FIXTURES", Path(__file__).resolve().parents[3] / "shared" / "ltx-fixtures")
)
needs_fixtures = pytest.mark.skipif(not FIXTURES.is_dir(), reason=f"LTX fixtures not found at {FIXTURES}")


def test_crc64_check_value() -> None:
    assert crc64(b"123456789") == 0xB90956C775A41001


def test_crc64_continues_like_go_update() -> None:
    data = os.urandom(10_000)
    assert crc64(data[3000:], crc64(data[:3000])) == crc64(data)
    assert crc64(b"") == 0


def test_crc64_matches_crcmod_reference() -> None:
    ref = crcmod.mkCrcFun(0x1000000000000001B, initCrc=0, rev=True, xorOut=0xFFFFFFFFFFFFFFFF)
    for n in (0, 1, 4, 100, 4096, 65541):
        data = os.urandom(n)
        assert crc64(data) == ref(data)
        assert crc64(memoryview(bytearray(data))) == ref(data)


@pytest.mark.parametrize(
    ("page_size", "pgno"),
    [
        (512, 2097153),
        (1024, 1048577),
        (2048, 524289),
        (4096, 262145),
        (8192, 131073),
        (16384, 65537),
        (32768, 32769),
        (65536, 16385),
    ],
)
def test_lock_pgno(page_size: int, pgno: int) -> None:
    assert lock_pgno(page_size) == pgno


@pytest.mark.parametrize("bad", [0, 256, 1000, 131072, -4096])
def test_lock_pgno_rejects_bad_page_size(bad: int) -> None:
    with pytest.raises(LTXError, match="page size"):
        lock_pgno(bad)


def _db(pages: list[bytes]) -> io.BytesIO:
    return io.BytesIO(b"".join(pages))


@pytest.mark.parametrize(
    ("pages", "size", "want"),
    [
        ([b"\x01", b"\x02", b"\x03"], 512, 0xEFFFFFFFECD99000),
        ([b"2", b"3"], 1024, 0xE1899B6D587AAAAA),
        ([b"2", b"3"], 512, 0x8B87423EEEEEEEEE),
        ([b"1"], 512, 0xEB1A999231044DDD),
        ([b"\x81", b"\x82", b"\x83"], 1024, 0x8A249272AD9F7DEA),
        ([b"\x91", b"\x82", b"\x93"], 1024, 0x8A249272AD9F7DEA),
        ([b"\x81"], 1024, 0xEB953FC47685D740),
        ([], 4096, 0x8000000000000000),
    ],
)
def test_database_checksum_vectors(pages: list[bytes], size: int, want: int) -> None:
    f = _db([p * size for p in pages])
    assert database_checksum(f, size, len(pages)) == want


def test_database_checksum_ignores_bytes_past_commit() -> None:
    f = _db([b"2" * 512, b"3" * 512, b"junk" * 128])
    assert database_checksum(f, 512, 2) == 0x8B87423EEEEEEEEE


def test_database_checksum_short_file_names_the_page() -> None:
    f = _db([b"2" * 512, b"3" * 100])
    with pytest.raises(LTXError, match="page 2"):
        database_checksum(f, 512, 2)


class _XPages(io.RawIOBase):
    """A virtual 4096-byte-page database of 'x' pages whose lock page is zeros (no disk needed)."""

    def __init__(self, pages: int, page_size: int) -> None:
        self.size = pages * page_size
        self.page_size = page_size
        self.lock_off = (lock_pgno(page_size) - 1) * page_size
        self.pos = 0
        self.lock_reads = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, pos: int, whence: int = 0) -> int:
        assert whence == 0
        self.pos = pos
        return pos

    def readinto(self, b) -> int:  # noqa: ANN001
        n = max(0, min(len(b), self.size - self.pos))
        b[:n] = b"x" * n
        lo, hi = self.pos, self.pos + n
        if lo < self.lock_off + self.page_size and hi > self.lock_off:
            self.lock_reads += 1
            a, z = max(lo, self.lock_off), min(hi, self.lock_off + self.page_size)
            b[a - lo : z - lo] = bytes(z - a)
        self.pos += n
        return n


def test_database_checksum_large_vector_skips_lock_page() -> None:
    f = _XPages(262155, 4096)
    assert database_checksum(f, 4096, 262155) == 0xC19B668C376662C7
    assert f.lock_reads == 0  # the lock page is never even read


def test_database_checksum_sparse_file_across_lock_page(tmp_path: Path) -> None:
    size = 65536
    lock = lock_pgno(size)  # 16385: a 1 GiB sparse file is enough
    commit = lock + 3
    path = tmp_path / "sparse.db"
    with open(path, "wb") as f:
        f.truncate(commit * size)
        for pgno, fill in ((1, b"a"), (lock - 1, b"b"), (lock, b"L"), (lock + 1, b"c"), (commit, b"d")):
            f.seek((pgno - 1) * size)
            f.write(fill * size)
    zero = bytes(size)
    fills = {1: b"a", lock - 1: b"b", lock + 1: b"c", commit: b"d"}
    acc = 0
    for pgno in range(1, commit + 1):
        if pgno != lock:
            acc ^= page_checksum(pgno, fills[pgno] * size if pgno in fills else zero)
    want = CHECKSUM_FLAG | acc
    assert database_checksum(path, size, commit) == want
    # Writing a different lock page changes nothing.
    with open(path, "r+b") as f:
        f.seek((lock - 1) * size)
        f.write(b"Z" * size)
    assert database_checksum(str(path), size, commit) == want


def test_page_checksum_has_flag_and_hashes_pgno_first() -> None:
    data = b"\x00" * 512
    assert page_checksum(1, data) & CHECKSUM_FLAG
    assert page_checksum(1, data) == CHECKSUM_FLAG | crc64(b"\x00\x00\x00\x01" + data)
    assert page_checksum(1, data) != page_checksum(2, data)


@needs_fixtures
def test_fixture_page_and_database_checksums() -> None:
    d = FIXTURES / "litefs-store-open-and-write-snapshot"
    raw = (d / "database").read_bytes()
    page = {n: raw[(n - 1) * 4096 : n * 4096] for n in (1, 7, 8)}
    assert page_checksum(1, page[1]) == 0xADF3E188CB5DC241
    assert page_checksum(7, page[7]) == 0xEAF0947B2055D648
    assert page_checksum(8, page[8]) == 0x9A7407C73D4BB9DA
    assert database_checksum(d / "database", 4096, 10) == 0xFE3831A381C602B9
