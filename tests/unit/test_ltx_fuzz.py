"""Property tests: corrupted or truncated LTX files decode to the original content or raise LTXError.

Never another exception type, never a hang (each example is bounded by the file size).
"""

from __future__ import annotations

import io

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from litefs.ltx import CHECKSUM_FLAG, Decoder, Encoder, Header, LTXError


@st.composite
def ltx_files(draw) -> tuple[bytes, tuple]:  # noqa: ANN001
    compress = draw(st.booleans())
    snapshot = draw(st.booleans())
    commit = draw(st.integers(0 if snapshot else 1, 6))
    if snapshot:
        pgnos = list(range(1, commit + 1))
        header = Header(
            flags=int(compress), page_size=512, commit=commit, min_txid=1, max_txid=draw(st.integers(1, 9))
        )
    else:
        pgnos = sorted(draw(st.sets(st.integers(1, commit), max_size=commit)))
        lo = draw(st.integers(2, 9))
        header = Header(
            flags=int(compress),
            page_size=512,
            commit=commit,
            min_txid=lo,
            max_txid=lo + draw(st.integers(0, 3)),
            timestamp=draw(st.integers(0, 1 << 40)),
            pre_apply_checksum=CHECKSUM_FLAG | draw(st.integers(0, 1 << 20)),
        )
    # Mix compressible and random-looking pages so both LZ4 literal and match paths are hit.
    pages = [
        (
            p,
            draw(
                st.one_of(
                    st.binary(min_size=1, max_size=8).map(lambda b: (b * 512)[:512]),
                    st.binary(min_size=512, max_size=512),
                )
            ),
        )
        for p in pgnos
    ]
    buf = io.BytesIO()
    enc = Encoder(buf, header)
    for p, d in pages:
        enc.encode_page(p, d)
    trailer = enc.finish(None if snapshot else CHECKSUM_FLAG | draw(st.integers(0, 1 << 20)))
    return buf.getvalue(), (header, pages, trailer)


def _decode(data: bytes) -> tuple:
    dec = Decoder(io.BytesIO(data))
    pages = list(dec.pages())
    return dec.header, pages, dec.trailer


def _check(data: bytes, original: tuple) -> None:
    try:
        result = _decode(data)
    except LTXError as exc:
        assert str(exc)
    else:
        assert result == original


FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(f=ltx_files(), data=st.data())
def test_single_byte_mutation(f, data) -> None:  # noqa: ANN001
    raw, original = f
    assert _decode(raw) == original
    i = data.draw(st.integers(0, len(raw) - 1))
    value = data.draw(st.integers(0, 255).filter(lambda v: v != raw[i]))
    _check(raw[:i] + bytes([value]) + raw[i + 1 :], original)


@FUZZ
@given(f=ltx_files(), data=st.data())
def test_multi_byte_mutation(f, data) -> None:  # noqa: ANN001
    raw, original = f
    mutated = bytearray(raw)
    for _ in range(data.draw(st.integers(1, 8))):
        i = data.draw(st.integers(0, len(raw) - 1))
        mutated[i] = data.draw(st.integers(0, 255))
    _check(bytes(mutated), original)


@FUZZ
@given(f=ltx_files(), data=st.data())
def test_truncation(f, data) -> None:  # noqa: ANN001
    raw, original = f
    cut = data.draw(st.integers(0, len(raw) - 1))
    try:
        _decode(raw[:cut])
    except LTXError:
        pass
    else:
        raise AssertionError(f"truncated file ({cut} of {len(raw)} bytes) decoded without error")


@FUZZ
@given(f=ltx_files(), data=st.data())
def test_insertion_and_deletion(f, data) -> None:  # noqa: ANN001
    raw, original = f
    i = data.draw(st.integers(0, len(raw)))
    if data.draw(st.booleans()):
        mutated = raw[:i] + data.draw(st.binary(min_size=1, max_size=16)) + raw[i:]
    else:
        mutated = raw[:i] + raw[i + data.draw(st.integers(1, 16)) :]
    if mutated != raw:
        _check(mutated, original)


def test_every_single_byte_of_one_file() -> None:
    """Exhaustively flip each byte of a small compressed snapshot and a small uncompressed incremental."""
    for header, post in (
        (Header(flags=1, page_size=512, commit=2, max_txid=3), None),
        (
            Header(page_size=512, commit=3, min_txid=4, max_txid=4, pre_apply_checksum=CHECKSUM_FLAG | 5),
            CHECKSUM_FLAG | 6,
        ),
    ):
        buf = io.BytesIO()
        enc = Encoder(buf, header)
        pages = [(1, b"ab" * 256), (2, bytes(range(256)) * 2)]
        for p, d in pages:
            enc.encode_page(p, d)
        trailer = enc.finish(post)
        raw = buf.getvalue()
        original = (header, pages, trailer)
        for i in range(len(raw)):
            _check(raw[:i] + bytes([raw[i] ^ 0xFF]) + raw[i + 1 :], original)


@st.composite
def multi_block_files(draw) -> tuple[bytes, tuple]:  # noqa: ANN001
    """Compressed files spanning several 64 KiB LZ4 blocks (page size 4096, up to 40 pages)."""
    commit = draw(st.integers(17, 40))
    header = Header(flags=1, page_size=4096, commit=commit, max_txid=2)
    seed = draw(st.binary(min_size=4, max_size=64))
    rep = seed * (4096 // len(seed) + 2)
    pages = [(p, rep[p % len(seed) : p % len(seed) + 4096]) for p in range(1, commit + 1)]
    buf = io.BytesIO()
    enc = Encoder(buf, header)
    for p, d in pages:
        enc.encode_page(p, d)
    return buf.getvalue(), (header, pages, enc.finish())


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(f=multi_block_files(), data=st.data())
def test_multi_block_mutation_and_truncation(f, data) -> None:  # noqa: ANN001
    raw, original = f
    i = data.draw(st.integers(0, len(raw) - 1))
    _check(raw[:i] + bytes([raw[i] ^ data.draw(st.integers(1, 255))]) + raw[i + 1 :], original)
    cut = data.draw(st.integers(0, len(raw) - 1))
    _check(raw[:cut], None)
