"""Compaction of consecutive LTX files (ltx.md 4.5, litefs.md 5.1)."""

from __future__ import annotations

import io

import pytest

from litefs.ltx import CHECKSUM_FLAG, Decoder, Encoder, Header, LTXError, compact, database_checksum


def ltx(header: Header, pages: dict[int, bytes], post: int | None = None) -> io.BytesIO:
    buf = io.BytesIO()
    enc = Encoder(buf, header)
    for pgno in sorted(pages):
        enc.encode_page(pgno, pages[pgno])
    enc.finish(post)
    buf.seek(0)
    return buf


def read(buf: io.BytesIO):  # noqa: ANN201
    buf.seek(0)
    dec = Decoder(buf)
    pages = list(dec.pages())
    return dec.header, pages, dec.trailer


def backup_inputs() -> list[io.BytesIO]:
    """The three transactions of LiteFS's backup-client test: a snapshot, then two incrementals."""
    return [
        ltx(Header(page_size=512, commit=1, min_txid=1, max_txid=1), {1: b"\x01" * 512}),
        ltx(
            Header(page_size=512, commit=2, min_txid=2, max_txid=2, pre_apply_checksum=0xE4E4AAA102377EEE),
            {2: b"\x02" * 512},
            0x99B1D11AB98CC555,
        ),
        ltx(
            Header(page_size=512, commit=2, min_txid=3, max_txid=4, pre_apply_checksum=0x99B1D11AB98CC555),
            {1: b"\x03" * 512},
            0x8B87423EEEEEEEEE,
        ),
    ]


def test_backup_golden_value() -> None:
    inputs = backup_inputs()
    # The snapshot's and the final checksums are real database checksums; the middle one
    # (0x99b1d11ab98cc555) is a synthetic value in upstream's test, which compaction cannot check.
    assert read(inputs[0])[2].post_apply_checksum == 0xE4E4AAA102377EEE
    db = io.BytesIO(b"\x03" * 512 + b"\x02" * 512)
    assert database_checksum(db, 512, 2) == 0x8B87423EEEEEEEEE
    for f in inputs:
        f.seek(0)
    out = io.BytesIO()
    header = compact(inputs, out, compress=True)
    assert header == Header(flags=1, page_size=512, commit=2, min_txid=1, max_txid=4)
    h, pages, trailer = read(out)
    assert h == header
    assert pages == [(1, b"\x03" * 512), (2, b"\x02" * 512)]
    assert trailer.post_apply_checksum == 0x8B87423EEEEEEEEE
    assert trailer.file_checksum == 0xB8E6A652B0EC8453


def test_shrinking_drops_pages_past_final_commit_and_zeroes_wal_fields() -> None:
    pre = CHECKSUM_FLAG | 2
    a = ltx(
        Header(
            page_size=1024,
            commit=5,
            min_txid=2,
            max_txid=9,
            timestamp=3000,
            pre_apply_checksum=pre,
            wal_offset=32,
            wal_size=100,
            wal_salt1=1,
            node_id=7,
        ),
        {1: b"\xa1" * 1024, 2: b"\xa2" * 1024, 3: b"\xa3" * 1024, 5: b"\xa5" * 1024},
        CHECKSUM_FLAG | 9,
    )
    b = ltx(
        Header(
            page_size=1024,
            commit=2,
            min_txid=10,
            max_txid=10,
            timestamp=4000,
            pre_apply_checksum=CHECKSUM_FLAG | 9,
        ),
        {1: b"\xb1" * 1024},
        CHECKSUM_FLAG | 10,
    )
    out = io.BytesIO()
    header = compact([a, b], out, compress=False)
    assert header == Header(
        flags=0, page_size=1024, commit=2, min_txid=2, max_txid=10, timestamp=4000, pre_apply_checksum=pre
    )
    _, pages, trailer = read(out)
    assert pages == [(1, b"\xb1" * 1024), (2, b"\xa2" * 1024)]
    assert trailer.post_apply_checksum == CHECKSUM_FLAG | 10


def test_single_input_is_copied() -> None:
    src = ltx(Header(page_size=512, commit=1, timestamp=1000), {1: b"1" * 512})
    out = io.BytesIO()
    compact([src], out, compress=False)
    assert out.getvalue() == src.getvalue()


def _inc(lo: int, hi: int, pre: int, post: int, page_size: int = 512) -> io.BytesIO:
    return ltx(
        Header(
            page_size=page_size, commit=1, min_txid=lo, max_txid=hi, pre_apply_checksum=CHECKSUM_FLAG | pre
        ),
        {1: b"z" * page_size},
        CHECKSUM_FLAG | post,
    )


@pytest.mark.parametrize(
    ("inputs", "match"),
    [
        (lambda: [_inc(2, 3, 1, 3), _inc(5, 5, 3, 5)], "not contiguous.*TXID"),
        (lambda: [_inc(2, 3, 1, 3), _inc(3, 4, 3, 4)], "not contiguous.*TXID"),
        (lambda: [_inc(2, 3, 1, 3), _inc(4, 4, 9, 4)], "post-apply checksum"),
        (lambda: [_inc(2, 3, 1, 3), _inc(4, 4, 3, 4, page_size=1024)], "page size"),
        (lambda: [], "no input"),
    ],
)
def test_compact_rejects_bad_inputs(inputs, match: str) -> None:  # noqa: ANN001
    with pytest.raises(LTXError, match=match):
        compact(inputs(), io.BytesIO(), compress=False)


def test_compact_rejects_corrupt_input() -> None:
    bad = bytearray(_inc(2, 3, 1, 3).getvalue())
    bad[300] ^= 0xFF
    with pytest.raises(LTXError, match="checksum mismatch"):
        compact([io.BytesIO(bytes(bad)), _inc(4, 4, 3, 4)], io.BytesIO(), compress=True)
