"""The replication wire format: position map, frames, chunked LTX and the incremental parser."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from litefs.ltx import Pos
from litefs.replication.protocol import (
    CHUNK_END,
    MAX_NAME_SIZE,
    DropDBFrame,
    EndFrame,
    FrameParser,
    FrameType,
    HandoffFrame,
    HeartbeatFrame,
    HWMFrame,
    LTXChunk,
    LTXFrameEnd,
    LTXFrameStart,
    ProtocolError,
    ReadyFrame,
    decode_pos_map,
    encode_chunk,
    encode_chunk_parts,
    encode_ltx_frame,
    encode_pos_map,
)

# -- position map ---------------------------------------------------------------------------------


def test_pos_map_matches_documented_example() -> None:
    body = encode_pos_map({"sqlite.db": Pos(0xD, 0xFE3831A381C602B9)})
    assert body == bytes.fromhex("00000001 00000009 73716c6974652e6462 000000000000000d fe3831a381c602b9")
    assert decode_pos_map(body) == {"sqlite.db": Pos(0xD, 0xFE3831A381C602B9)}


def test_pos_map_sorted_by_name_and_empty() -> None:
    body = encode_pos_map({"b.db": Pos(2, 2), "a.db": Pos(1, 1), "é.db": Pos(3, 3)})
    assert body.index(b"a.db") < body.index(b"b.db") < body.index("é.db".encode())
    assert list(decode_pos_map(body)) == ["a.db", "b.db", "é.db"]
    assert encode_pos_map({}) == b"\x00\x00\x00\x00"
    assert decode_pos_map(b"\x00\x00\x00\x00") == {}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "need at least 4"),
        (bytes.fromhex("00000001"), "entry 0 truncated at offset 4"),
        (bytes.fromhex("00000001 00000009") + b"sqlite.db" + bytes(15), "entry 0 truncated at offset 8"),
        (
            bytes.fromhex("00000001 00000009") + b"sqlite.db" + bytes(17),
            "1 trailing bytes after position map at offset 33",
        ),
        (bytes.fromhex("00000000 00"), "trailing bytes"),
        (bytes.fromhex("00000001 00000002 ffff") + bytes(16), "not valid UTF-8"),
        (bytes.fromhex("00000001 00000000") + bytes(16), "empty database name at offset 8"),
        (bytes.fromhex("00000001 ffffffff"), "exceeds 1024"),
        (bytes.fromhex("00000002") + (bytes.fromhex("00000001") + b"a" + bytes(16)) * 2, "duplicate"),
    ],
)
def test_pos_map_decode_is_strict(body: bytes, message: str) -> None:
    with pytest.raises(ProtocolError, match=message):
        decode_pos_map(body)


def test_pos_map_encode_rejects_bad_names() -> None:
    with pytest.raises(ProtocolError, match="non-empty"):
        encode_pos_map({"": Pos(0, 0)})
    with pytest.raises(ProtocolError, match="more than 1024"):
        encode_pos_map({"x" * (MAX_NAME_SIZE + 1): Pos(0, 0)})


names = st.text(min_size=1, max_size=40)
positions = st.builds(Pos, st.integers(0, 2**64 - 1), st.integers(0, 2**64 - 1))


@given(st.dictionaries(names, positions, max_size=8))
def test_pos_map_round_trip(m: dict[str, Pos]) -> None:
    assert decode_pos_map(encode_pos_map(m)) == m


# -- frame encoding -------------------------------------------------------------------------------


def test_frame_bytes() -> None:
    assert FrameType.LTX == 1 and FrameType.HEARTBEAT == 7
    assert ReadyFrame().encode() == bytes.fromhex("00000002")
    assert EndFrame().encode() == bytes.fromhex("00000003")
    assert DropDBFrame("x.db").encode() == bytes.fromhex("00000004 00000004") + b"x.db"
    assert HandoffFrame("lease-1").encode() == bytes.fromhex("00000005 00000007") + b"lease-1"
    assert HWMFrame("x.db", 0x1234).encode() == bytes.fromhex("00000006 0000000000001234 00000004") + b"x.db"
    assert HeartbeatFrame(-2).encode() == bytes.fromhex("00000007 fffffffffffffffe")
    assert (
        LTXFrameStart("sqlite.db").encode()
        == bytes.fromhex("00000001 0000000000000000 00000009") + b"sqlite.db"
    )
    assert LTXFrameEnd().encode() == CHUNK_END == b"\x00\x00"


def test_documented_ltx_frame_example() -> None:
    ltx = bytes(range(256)) * 48 + bytes(132)  # 12420 bytes, the size of the fixture file
    assert len(ltx) == 12420
    frame = encode_ltx_frame("sqlite.db", ltx)
    assert (
        frame
        == bytes.fromhex("00000001 0000000000000000 00000009")
        + b"sqlite.db"
        + b"\x30\x84"
        + ltx
        + b"\x00\x00"
    )


@pytest.mark.parametrize(
    "sizes", [[], [0], [5], [65535], [65536], [70000, 3, 65535 * 2 + 1, 0, 9], [1] * 70000]
)
def test_encode_chunk_parts_gives_the_bytes_of_the_joined_parts(sizes: list[int]) -> None:
    rng = random.Random(len(sizes))
    parts = [rng.randbytes(n) for n in sizes]
    kinds = [bytes, bytearray, memoryview]
    mixed = [
        kinds[i % 3](p) if kinds[i % 3] is not memoryview else memoryview(bytearray(p))
        for i, p in enumerate(parts)
    ]
    assert encode_chunk_parts(mixed) == encode_chunk(b"".join(parts))


def test_encode_chunk_splits_at_65535() -> None:
    data = bytes(65535 * 2 + 1)
    out = encode_chunk(data)
    assert out[:2] == b"\xff\xff" and out[65537:65539] == b"\xff\xff" and out[131074:131076] == b"\x00\x01"
    assert len(out) == len(data) + 6
    assert encode_chunk(b"") == b""
    assert LTXChunk(b"abc").encode() == b"\x00\x03abc"


# -- parser ---------------------------------------------------------------------------------------


def parse_all(data: bytes, splits: list[int] | None = None) -> list[object]:
    parser = FrameParser()
    events: list[object] = []
    cuts = sorted(set(splits or [])) + [len(data)]
    start = 0
    for cut in cuts:
        parser.feed(data[start:cut])
        events.extend(parser)
        start = cut
    parser.close()
    return events


def sample_stream(ltx: bytes = b"L" * 70000) -> bytes:
    return b"".join(
        [
            encode_ltx_frame("a.db", ltx, chunk_size=30000),
            HWMFrame("a.db", 5).encode(),
            ReadyFrame().encode(),
            HeartbeatFrame(1700000000000).encode(),
            DropDBFrame("gone.db").encode(),
            LTXFrameStart("b.db").encode(),
            encode_chunk(b"tiny"),
            CHUNK_END,
            HandoffFrame("lease-abc").encode(),
            EndFrame().encode(),
        ]
    )


SAMPLE_EVENTS = [
    LTXFrameStart("a.db"),
    LTXChunk(b"L" * 30000),
    LTXChunk(b"L" * 30000),
    LTXChunk(b"L" * 10000),
    LTXFrameEnd(),
    HWMFrame("a.db", 5),
    ReadyFrame(),
    HeartbeatFrame(1700000000000),
    DropDBFrame("gone.db"),
    LTXFrameStart("b.db"),
    LTXChunk(b"tiny"),
    LTXFrameEnd(),
    HandoffFrame("lease-abc"),
    EndFrame(),
]


def test_parse_whole_stream() -> None:
    assert parse_all(sample_stream()) == SAMPLE_EVENTS


def test_parse_byte_by_byte() -> None:
    data = sample_stream(b"xy" * 40)
    events = parse_all(data, list(range(len(data))))
    assert events[1:3] == [LTXChunk(b"xy" * 40), LTXFrameEnd()]


@settings(max_examples=200)
@given(st.data())
def test_any_split_gives_same_events(data: st.DataObject) -> None:
    stream = sample_stream()
    splits = data.draw(st.lists(st.integers(0, len(stream)), max_size=30))
    assert parse_all(stream, splits) == SAMPLE_EVENTS


def run_garbage(data: bytes, splits: list[int]) -> tuple[list[object], str | None]:
    """Events and the error message (if any); any other exception fails the test."""
    parser = FrameParser()
    events: list[object] = []
    start = 0
    try:
        for cut in sorted(set(splits)) + [len(data)]:
            parser.feed(data[start:cut])
            events.extend(parser)
            start = cut
    except ProtocolError as e:
        return events, str(e)
    return events, None


frame_bytes = st.one_of(
    st.binary(max_size=40),
    st.sampled_from(
        [
            ReadyFrame().encode(),
            HeartbeatFrame(3).encode(),
            LTXFrameStart("a").encode(),
            encode_chunk(b"abc"),
            CHUNK_END,
            bytes.fromhex("00000001 0000000000000000 7fffffff"),
            bytes.fromhex("00000006 0000000000000001 00000002 c328"),
            EndFrame().encode(),
        ]
    ),
)


@settings(max_examples=300)
@given(st.lists(frame_bytes, max_size=8).map(b"".join), st.data())
def test_garbage_gives_protocol_error_or_needs_more_data(stream: bytes, data: st.DataObject) -> None:
    splits = data.draw(st.lists(st.integers(0, len(stream)), max_size=10))
    whole = run_garbage(stream, [])
    assert run_garbage(stream, splits) == whole  # same events, same error, whatever the split


def test_unknown_type_names_offset() -> None:
    stream = ReadyFrame().encode() + b"HTTP error: boom"
    parser = FrameParser()
    parser.feed(stream)
    assert parser.next_event() == ReadyFrame()
    with pytest.raises(ProtocolError, match=r"unknown frame type 0x48545450 .* at offset 4"):
        parser.next_event()
    with pytest.raises(ProtocolError, match="offset 4"):  # stays failed
        parser.feed(b"more")


def test_oversize_name_fails_without_waiting_for_it() -> None:
    parser = FrameParser()
    parser.feed(bytes.fromhex("00000004 00100000"))  # DROPDB with a 1 MiB name: no need to wait for it
    with pytest.raises(ProtocolError, match="length 1048576 at offset 4 exceeds 1024"):
        list(parser)
    parser = FrameParser()
    parser.feed(bytes.fromhex("00000001 0000000000000000 00000401"))
    with pytest.raises(ProtocolError, match="offset 12"):
        list(parser)


def test_bad_utf8_and_empty_names() -> None:
    parser = FrameParser()
    parser.feed(bytes.fromhex("00000005 00000001 ff"))
    with pytest.raises(ProtocolError, match="lease ID at offset 8 is not valid UTF-8"):
        list(parser)
    parser = FrameParser()
    parser.feed(bytes.fromhex("00000004 00000000"))
    with pytest.raises(ProtocolError, match="empty database name at offset 8"):
        list(parser)


def test_close_detects_truncation() -> None:
    parser = FrameParser()
    parser.feed(LTXFrameStart("a.db").encode() + b"\x00\x05ab")
    assert list(parser) == [LTXFrameStart("a.db")]
    assert not parser.at_frame_boundary
    with pytest.raises(ProtocolError, match="inside an LTX file at offset 24"):
        parser.close()
    parser = FrameParser()
    parser.feed(b"\x00\x00\x00\x07\x00")
    assert list(parser) == []
    with pytest.raises(ProtocolError, match="inside a frame header at offset 0"):
        parser.close()
    parser = FrameParser()
    parser.feed(ReadyFrame().encode())
    assert list(parser) == [ReadyFrame()]
    assert parser.at_frame_boundary and parser.offset == 4
    parser.close()


def test_bytes_after_end_are_an_error() -> None:
    parser = FrameParser()
    parser.feed(EndFrame().encode() + ReadyFrame().encode())
    assert parser.next_event() == EndFrame()
    assert parser.ended
    with pytest.raises(ProtocolError, match="data after END frame at offset 4"):
        parser.next_event()


def test_whole_chunks_are_views_into_the_fed_bytes() -> None:
    """Chunks that arrive whole are cut out of the fed bytes without a copy; one split across two
    feeds is assembled (and the parser goes back to views after it)."""
    chunks = [b"a" * 1000, b"b" * 2000, b"c" * 3000]
    stream = LTXFrameStart("db").encode() + b"".join(encode_chunk(c) for c in chunks) + CHUNK_END
    head = len(LTXFrameStart("db").encode()) + 2 + 1000 + 2 + 100  # cuts the second chunk
    first, second = stream[:head], stream[head:]
    p = FrameParser()
    p.feed(first)
    events = list(p)
    p.feed(second)
    events += list(p)
    data = [e.data for e in events if isinstance(e, LTXChunk)]
    assert [bytes(d) for d in data] == chunks
    assert isinstance(data[0], memoryview) and data[0].obj is first
    assert isinstance(data[2], memoryview) and data[2].obj is second
    assert isinstance(events[-1], LTXFrameEnd)
    p.close()
