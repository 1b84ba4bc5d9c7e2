"""Encoder/decoder: upstream fixtures byte for byte, round trips, validation rules, bounded memory."""

from __future__ import annotations

import io
import os
import tracemalloc
from pathlib import Path

import pytest

from litefs.ltx import (
    CHECKSUM_FLAG,
    FLAG_COMPRESS_LZ4,
    HEADER_SIZE,
    Decoder,
    Encoder,
    Header,
    LTXError,
    Pos,
    Trailer,
    decode_file,
    lock_pgno,
    page_checksum,
    peek_header,
)

FIXTURES = Path(
    os.environ.get("LITEFS_LTX_FIXTURES", Path(__file__).resolve().parents[3] / "shared" / "ltx-fixtures")
)
needs_fixtures = pytest.mark.skipif(not FIXTURES.is_dir(), reason=f"LTX fixtures not found at {FIXTURES}")


def encode(header: Header, pages, post: int | None = None) -> bytes:  # noqa: ANN001
    buf = io.BytesIO()
    enc = Encoder(buf, header)
    for pgno, data in pages:
        enc.encode_page(pgno, data)
    enc.finish(post)
    return buf.getvalue()


def decode(data: bytes) -> tuple[Header, list[tuple[int, bytes]], Trailer]:
    dec = Decoder(io.BytesIO(data))
    pages = list(dec.pages())
    assert dec.trailer is not None
    return dec.header, pages, dec.trailer


def reencode(path: Path) -> bytes:
    header, pages, trailer = decode_file(path)
    return encode(header, pages, trailer.post_apply_checksum)


# --- fixtures ---------------------------------------------------------------------------------------


@needs_fixtures
def test_litefs_store_fixture() -> None:
    path = FIXTURES / "litefs-store-open-and-write-snapshot" / "000000000000000d-000000000000000d.ltx"
    raw = path.read_bytes()
    assert len(raw) == 12420 == 100 + 3 * 4100 + 4 + 16
    header, pages, trailer = decode_file(path)
    assert header == Header(
        flags=0,
        page_size=4096,
        commit=10,
        min_txid=0xD,
        max_txid=0xD,
        timestamp=0,
        pre_apply_checksum=0x9C74A15B4E4F246C,
    )
    assert not header.is_snapshot and not header.compressed
    assert header.pre_apply_pos == Pos(0xC, 0x9C74A15B4E4F246C)
    assert [p for p, _ in pages] == [1, 7, 8]
    assert [page_checksum(p, d) for p, d in pages] == [
        0xADF3E188CB5DC241,
        0xEAF0947B2055D648,
        0x9A7407C73D4BB9DA,
    ]
    assert trailer == Trailer(0xFE3831A381C602B9, 0x9496A29358326FB5)
    db = (FIXTURES / "litefs-store-open-and-write-snapshot" / "database").read_bytes()
    for pgno, data in pages:
        assert db[(pgno - 1) * 4096 : pgno * 4096] == data
    assert reencode(path) == raw


COMPACTOR_VECTORS = [
    # name, (commit, min, max, timestamp, pre-apply), pages, post-apply, file checksum, size
    (
        "0000000000000001-0000000000000002.ltx",
        (3, 1, 2, 2000, 0),
        {1: 0x91, 2: 0x82, 3: 0x93},
        0x8A249272AD9F7DEA,
        0xCAF341FE1E6CDDFB,
        3204,
    ),
    (
        "0000000000000002-0000000000000009.ltx",
        (5, 2, 9, 3000, 0x8000000000000002),
        {1: 0x91, 2: 0xA2, 3: 0xA3, 5: 0xA5},
        0x8000000000000009,
        0xEAD633959F3C67A8,
        4232,
    ),
    (
        "0000000000000002-0000000000000005.ltx",
        (2, 2, 5, 2000, 0x8000000000000002),
        {1: 0x91},
        0x8000000000000005,
        0xF688132C3904F118,
        1148,
    ),
]


@needs_fixtures
@pytest.mark.parametrize(("name", "fields", "pages", "post", "file_cksum", "size"), COMPACTOR_VECTORS)
def test_compactor_vector_fixtures(name, fields, pages, post, file_cksum, size) -> None:  # noqa: ANN001
    path = FIXTURES / "ltx-v1-compactor-vectors" / name
    raw = path.read_bytes()
    assert len(raw) == size
    header, got_pages, trailer = decode_file(path)
    commit, lo, hi, ts, pre = fields
    assert header == Header(
        flags=0, page_size=1024, commit=commit, min_txid=lo, max_txid=hi, timestamp=ts, pre_apply_checksum=pre
    )
    assert got_pages == [(p, bytes([b]) * 1024) for p, b in pages.items()]
    assert trailer == Trailer(post, file_cksum)
    assert reencode(path) == raw
    # Built from the README's values alone, the encoder reproduces the upstream bytes too.
    assert encode(header, [(p, bytes([b]) * 1024) for p, b in pages.items()], post) == raw


@needs_fixtures
def test_worked_example_layout() -> None:
    raw = (FIXTURES / "ltx-v1-compactor-vectors" / "0000000000000002-0000000000000005.ltx").read_bytes()
    assert raw[:4] == b"LTX1"
    assert raw[0x64:0x68] == b"\0\0\0\1"
    assert raw[0x468:0x46C] == b"\0\0\0\0"
    assert raw[0x46C:0x474] == bytes.fromhex("8000000000000005")
    assert raw[0x474:] == bytes.fromhex("f688132c3904f118")


def test_single_file_page_data_only_vector() -> None:
    # ltx.md: the correct v1 file checksum for ltx's SingleFilePageDataOnly spec (derived, not upstream).
    header = Header(page_size=512, commit=1, min_txid=1, max_txid=1, timestamp=1000)
    raw = encode(header, [(1, b"1" * 512)])
    _, _, trailer = decode(raw)
    assert trailer == Trailer(0xEB1A999231044DDD, 0xBAB9B3D8B4FA3B31)


# --- round trips -----------------------------------------------------------------------------------


def _pages(n: int, size: int, seed: int = 0) -> list[tuple[int, bytes]]:
    return [(p, (bytes([p % 251, seed % 256]) * (size // 2))) for p in range(1, n + 1)]


@pytest.mark.parametrize("size", [512, 1024, 2048, 4096, 8192, 16384, 32768, 65536])
@pytest.mark.parametrize("compress", [False, True])
def test_round_trip_snapshot(size: int, compress: bool) -> None:
    pages = _pages(5, size)
    header = Header(
        flags=FLAG_COMPRESS_LZ4 if compress else 0, page_size=size, commit=5, max_txid=7, timestamp=123
    )
    raw = encode(header, pages)
    h, got, trailer = decode(raw)
    assert h == header and got == pages
    acc = 0
    for p, d in pages:
        acc ^= page_checksum(p, d)
    assert trailer.post_apply_checksum == CHECKSUM_FLAG | acc
    if compress:
        assert raw[HEADER_SIZE : HEADER_SIZE + 7] == bytes.fromhex("04224d186440a7")
        assert len(raw) < 100 + 5 * (size + 4)


@pytest.mark.parametrize("compress", [False, True])
def test_round_trip_incremental_with_wal_fields(compress: bool) -> None:
    header = Header(
        flags=FLAG_COMPRESS_LZ4 if compress else 0,
        page_size=4096,
        commit=100,
        min_txid=42,
        max_txid=42,
        timestamp=1_700_000_000_123,
        pre_apply_checksum=0x8123456789ABCDEF,
        wal_offset=32,
        wal_size=4120 * 3,
        wal_salt1=0x4875A40B,
        wal_salt2=0xA38DE4F5,
        node_id=0xFEEDFACECAFEBEEF,
    )
    pages = [(p, os.urandom(4096)) for p in (1, 5, 99, 100)]
    raw = encode(header, pages, 0x8000000000000ABC)
    assert decode(raw) == (header, pages, Trailer(0x8000000000000ABC, decode(raw)[2].file_checksum))
    assert Header.from_bytes(raw[:100]) == header


def test_compressed_and_uncompressed_checksums_differ_only_by_flags() -> None:
    pages = _pages(3, 512)
    plain = encode(Header(page_size=512, commit=3), pages)
    packed = encode(Header(flags=1, page_size=512, commit=3), pages)
    assert decode(plain)[1] == decode(packed)[1]
    assert decode(plain)[2].post_apply_checksum == decode(packed)[2].post_apply_checksum
    assert decode(plain)[2].file_checksum != decode(packed)[2].file_checksum


@pytest.mark.parametrize("compress", [False, True])
def test_snapshot_across_lock_page(compress: bool) -> None:
    size = 65536
    lock = lock_pgno(size)
    commit = lock + 2
    zero = bytes(size)

    def gen():  # noqa: ANN202
        for p in range(1, commit + 1):
            if p != lock:
                yield p, (zero if p < lock - 1 else bytes([p % 256]) * size)

    buf = io.BytesIO()
    enc = Encoder(buf, Header(flags=int(compress), page_size=size, commit=commit, max_txid=3))
    for p, d in gen():
        enc.encode_page(p, d)
    trailer = enc.finish()
    buf.seek(0)
    dec = Decoder(buf)
    seen = [p for p, _ in dec.pages()]
    assert seen[-4:] == [lock - 2, lock - 1, lock + 1, lock + 2] and len(seen) == commit - 1
    assert dec.trailer == trailer
    # The batched reader skips the lock page the same way, its runs never spanning it.
    buf.seek(0)
    dec = Decoder(buf)
    runs = [(first, len(pages)) for first, pages, _ in dec.snapshot_runs(1000)]
    assert (lock - 1 - 1000 + 1, 1000) not in runs and runs[-1] == (lock + 1, 2)
    assert sum(n for _, n in runs) == commit - 1 and dec.trailer == trailer


@pytest.mark.parametrize("compress", [False, True])
@pytest.mark.parametrize("batch", [1, 7, 256])
def test_snapshot_runs_match_pages(compress: bool, batch: int) -> None:
    pages = _pages(300, 1024)
    raw = encode(Header(flags=int(compress), page_size=1024, commit=300, max_txid=9), pages)
    dec = Decoder(io.BytesIO(raw))
    got = []
    for first, datas, sums in dec.snapshot_runs(batch):
        for i, (d, c) in enumerate(zip(datas, sums, strict=True)):
            assert c == page_checksum(first + i, d)
            got.append((first + i, bytes(d)))
    assert got == pages
    assert dec.trailer == decode(raw)[2] and dec.page_count == 300


@pytest.mark.parametrize("batch", [1, 16])
def test_snapshot_runs_name_a_page_out_of_place(batch: int) -> None:
    pages = _pages(40, 512)
    raw = bytearray(encode(Header(page_size=512, commit=40, max_txid=2), pages))
    record = HEADER_SIZE + 20 * (512 + 4)  # page 21's record
    raw[record : record + 4] = (7).to_bytes(4, "big")
    dec = Decoder(io.BytesIO(bytes(raw)))
    with pytest.raises(LTXError, match=f"snapshot page 7 at offset {record}: expected page 21"):
        for _ in dec.snapshot_runs(batch):
            pass


@pytest.mark.parametrize("compress", [False, True])
@pytest.mark.parametrize("damage", ["flip", "truncate"])
def test_snapshot_runs_reject_damage(compress: bool, damage: str) -> None:
    pages = _pages(40, 512)
    raw = bytearray(encode(Header(flags=int(compress), page_size=512, commit=40, max_txid=2), pages))
    if damage == "flip":
        raw[len(raw) // 2] ^= 1
    else:
        raw = raw[: len(raw) // 2]
    dec = Decoder(io.BytesIO(bytes(raw)))
    with pytest.raises(LTXError):
        for _ in dec.snapshot_runs(16):
            pass
    assert dec.trailer is None


def test_deletion_file() -> None:
    header = Header(page_size=4096, commit=0, min_txid=5, max_txid=5, pre_apply_checksum=0x8000000000001234)
    raw = encode(header, [], CHECKSUM_FLAG)
    assert len(raw) == 100 + 4 + 16
    assert decode(raw)[1] == []
    with pytest.raises(LTXError, match="commit 0"):
        encode(header, [], CHECKSUM_FLAG | 1)


def test_snapshot_of_empty_database() -> None:
    raw = encode(Header(page_size=4096, commit=0, min_txid=1, max_txid=3), [])
    assert decode(raw)[2].post_apply_checksum == CHECKSUM_FLAG


def test_decoder_streams_from_unseekable_pipe() -> None:
    raw = encode(Header(flags=1, page_size=1024, commit=40), _pages(40, 1024))
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child writes in small pieces then exits
        os.close(r)
        for i in range(0, len(raw), 777):
            os.write(w, raw[i : i + 777])
        os._exit(0)
    os.close(w)
    try:
        with os.fdopen(r, "rb", buffering=0) as f:
            assert [p for p, _ in Decoder(f).pages()] == list(range(1, 41))
    finally:
        os.waitpid(pid, 0)


def test_decoder_state_and_positions() -> None:
    raw = encode(Header(page_size=512, commit=1, min_txid=1, max_txid=9), [(1, b"1" * 512)])
    dec = Decoder(io.BytesIO(raw))
    with pytest.raises(LTXError, match="position unknown"):
        _ = dec.post_apply_pos
    assert dec.verify().post_apply_checksum == 0xEB1A999231044DDD
    assert dec.post_apply_pos == Pos(9, 0xEB1A999231044DDD)
    assert dec.page_count == 1
    with pytest.raises(LTXError, match="once"):
        dec.pages()
    assert peek_header(io.BytesIO(raw)).max_txid == 9


# --- validation -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "match"),
    [
        ({"flags": 2}, "flags"),
        ({"page_size": 1000}, "page size"),
        ({"page_size": 131072}, "page size"),
        ({"min_txid": 0}, "min TXID is 0"),
        ({"min_txid": 3, "max_txid": 2, "pre_apply_checksum": CHECKSUM_FLAG}, "min TXID"),
        ({"wal_offset": -1, "wal_size": 1}, "WAL offset"),
        ({"wal_offset": 32}, "both zero or both set"),
        ({"wal_salt1": 7}, "salts"),
        ({"pre_apply_checksum": CHECKSUM_FLAG}, "snapshot"),
        ({"min_txid": 2, "max_txid": 2}, "lacks the checksum flag"),
        ({"min_txid": 2, "max_txid": 2, "pre_apply_checksum": 5}, "lacks the checksum flag"),
        ({"commit": 1 << 32}, "commit"),
        ({"node_id": -1}, "node_id"),
    ],
)
def test_header_validation(fields: dict, match: str) -> None:
    header = Header(**{"page_size": 4096, "commit": 1, **fields})
    with pytest.raises(LTXError, match=match):
        header.validate()
    with pytest.raises(LTXError, match=match):
        Encoder(io.BytesIO(), header)


def test_header_from_bytes_rejects_bad_magic_and_short_input() -> None:
    raw = Header(page_size=512, commit=1).to_bytes()
    with pytest.raises(LTXError, match="magic"):
        Header.from_bytes(b"LTX2" + raw[4:])
    with pytest.raises(LTXError, match="truncated"):
        Header.from_bytes(raw[:50])
    with pytest.raises(LTXError, match="truncated LTX file: header"):
        Decoder(io.BytesIO(raw[:99]))


@pytest.mark.parametrize(
    ("header", "pages", "match"),
    [
        (Header(page_size=512, commit=3), [(2, b"x" * 512)], "expected page 1"),
        (Header(page_size=512, commit=3), [(1, b"x" * 512), (3, b"x" * 512)], "expected page 2"),
        (Header(page_size=512, commit=3), [(4, b"x" * 512)], "outside"),
        (Header(page_size=512, commit=3), [(0, b"x" * 512)], "outside"),
        (Header(page_size=512, commit=3), [(1, b"x" * 511)], "511 bytes"),
        (
            Header(page_size=512, commit=9, min_txid=2, max_txid=2, pre_apply_checksum=CHECKSUM_FLAG),
            [(5, b"x" * 512), (5, b"y" * 512)],
            "strictly ascending",
        ),
        (
            Header(page_size=512, commit=9, min_txid=2, max_txid=2, pre_apply_checksum=CHECKSUM_FLAG),
            [(5, b"x" * 512), (3, b"y" * 512)],
            "strictly ascending",
        ),
        (Header(page_size=65536, commit=16390), [(16385, b"x" * 65536)], "lock page"),
    ],
)
def test_encoder_rejects_bad_pages(header: Header, pages, match: str) -> None:  # noqa: ANN001
    enc = Encoder(io.BytesIO(), header)
    with pytest.raises(LTXError, match=match):
        for pgno, data in pages:
            enc.encode_page(pgno, data)


def test_encoder_finish_rules() -> None:
    enc = Encoder(io.BytesIO(), Header(page_size=512, commit=2))
    enc.encode_page(1, b"x" * 512)
    with pytest.raises(LTXError, match="snapshot incomplete"):
        enc.finish()
    enc.encode_page(2, b"x" * 512)
    with pytest.raises(LTXError, match="does not match its pages"):
        enc.finish(CHECKSUM_FLAG | 1)
    trailer = enc.finish()
    with pytest.raises(LTXError, match="twice"):
        enc.finish()
    with pytest.raises(LTXError, match="after finish"):
        enc.encode_page(3, b"x" * 512)
    assert trailer.file_checksum & CHECKSUM_FLAG
    inc = Encoder(
        io.BytesIO(),
        Header(page_size=512, commit=2, min_txid=3, max_txid=3, pre_apply_checksum=CHECKSUM_FLAG),
    )
    with pytest.raises(LTXError, match="required"):
        inc.finish()
    with pytest.raises(LTXError, match="flag"):
        inc.finish(5)


def _forge(header_bytes: bytes, body: bytes, post: int) -> bytes:
    """Hand-build a file with a correct file checksum around an arbitrary (invalid) body."""
    from litefs.ltx import crc64

    data = header_bytes + body + post.to_bytes(8, "big")
    return data + (CHECKSUM_FLAG | crc64(data)).to_bytes(8, "big")


def _frame(pgno: int, data: bytes) -> bytes:
    return pgno.to_bytes(4, "big") + data


@pytest.mark.parametrize(
    ("body", "match"),
    [
        (_frame(2, b"a" * 512) + _frame(1, b"b" * 512), "out of order"),
        (_frame(1, b"a" * 512) + _frame(1, b"b" * 512), "out of order"),
        (_frame(4, b"a" * 512), "beyond commit 3"),
    ],
)
def test_decoder_rejects_forged_incremental(body: bytes, match: str) -> None:
    hdr = Header(page_size=512, commit=3, min_txid=2, max_txid=2, pre_apply_checksum=CHECKSUM_FLAG).to_bytes()
    with pytest.raises(LTXError, match=match):
        Decoder(io.BytesIO(_forge(hdr, body + b"\0\0\0\0", CHECKSUM_FLAG | 7))).verify()


def test_decoder_rejects_trailing_data() -> None:
    raw = encode(Header(page_size=512, commit=1), [(1, b"1" * 512)])
    with pytest.raises(LTXError, match="after the trailer"):
        Decoder(io.BytesIO(raw + b"x")).verify()


@pytest.mark.parametrize("compress", [False, True])
def test_decoder_reports_truncation(compress: bool) -> None:
    raw = encode(Header(flags=int(compress), page_size=512, commit=3), _pages(3, 512))
    n = len(raw)
    for cut in sorted({0, 50, 100, 101, 104, 300, 616, n - 21, n - 20, n - 17, n - 8, n - 1}):
        if cut >= n:
            continue
        with pytest.raises(LTXError, match="truncated"):
            Decoder(io.BytesIO(raw[:cut])).verify()


def test_decoder_rejects_forged_snapshots() -> None:
    hdr = Header(page_size=512, commit=2).to_bytes()
    body = _frame(1, b"a" * 512) + _frame(2, b"b" * 512) + b"\0\0\0\0"
    with pytest.raises(LTXError, match="post-apply checksum mismatch"):
        Decoder(io.BytesIO(_forge(hdr, body, CHECKSUM_FLAG | 1))).verify()
    short = _frame(1, b"a" * 512) + b"\0\0\0\0"
    with pytest.raises(LTXError, match="snapshot incomplete"):
        Decoder(io.BytesIO(_forge(hdr, short, CHECKSUM_FLAG | 1))).verify()
    lock_hdr = Header(page_size=65536, commit=16386).to_bytes()
    with pytest.raises(LTXError, match="lock page"):
        dec = Decoder(io.BytesIO(_forge(lock_hdr, _frame(16385, bytes(65536)), CHECKSUM_FLAG)))
        list(dec.pages())


def test_decoder_rejects_bad_file_checksum() -> None:
    raw = bytearray(encode(Header(page_size=512, commit=1), [(1, b"1" * 512)]))
    raw[-1] ^= 1
    with pytest.raises(LTXError, match="file checksum mismatch"):
        Decoder(io.BytesIO(bytes(raw))).verify()


def test_decoder_rejects_data_after_end_marker_inside_lz4_frame() -> None:
    import lz4.frame

    from litefs.ltx import crc64

    hdr = Header(flags=1, page_size=512, commit=3, min_txid=2, max_txid=2, pre_apply_checksum=CHECKSUM_FLAG)
    logical = _frame(1, b"a" * 512) + b"\0\0\0\0" + b"junk"
    post = (CHECKSUM_FLAG | 1).to_bytes(8, "big")
    cksum = CHECKSUM_FLAG | crc64(hdr.to_bytes() + logical + post)
    raw = hdr.to_bytes() + lz4.frame.compress(logical) + post + cksum.to_bytes(8, "big")
    with pytest.raises(LTXError, match="after the end-of-pages marker"):
        Decoder(io.BytesIO(raw)).verify()


# --- memory bound -----------------------------------------------------------------------------------


class _Sink(io.RawIOBase):
    def __init__(self) -> None:
        self.n = 0

    def writable(self) -> bool:
        return True

    def write(self, b) -> int:  # noqa: ANN001
        self.n += len(b)
        return len(b)


@pytest.mark.parametrize("compress", [False, True])
def test_encode_decode_memory_is_bounded(tmp_path: Path, compress: bool) -> None:
    size, n = 4096, 8192  # 32 MiB of pages
    page = os.urandom(size)
    path = tmp_path / "big.ltx"
    tracemalloc.start()
    try:
        with open(path, "wb") as f:
            enc = Encoder(f, Header(flags=int(compress), page_size=size, commit=n, max_txid=1))
            for p in range(1, n + 1):
                enc.encode_page(p, page)
            enc.finish()
        _, peak_enc = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        with open(path, "rb") as f:
            count = sum(1 for _ in Decoder(f).pages())
        _, peak_dec = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == n
    assert peak_enc < 1 << 20, peak_enc
    assert peak_dec < 1 << 20, peak_dec


@pytest.mark.parametrize("compress", [False, True])
@pytest.mark.parametrize("snapshot", [True, False])
def test_encode_pages_gives_the_same_file_as_encode_page(compress: bool, snapshot: bool) -> None:
    """encode_pages (runs of consecutive pages in one buffer) writes exactly what encode_page would."""
    import random

    size = 512
    lock = lock_pgno(size)
    rng = random.Random(3)
    # A snapshot holds every page (one across the lock page would be 1 GiB); an incremental file
    # here runs across the lock page.
    commit = 700 if snapshot else lock + 40
    first = 1 if snapshot else lock - 30
    pgnos = [p for p in range(first, commit + 1) if p != lock]
    pages = {p: rng.randbytes(size) if p % 3 else bytes(size) for p in pgnos}
    header = Header(
        flags=FLAG_COMPRESS_LZ4 if compress else 0,
        page_size=size,
        commit=commit,
        min_txid=1 if snapshot else 5,
        max_txid=9,
        timestamp=1,
        pre_apply_checksum=0 if snapshot else CHECKSUM_FLAG | 77,
    )
    one, many = io.BytesIO(), io.BytesIO()
    a, b = Encoder(one, header), Encoder(many, header)
    for p in pgnos:
        a.encode_page(p, pages[p])
    # Runs of varying length that stop short of the lock page and restart after it.
    i = 0
    while i < len(pgnos):
        n = 1
        while i + n < len(pgnos) and n < rng.choice([1, 5, 300]) and pgnos[i + n] == pgnos[i] + n:
            n += 1
        b.encode_pages(pgnos[i], b"".join(pages[p] for p in pgnos[i : i + n]))
        i += n
    post = None if snapshot else CHECKSUM_FLAG | 99
    assert a.finish(post) == b.finish(post)
    assert one.getvalue() == many.getvalue()
    assert a.page_count == b.page_count == len(pgnos)


def test_encode_pages_checks_its_run() -> None:
    size = 512
    lock = lock_pgno(size)
    enc = Encoder(io.BytesIO(), Header(page_size=size, commit=10, min_txid=1, max_txid=1, timestamp=1))
    with pytest.raises(LTXError, match="not a multiple"):
        enc.encode_pages(1, bytes(size + 1))
    with pytest.raises(LTXError, match="expected page 1"):
        enc.encode_pages(2, bytes(size))
    enc.encode_pages(1, bytes(size * 2))
    with pytest.raises(LTXError, match="outside"):
        enc.encode_pages(3, bytes(size * 9))
    enc.encode_pages(3, bytes(size * 8))
    enc.finish()
    with pytest.raises(LTXError, match="after finish"):
        enc.encode_pages(1, bytes(size))
    header = Header(
        page_size=size,
        commit=lock + 5,
        min_txid=2,
        max_txid=2,
        timestamp=1,
        pre_apply_checksum=CHECKSUM_FLAG | 1,
    )
    enc = Encoder(io.BytesIO(), header)
    with pytest.raises(LTXError, match="lock page"):
        enc.encode_pages(lock - 1, bytes(size * 2))
    enc.encode_pages(lock + 1, bytes(size))
    with pytest.raises(LTXError, match="out of order"):
        enc.encode_pages(lock + 1, bytes(size))
